"""``nntrain train``: one run, watched epoch by epoch (also under torchrun, and ``--resume``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, List, Optional

import typer

from nntrain.cli.common import ConfigOpt, SetOpt, guarded, load_cfg
from nntrain.cli.startup import FreezeHeap, collector_paused, settle_heap


@guarded
@collector_paused()
def train(
    config: Optional[Path] = ConfigOpt,
    set_: Optional[List[str]] = SetOpt,
    resume: Optional[Path] = typer.Option(
        None, "--resume", help="Continue an interrupted run directory from its last.pt, with its own config.yaml."
    ),
    json_out: bool = typer.Option(False, "--json", help="Print the run summary as JSON (machine-readable)."),
) -> None:
    """Train with SGD, watch every epoch, keep the best model by val accuracy and test it once."""
    from nntrain.errors import ConfigError

    if resume is not None and (config is not None or set_):
        raise ConfigError("--resume continues a run with its own config.yaml; drop --config/--set (or start a new run)")
    cfg = None if resume is not None else load_cfg(config, set_)
    from nntrain.errors import Interrupted
    from nntrain.training import distributed

    # under torchrun: join the process group (rank > 0 then prints nothing)
    ddp = distributed.init_from_env(cfg.device if cfg is not None else _resume_device(resume))
    try:
        _train(cfg, resume, json_out, ddp)
    except (Interrupted, typer.Exit):  # every rank stopped at the same point: leave the group cleanly
        distributed.shutdown()
        raise
    distributed.shutdown()  # (after an error a rank just exits: torchrun ends the others)


class _RunDir:
    """Callback: where the run writes (to print the resume command after a second Ctrl-C)."""

    path: Optional[Path] = None

    def on_fit_start(self, info: dict[str, Any]) -> None:
        self.path = Path(info["run_dir"]) if info.get("run_dir") else None


def _resume_device(resume: Path) -> str:
    """The device setting of the run to resume (resume_run reports a missing config.yaml)."""
    return load_cfg(resume / "config.yaml", []).device if (resume / "config.yaml").is_file() else "auto"


def _train(cfg: Any, resume: Optional[Path], json_out: bool, ddp: Any) -> None:
    from nntrain.cli.live import EpochReporter
    from nntrain.cli.render import error, plain, train_summary, warn
    from nntrain.errors import Interrupted
    from nntrain.pipeline.setup import setup
    from nntrain.pipeline.train import resume_run, train_run
    from nntrain.training.signals import GracefulStop

    s = None
    if ddp is not None and not ddp.is_main:  # torchrun rank > 0: trains in step with rank 0, silently
        settle_heap()  # no callbacks here (no FreezeHeap): the collector is on for its training
        with GracefulStop() as stop:
            history = (
                resume_run(resume, should_stop=stop)[0]
                if resume is not None
                else train_run(cfg, s=setup(cfg), should_stop=stop)[0]
            )
        if history.interrupted:
            raise typer.Exit(130)
        return
    if cfg is not None:
        s = setup(cfg)  # all bad input is rejected here, before a run directory exists
        from nntrain.cli.render import note

        for line in s.dataset.notes:  # skipped files, resizes, in-memory or streaming
            note(line)
        if len(s.data.val) == 0:
            warn("data.val_fraction is 0: train/test only (the lecture's last resort); the last epoch's model is kept")
    title = f"resume {resume}" if resume is not None else f"train {cfg.model.name} on {cfg.data.dataset}"
    if ddp is not None:
        title += f" (DistributedDataParallel: {ddp.world} processes, {ddp.backend})"
    reporter = EpochReporter(title, live=False if json_out else None)
    from nntrain.cli.render import advice, per_class_table
    from nntrain.training.advice import Diagnostics

    run_cfg = cfg
    if cfg is None:  # resuming: the run's own settings (resume_run reports a missing config.yaml)
        run_cfg = load_cfg(resume / "config.yaml", []) if (resume / "config.yaml").is_file() else None
    diag_cfg = run_cfg.diagnostics if run_cfg is not None else None

    def report(a: Any) -> None:  # advice goes below the epoch rows finished so far, not above the title
        reporter.flush()
        advice(a, stderr=json_out)

    diagnostics = Diagnostics(diag_cfg, report=report)
    where = _RunDir()
    from nntrain.tracking import start_tracking

    # output.mlflow: bad URI or missing extra → exit 2 here, before a run directory exists
    tracker = start_tracking(run_cfg, warn=warn, resume=resume)
    callbacks = ([] if json_out else [reporter]) + [diagnostics, FreezeHeap(), where, tracker]

    written: dict[str, Any] = {}  # summary.json as the run wrote it

    def show_result(summary: dict[str, Any]) -> None:  # before the pictures are drawn: the user sees it first
        written.update(summary)
        reporter.close()
        if not json_out:
            if summary.get("per_class_test"):
                per_class_table(summary["per_class_test"], "per-class test accuracy (confusion.png)")
            from nntrain.cli.common import process_seconds

            train_summary(summary, str(where.path), wall_seconds=process_seconds())
        if summary.get("load_note"):
            warn(summary["load_note"])

    with GracefulStop() as stop:
        try:
            if resume is not None:
                history, run, cfg = resume_run(resume, callbacks=callbacks, should_stop=stop, on_result=show_result)
            else:
                history, run = train_run(cfg, callbacks=callbacks, s=s, should_stop=stop, on_result=show_result)
        except KeyboardInterrupt:  # a second Ctrl-C: no checkpoint of this moment, but the last one resumes
            reporter.close()
            if where.path is None:
                raise
            if (where.path / "last.pt").is_file():
                raise Interrupted(
                    "interrupted at once (second Ctrl-C); last.pt holds the last saved position. "
                    f"Resume with: nntrain train --resume {where.path}"
                ) from None
            raise Interrupted(
                f"interrupted at once (second Ctrl-C) before {where.path} held a last.pt (written every "
                "output.checkpoint_seconds and on the first Ctrl-C): nothing to resume; start the run again"
            ) from None
        finally:
            reporter.close()
    if history.interrupted:
        raise Interrupted(
            f"{stop.requested or ('stop requested on another rank' if ddp else 'stop')}: {history.interrupted}; "
            "last.pt saved. "
            f"Resume with: nntrain train --resume {run.path}"
        )
    from nntrain.report import build_report

    # report.html: the run's whole story on one page, from the same test pass as summary.json
    report = build_report(run.path, setup=s, test=history.test)
    # MLflow: test figures, artifacts, model; its run id goes into summary.json
    summary = tracker.finish(run.path, written)
    if json_out:
        from nntrain.runs.files import json_text

        plain(json_text({**summary, "run_dir": str(run.path), "report": str(report)}).rstrip())
    else:
        plain(f"report         {report}")
    if history.diverged:
        error(history.stopped or "training diverged")
        raise typer.Exit(1)
