"""The MLflow tracker of a train run: a training callback (params and tags when fit starts, every
epoch's metrics.csv row with ``step=epoch``) and ``finish`` (test figures, artifacts, the best model)
once the run's files exist.

It never costs the training: the first failed call gives one warning and ends the tracking of this
run; what could not be logged is listed at the end and in ``summary.json`` (``mlflow.not_logged``).
The MLflow run id is kept in ``<run>/mlflow.json`` so that ``--resume`` continues the same run.
"""

from __future__ import annotations

import atexit
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from nntrain.runs.files import atomic_write_text, json_text
from nntrain.runs.rundir import METRIC_COLUMNS
from nntrain.tracking.session import RUN_FILE, Session, Warn, flatten, read_json

ARTIFACTS = ("config.yaml", "metrics.csv", "report.html")
FINAL = ("best_val_acc", "best_epoch", "test_acc", "test_loss", "test_balanced_acc", "epochs_run", "train_seconds")


class MlflowTracker:
    """A train run's tracker (``start_tracking`` builds it): a ``fit`` callback plus ``finish``."""

    def __init__(self, uri: str | None, experiment: str, cfg: Any, *, warn: Warn | None, resume: Path | None):
        self.session = Session(uri, experiment, warn)
        self.cfg = cfg
        self.resume = resume
        self.run_id: str | None = None
        self.experiment_id: str | None = None
        self.last_step = 0  # the last epoch MLflow holds (a resumed run continues after it)
        self.ended = False

    # -- the fit callback ------------------------------------------------------------------
    def on_fit_start(self, info: dict[str, Any]) -> None:
        if info.get("run_dir") is None or self.run_id is not None:
            return
        run_dir = Path(info["run_dir"])
        s = self.session
        kept = read_json(run_dir / RUN_FILE)
        if kept.get("run_id"):
            self.run_id, self.experiment_id = kept["run_id"], kept.get("experiment_id")
            s.call("the resumed run's status", s.client.update_run, self.run_id, status="RUNNING")
            steps = s.call("the resumed run's metrics", s.client.get_metric_history, self.run_id, "train_loss")
            self.last_step = max((m.step for m in steps or []), default=0)
        else:
            self.experiment_id = s.call("the experiment", s.experiment_id)
            run = None
            if self.experiment_id is not None:
                run = s.call(
                    "the run", s.client.create_run, self.experiment_id, run_name=run_dir.name, tags=self.tags(info)
                )
            if run is None:
                return
            self.run_id = run.info.run_id
            atomic_write_text(run_dir / RUN_FILE, json_text(self.where()))
            s.call("params", s.log_params, self.run_id, flatten(self.cfg.model_dump(mode="json")))
        atexit.register(self._end, "FAILED")  # a crash: the MLflow run does not stay RUNNING
        for record in info["history"].records:  # epochs before this start that MLflow lacks
            self.on_epoch_end(record)

    def tags(self, info: dict[str, Any]) -> dict[str, str]:
        import platform

        import torch

        import nntrain

        return {
            "nntrain.version": nntrain.__version__,
            "torch.version": str(torch.__version__),
            "python.version": platform.python_version(),
            "device": str(info.get("device")),
            "nntrain.command": " ".join(["nntrain", *sys.argv[1:]]),
            "nntrain.run_dir": str(Path(info["run_dir"]).resolve()),
            "nntrain.kind": "train",
            "mlflow.source.name": "nntrain",
        }

    def on_epoch_end(self, record: dict[str, Any]) -> None:
        epoch = int(record["epoch"])
        if epoch <= self.last_step:
            return
        if self.run_id is None or self.session.error is not None:
            self.session.missed_epochs.append(epoch)
            self.last_step = epoch
            return
        keys = [c for c in METRIC_COLUMNS if c != "epoch"] + [k for k in record if k.startswith("update_ratio.")]
        self.session.call(
            f"metrics of epoch {epoch}",
            self.session.log_metrics,
            self.run_id,
            {k: record[k] for k in keys if k in record},
            epoch,
        )
        if self.session.error is not None:  # this very call failed: listed with the other epochs
            self.session.missed.remove(f"metrics of epoch {epoch}")
            self.session.missed_epochs.append(epoch)
        self.last_step = epoch

    def on_fit_end(self, history: Any) -> None:
        if history.interrupted:  # --resume continues this MLflow run
            self._end("KILLED")

    # -- after the run's files exist ---------------------------------------------------------
    def finish(self, run_dir: Path, summary: dict[str, Any]) -> dict[str, Any]:
        """Log the test figures, the artifacts and the best model; record the MLflow run in summary.json."""
        s, run_dir = self.session, Path(run_dir)
        if self.run_id is None:
            s.missed.insert(0, "the whole run")
        else:
            final = {k: summary.get(k) for k in FINAL if isinstance(summary.get(k), (int, float))}
            recall = {f"test_recall.{c}": v for c, v in (summary.get("test_recall") or {}).items()}
            s.call("the test metrics", s.log_metrics, self.run_id, {**final, **recall}, self.last_step)
            s.call("tags", self._final_tags, run_dir, summary)
            for name in [*ARTIFACTS, *sorted(p.name for p in run_dir.glob("*.png"))]:
                if (run_dir / name).is_file():
                    s.call(name, s.client.log_artifact, self.run_id, str(run_dir / name))
            if (run_dir / "best.pt").is_file():
                s.call("the model", self._log_model, run_dir)
        summary = {**summary, "mlflow": s.report(self.where())}
        atomic_write_text(run_dir / "summary.json", json_text(summary))
        if self.run_id is not None and s.error is None:
            if s.call("summary.json", s.client.log_artifact, self.run_id, str(run_dir / "summary.json")) is None:
                if s.error is not None:  # that very upload failed: say so in the file too
                    summary["mlflow"]["not_logged"] = s.not_logged()
                    atomic_write_text(run_dir / "summary.json", json_text(summary))
        self._end("FAILED" if summary.get("diverged") else "FINISHED")
        return summary

    def log_cv(
        self, cv_dir: Path, summary: dict[str, Any], *, storage: str | None = None, refit: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """A cv's parent and trial runs (``tracking.cv``); returns the summary with its ``mlflow`` entry."""
        from nntrain.tracking.cv import log_cv

        return log_cv(self.session, self.cfg, cv_dir, summary, storage, refit)

    def where(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "experiment_id": self.experiment_id}

    def _final_tags(self, run_dir: Path, summary: dict[str, Any]) -> None:
        from nntrain.runs.files import load_checkpoint

        tags = {"stopped": str(summary.get("stopped")), "diverged": str(summary.get("diverged"))}
        if summary.get("precision"):
            tags["precision"] = str(summary["precision"])
        if (run_dir / "init.pt").is_file():
            sha = load_checkpoint(run_dir / "init.pt").get("data_sha256")
            if sha:  # one digest over the splits' digests: equal tags, equal data
                import hashlib

                tags["nntrain.data_sha256"] = hashlib.sha256(json.dumps(sha, sort_keys=True).encode()).hexdigest()
        for k, v in tags.items():
            self.session.client.set_tag(self.run_id, k, v)

    def _log_model(self, run_dir: Path) -> None:
        from nntrain.tracking.model import save_model

        with tempfile.TemporaryDirectory() as tmp:
            save_model(run_dir, Path(tmp) / "model")
            self.session.client.log_artifacts(self.run_id, str(Path(tmp) / "model"), "model")

    def _end(self, status: str) -> None:
        if self.ended or self.run_id is None:
            return
        self.ended = True
        self.session.call(f"the run's status ({status})", self.session.client.set_terminated, self.run_id, status)
