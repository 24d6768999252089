"""The search: Optuna's ask-and-tell in this process, the folds of each trial on an executor.

A trial is one combination, evaluated on every fold. Trials run in batches sized to keep the
executor busy (``parallel`` fold jobs at once: all remaining trials for grid/random without
pruning; else ceil(parallel / folds) trials, so TPE learns from each result). With a pruner the
folds of a batch run fold by fold and the pruner may stop a trial inside its fold 0 after any epoch
(step epoch-1: the val accuracy, decided in the fold's job on a snapshot of the study) or after a
later fold f (step E-1+f: the honest score over folds 0..f); ``pruning`` says why the values at one
step are comparable and how a job decides. A pruned trial is kept (state PRUNED, with the folds and
epochs it ran) and never ranked best.

Everything lands in the study as trial user attributes (``params``, ``folds`` with per-epoch
curves, ``score``, ``cv_dir``), so the ranking comes from the study — whichever process or
machine ran a trial — and Optuna's own tools read it. Each fold is also saved into this
process's cv directory (``combo-<trial number>/fold-F``) as it finishes.

Resume: trials of this cv directory left RUNNING (a killed process) or interrupted are marked
FAIL and their parameters enqueued again as a new trial, which reuses the folds they finished.
"""

from __future__ import annotations

import math
import os
import socket
from typing import Any, Callable

import numpy as np

from nntrain.config import override
from nntrain.cv.folds import FOLD_FIELDS, fold_job, run_fold
from nntrain.cv.plan import Plan
from nntrain.cv.pruning import fold_step, replay, spec, value
from nntrain.cv.score import honest, rank_key
from nntrain.cv.space import decode, distributions, edge_warnings
from nntrain.cv.store import CvDir, json_text
from nntrain.errors import ConfigError, NntrainError
from nntrain.runs.files import atomic_write_text

Report = Callable[[dict[str, Any]], None]


def _owned(study: Any, cvdir: CvDir) -> list[Any]:
    return [t for t in study.get_trials(deepcopy=False) if t.user_attrs.get("cv_dir") == str(cvdir.path.resolve())]


def recover(study: Any, cvdir: CvDir) -> None:
    """Trials of this cv directory that a killed or interrupted process left behind: FAIL, then re-run
    (enqueued with ``retry_of``, so the new trial reuses their finished folds)."""
    from optuna.trial import TrialState

    retried = {t.user_attrs.get("retry_of") for t in study.get_trials(deepcopy=False)}
    for t in _owned(study, cvdir):
        if t.state == TrialState.RUNNING:
            study.tell(t.number, state=TrialState.FAIL, skip_if_finished=True)
        elif not (t.state == TrialState.FAIL and t.user_attrs.get("interrupted")):
            continue
        if t.number not in retried:
            study.enqueue_trial(t.params, user_attrs={"retry_of": t.number})


def _grid_left(study: Any) -> int:
    """Grid points no trial of the study holds (complete, pruned or running; a failed one is re-run)."""
    from optuna.trial import TrialState

    held = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)
    taken = {
        t.system_attrs["grid_id"] for t in study.get_trials(deepcopy=False, states=held) if "grid_id" in t.system_attrs
    }
    return len(study.sampler._all_grids) - len(taken)


def run_search(
    plan: Plan,
    cvdir: CvDir,
    folds: list[tuple[np.ndarray, np.ndarray]],
    study: Any,
    *,
    executor: Any,
    parallel: int = 1,
    report: Report | None = None,
) -> dict[str, Any]:
    """Run this process's ``plan.trials`` trials (less those this cv directory finished); return the summary."""
    from optuna.trial import TrialState

    recover(study, cvdir)
    finished = [t for t in _owned(study, cvdir) if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    skipped = sum(len(t.user_attrs.get("folds", [])) for t in finished)
    left = plan.trials - len(finished)
    dists = distributions(plan.grid, plan.space)
    k = plan.folds
    while left > 0:
        if plan.sampler == "grid":
            left = min(left, _grid_left(study))
            if left <= 0:
                break
        if plan.pruner == "none" and plan.sampler in ("grid", "random"):
            size = left
        else:
            size = max(1, math.ceil(parallel / k)) if plan.pruner == "none" else max(1, parallel)
        batch = [_ask(study, dists, plan, cvdir) for _ in range(min(size, left))]
        skipped += _run_batch(plan, cvdir, folds, study, batch, executor, report)
        left -= len(batch)
    summary = summarize(study, plan, first=cvdir.first)
    summary["skipped_done"] = skipped
    _write_oof(cvdir, summary)
    atomic_write_text(cvdir.path / "summary.json", json_text(summary))
    return summary


def _ask(study: Any, dists: dict[str, Any], plan: Plan, cvdir: CvDir) -> dict[str, Any]:
    from optuna.trial import TrialState

    trial = study.ask(dists)
    params = decode(trial.params, plan.grid)
    try:
        cfg = override(plan.base, params)
    except ConfigError as e:  # keys valid alone can clash together
        study.tell(trial, state=TrialState.FAIL)
        raise ConfigError(f"trial {trial.number} {params}: {e}") from None
    for key, v in (("params", params), ("cv_dir", str(cvdir.path.resolve())), ("host", socket.gethostname())):
        trial.set_user_attr(key, v)
    trial.set_user_attr("pid", os.getpid())
    retry = trial.user_attrs.get("retry_of")
    return {"trial": trial, "cfg": cfg, "rows": {}, "retry_of": retry, "params": params}


def _run_batch(plan, cvdir, folds, study, batch, executor, report) -> int:
    """Folds of ``batch`` (all at once, or fold by fold when pruning); tell each trial. Returns reused folds."""
    from optuna.trial import TrialState

    k, reused, pruning = plan.folds, 0, plan.pruner != "none"
    waves = [[f] for f in range(k)] if pruning else [list(range(k))]
    live = list(batch)
    try:
        for wave in waves:
            # fold 0 decides in its job, on the study as it is now (this batch has reported nothing yet)
            prune = spec(study, plan, {b["trial"].number for b in live}) if pruning and wave == [0] else None
            jobs = []
            for b in live:
                for f in wave:
                    old = b["retry_of"]
                    if old is not None and cvdir.done(old, f):  # finished by the interrupted trial
                        r = {**cvdir.load(old, f), "combo": b["trial"].number}
                        cvdir.save(r)
                        _keep(b, r)
                        reused += 1
                    else:
                        jobs.append(fold_job(b["cfg"], b["trial"].number, f, *folds[f], prune=prune))
            by_number = {b["trial"].number: b for b in live}
            for result in executor.map(run_fold, jobs, report):
                cvdir.save(result)  # saved as each fold finishes
                _keep(by_number[result["combo"]], result)
                if report:
                    report({"event": "done", **{x: result[x] for x in FOLD_FIELDS}, "combo": result["combo"]})
            if not pruning:
                continue
            for b in list(live):
                if _reported(b, wave[0], k, plan.first_fold_epochs()):
                    h = _store(b)
                    study.tell(b["trial"], state=TrialState.PRUNED)
                    live.remove(b)
                    if report:
                        n, ran = b["trial"].number, b["rows"].values()
                        epochs = sum(r["epochs_run"] for r in ran)
                        report({"event": "pruned", "combo": n, "folds_run": len(ran), "epochs_run": epochs, **h})
        for b in live:
            h = _store(b)
            study.tell(b["trial"], h["score"] if h["score"] == h["score"] else 0.0)  # diverged: 0 for the sampler
        live = []
    finally:
        for b in live:  # interrupted or failed: FAIL now, re-run by --resume
            try:
                b["trial"].set_user_attr("interrupted", True)
                study.tell(b["trial"], state=TrialState.FAIL, skip_if_finished=True)
            except Exception:  # the database itself may be what failed
                pass
    return reused


def _keep(b: dict[str, Any], result: dict[str, Any]) -> None:
    b["rows"][result["fold"]] = {x: result[x] for x in FOLD_FIELDS}
    if result["fold"] == 0:
        b["pruned_step"] = result.get("pruned_step")  # the job's pruner stopped fold 0 at this step


def _reported(b: dict[str, Any], fold: int, k: int, epochs: int) -> bool:
    """Report ``fold`` to the trial's pruner (``pruning``'s steps); whether the trial is pruned there."""
    trial = b["trial"]
    if fold == 0:  # the job decided; the study gets its per-epoch reports
        replay(trial, b["rows"][0]["val_acc_curve"])
        return b.get("pruned_step") is not None
    h = honest([b["rows"][f] for f in sorted(b["rows"])])
    trial.report(value(h["score"]), fold_step(epochs, fold))
    return fold < k - 1 and trial.should_prune()


def _store(b: dict[str, Any]) -> dict[str, Any]:
    rows = [b["rows"][f] for f in sorted(b["rows"])]
    h = honest(rows)
    b["trial"].set_user_attr("folds", rows)
    b["trial"].set_user_attr("score", {k: (None if v != v else v) for k, v in h.items()})
    return h


def summarize(study: Any, plan: Plan, first: int = 1) -> dict[str, Any]:
    """Every complete and pruned trial of the study (any process), scored honestly, ranked. ``first``: the
    number the cv directory gives its first fold (1; 0 in directories from before), so the two agree."""
    from optuna.trial import TrialState

    rows = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)):
        folds = t.user_attrs.get("folds")
        if not folds:
            continue
        h = honest(folds)
        best = np.array([np.nan if f["best_val_acc"] is None else f["best_val_acc"] for f in folds], dtype=float)
        rows.append(
            {
                "index": len(rows),
                "trial": t.number,
                "state": "complete" if t.state == TrialState.COMPLETE else "pruned",
                "params": t.user_attrs.get("params", decode(t.params, plan.grid)),
                "folds": [
                    {
                        **{x: f[x] for x in FOLD_FIELDS if not x.endswith("_curve")},
                        "fold": f["fold"] + first,  # the study holds indices 0..k-1; people read 1..k
                        "val_acc_at": f["val_acc_curve"][h["epoch"] - 1] if h["epoch"] else None,
                    }
                    for f in folds
                ],
                "folds_run": len(folds),
                "fold_epochs": int(sum(f["epochs_run"] for f in folds)),
                "mean_val_acc": h["score"],
                "std_val_acc": h["std"],
                "epoch": h["epoch"],
                "last_val_acc": h["last"],
                "last_std_val_acc": h["last_std"],
                "mean_val_loss": h["val_loss"],
                "std_val_loss": h["val_loss_std"],
                "mean_best_val_acc": float(best.mean()),
                "mean_best_epoch": float(np.mean([f["best_epoch"] for f in folds])),
                "mean_seconds": float(np.mean([f["seconds"] for f in folds])),
                "oof_acc": sum(f["oof_hits"] for f in folds) / sum(f["n_val"] for f in folds),
                "cv_dir": t.user_attrs.get("cv_dir"),
                "score": h["score"],
                "std": h["std"],
            }
        )
    complete = sorted((r for r in rows if r["state"] == "complete"), key=rank_key)
    if not complete:
        raise NntrainError(f"study {plan.study!r} has no complete trial yet; run more trials (--trials)")
    pruned = sorted((r for r in rows if r["state"] == "pruned"), key=rank_key)
    best = complete[0]
    return {
        "folds": plan.folds,
        "first_fold": first,  # combos[].folds[].fold counts from it (summaries without it: from 0)
        "seed": plan.base.seed,
        "study": plan.study,
        "sampler": plan.sampler,
        "pruner": plan.pruner,
        "combos": rows,
        "ranking": [r["index"] for r in complete],
        "pruned": [r["index"] for r in pruned],
        "best": best["index"],
        "best_params": best["params"],
        "best_trial": best["trial"],
        "refit_epochs": best["epoch"],
        "fold_epochs": sum(r["fold_epochs"] for r in rows),
        "warnings": edge_warnings(best["params"], plan.grid, plan.space),
    }


def _write_oof(cvdir: CvDir, summary: dict[str, Any]) -> None:
    """``combo-NNN/oof.csv`` for the complete trials whose folds all lie in this cv directory."""
    for c in summary["combos"]:
        n = c["trial"]
        if c["state"] != "complete" or not all(cvdir.done(n, f) for f in range(summary["folds"])):
            continue
        per_fold = [cvdir.load(n, f) for f in range(summary["folds"])]
        rows = [(i, t, p, r["fold"]) for r in per_fold for i, t, p in zip(*r["oof"].values())]
        text = "index,y_true,y_pred,fold\n" + "".join(f"{i},{t},{p},{f + cvdir.first}\n" for i, t, p, f in sorted(rows))
        atomic_write_text(cvdir.path / f"combo-{n:03d}" / "oof.csv", text)
