"""A cv or search in MLflow: one parent run per cv directory (its base config as params, the ranking,
the chosen config), one nested run per trial this cv directory ran (its params, per-fold scores,
mean ± std, complete or pruned); the study's best trial tagged ``nntrain.best``.

Trials are keyed by the study (its storage and name) and trial number (tag ``nntrain.trial_key``)
and looked up before one is created, so a resumed cv, or processes on several machines sharing one
Optuna study and one experiment, never log a trial twice. Logged once the search returns.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from nntrain.runs.files import atomic_write_text, json_text
from nntrain.tracking.session import RUN_FILE, Session, flatten, read_json, safe_uri

PARENT = "mlflow.parentRunId"


def study_key(cv_dir: Path, storage: str | None, study: str) -> str:
    """The study's identity: a shared storage's URL (no password) and name; else this cv directory's own study.db."""
    return f"{safe_uri(storage) if storage else Path(cv_dir).resolve() / 'study.db'}#{study}"


def log_cv(
    session: Session, cfg: Any, cv_dir: Path, summary: dict[str, Any], storage: str | None, refit: dict | None
) -> dict[str, Any]:
    """Log the cv in ``cv_dir`` (``summary``: run_search's); record the parent run in its summary.json."""
    cv_dir = Path(cv_dir)
    key = study_key(cv_dir, storage, summary["study"])
    exp = session.call("the experiment", session.experiment_id)
    parent = read_json(cv_dir / RUN_FILE).get("run_id")
    if exp is not None and parent is None:
        tags = {
            "nntrain.kind": "cv",
            "nntrain.cv_dir": str(cv_dir.resolve()),
            "nntrain.study_key": key,
            "nntrain.command": " ".join(["nntrain", *sys.argv[1:]]),
            "mlflow.source.name": "nntrain",
        }
        run = session.call("the cv run", session.client.create_run, exp, run_name=cv_dir.name, tags=tags)
        if run is not None:
            parent = run.info.run_id
            atomic_write_text(cv_dir / RUN_FILE, json_text({"run_id": parent, "experiment_id": exp}))
            cv_params = {f"cv.{k}": summary[k] for k in ("folds", "sampler", "pruner", "study")}
            session.call(
                "the cv params", session.log_params, parent, {**flatten(cfg.model_dump(mode="json")), **cv_params}
            )
    if parent is not None:
        own = str(cv_dir.resolve())
        for c in summary["combos"]:
            if c.get("cv_dir") == own:
                session.call(f"trial {c['trial']}", _log_trial, session, exp, parent, key, c)
        session.call("the best trial's tag", _tag_best, session, exp, key, summary["best_trial"])
        session.call("the ranking", _log_parent, session, parent, cfg, cv_dir, summary, refit)
        session.call("the cv run's status", session.client.set_terminated, parent, "FINISHED")
    summary = {**summary, "mlflow": session.report({"run_id": parent, "experiment_id": exp})}
    atomic_write_text(cv_dir / "summary.json", json_text(summary))
    return summary


def _log_trial(session: Session, exp: str, parent: str, key: str, c: dict[str, Any]) -> None:
    trial_key = f"{key}#{c['trial']}"
    found = session.client.search_runs([exp], filter_string=f"tags.`nntrain.trial_key` = '{_quote(trial_key)}'")
    if found:
        return  # logged before (a resumed cv, or the process that ran it)
    tags = {
        PARENT: parent,
        "nntrain.kind": "trial",
        "nntrain.trial_key": trial_key,
        "nntrain.study_key": key,
        "nntrain.trial": str(c["trial"]),
        "nntrain.trial_state": c["state"],
        "nntrain.best": "false",
    }
    run = session.client.create_run(exp, run_name=f"trial-{c['trial']:03d}", tags=tags)
    rid = run.info.run_id
    session.log_params(rid, c["params"])
    keys = (
        "mean_val_acc",
        "std_val_acc",
        "mean_val_loss",
        "std_val_loss",
        "epoch",
        "folds_run",
        "fold_epochs",
        "mean_best_val_acc",
        "oof_acc",
        "mean_seconds",
    )
    session.log_metrics(rid, {k: c[k] for k in keys if isinstance(c.get(k), (int, float))}, 0)
    for f, fold in enumerate(c["folds"]):  # step = fold
        per_fold = {
            "fold_val_acc": fold.get("val_acc_at"),
            "fold_best_val_acc": fold.get("best_val_acc"),
            "fold_epochs_run": fold.get("epochs_run"),
        }
        session.log_metrics(rid, {k: v for k, v in per_fold.items() if isinstance(v, (int, float))}, f)
    session.client.set_terminated(rid, "FINISHED")


def _tag_best(session: Session, exp: str, key: str, best_trial: int) -> None:
    """``nntrain.best``: true on the study's best trial, false on every other (a later process may find a better)."""
    for run in session.client.search_runs([exp], filter_string=f"tags.`nntrain.study_key` = '{_quote(key)}'"):
        if run.data.tags.get("nntrain.kind") != "trial":
            continue
        best = "true" if run.data.tags.get("nntrain.trial") == str(best_trial) else "false"
        if run.data.tags.get("nntrain.best") != best:
            session.client.set_tag(run.info.run_id, "nntrain.best", best)


def _log_parent(session, parent, cfg, cv_dir: Path, summary: dict[str, Any], refit: dict | None) -> None:
    import yaml

    from nntrain.config import override

    combos = summary["combos"]
    best = combos[summary["best"]]
    metrics = {
        "best_mean_val_acc": best["mean_val_acc"],
        "best_std_val_acc": best["std_val_acc"],
        "trials_complete": len(summary["ranking"]),
        "trials_pruned": len(summary["pruned"]),
        **({"refit_test_acc": refit["test_acc"]} if refit and refit.get("test_acc") is not None else {}),
    }
    session.log_metrics(parent, {k: v for k, v in metrics.items() if isinstance(v, (int, float))}, 0)
    session.client.set_tag(parent, "nntrain.best_trial", str(summary["best_trial"]))
    for k, v in summary["best_params"].items():
        session.client.set_tag(parent, f"best.{k}", str(v))  # tags: a later process may choose another
    with tempfile.TemporaryDirectory() as tmp:
        rows = ["rank,trial,state,mean_val_acc,std_val_acc,params"]
        order = summary["ranking"] + summary["pruned"]
        for rank, i in enumerate(order, 1):
            c = combos[i]
            rows.append(
                f"{rank if c['state'] == 'complete' else ''},{c['trial']},{c['state']},{c['mean_val_acc']},"
                f'{c["std_val_acc"]},"{json.dumps(c["params"]).replace(chr(34), chr(39))}"'
            )
        (Path(tmp) / "ranking.csv").write_text("\n".join(rows) + "\n")
        chosen = override(cfg, summary["best_params"])
        (Path(tmp) / "chosen_config.yaml").write_text(yaml.safe_dump(chosen.model_dump(mode="json"), sort_keys=False))
        session.client.log_artifacts(parent, tmp)
    for name in ("plan.json", "summary.json", "report.html"):
        if (cv_dir / name).is_file():
            session.client.log_artifact(parent, str(cv_dir / name))


def _quote(s: str) -> str:
    return s.replace("'", "\\'")
