"""``nntrain cv``: k-fold cross-validation and hyperparameter ranking."""

from __future__ import annotations

from pathlib import Path
from typing import Any, List, Optional

import typer

from nntrain.cli.common import ConfigOpt, SetOpt, guarded, load_cfg, sigterm_as_ctrl_c
from nntrain.cli.startup import collector_paused, settle_heap


def resume_command(cv_dir: Path, o: Any) -> str:
    """The command that continues ``cv_dir``: --resume and the options that are not part of its plan."""
    import shlex

    from nntrain.cv.plan import without_password

    parts = ["nntrain cv --resume", shlex.quote(str(cv_dir))]
    if o.storage is not None and without_password(o.storage) != o.storage:  # plan.json keeps no password
        from nntrain.cv.study import safe_url

        parts += ["--storage", shlex.quote(safe_url(o.storage)), "(its password in place of ***)"]
    opts = (
        ("--jobs", o.jobs if o.jobs != 1 else None),
        ("--threads", o.threads),
        ("--executor", o.executor if o.executor != "local" else None),
        ("--address", o.address),
        ("--cpus-per-job", o.cpus_per_job),
        ("--gpus-per-job", o.gpus_per_job),
    )
    parts += [f"{flag} {v:g}" if isinstance(v, float) else f"{flag} {v}" for flag, v in opts if v is not None]
    return " ".join(parts + (["--refit"] if o.refit else []))


@guarded
@collector_paused()
def cv(
    config: Optional[Path] = ConfigOpt,
    set_: Optional[List[str]] = SetOpt,
    folds: Optional[int] = typer.Option(
        None, "--folds", "-k", help="Number of stratified folds over the train+val pool (default 5)."
    ),
    grid: Optional[List[str]] = typer.Option(
        None,
        "--grid",
        help="Sweep a key over values, e.g. --grid train.optimizer.lr=0.01,0.05,0.1 (repeatable: cross product).",
    ),
    sample: Optional[List[str]] = typer.Option(
        None,
        "--sample",
        help="Random search range, e.g. --sample train.optimizer.lr=log:1e-4:1e-1 or model.dropout=uniform:0:0.5 "
        "(repeatable).",
    ),
    trials: Optional[int] = typer.Option(
        None,
        "--trials",
        help="Trials this process runs (Optuna's n_trials; default: the whole grid, 10 with --sample). Two processes "
        "with --trials 4 on one --study leave 8 trials.",
    ),
    sampler: Optional[str] = typer.Option(
        None,
        "--sampler",
        help="tpe (model-based; default with --sample), random, or grid (every --grid combination; default with "
        "--grid). Seeded by the config's seed (with --storage: by the OS, so processes draw different points).",
    ),
    pruner: str = typer.Option(
        "none",
        "--pruner",
        help="Stop poor trials early: median, asha, or none. Judged after each epoch of a trial's first fold and "
        "after each later fold; a pruned trial is kept as PRUNED with the epochs and folds it ran; only complete "
        "trials are ranked best.",
    ),
    storage: Optional[str] = typer.Option(
        None,
        "--storage",
        help="Where the Optuna study lives: sqlite:///path.db or postgresql://user:pw@host/db (pip install "
        "'nntrain\\[postgres]'); processes on any machine that reach it share the study. Default: study.db in the "
        "cv directory.",
    ),
    study_name: Optional[str] = typer.Option(
        None, "--study", help="Study name in --storage (default nntrain-cv); one name per search space."
    ),
    jobs: int = typer.Option(
        1, "--jobs", "-j", help="Worker processes running folds in parallel; the scores do not depend on it."
    ),
    threads: Optional[int] = typer.Option(
        None,
        "--threads",
        help="torch threads per fold job (default 1, whatever --jobs is: on CPU the thread count changes the "
        "float sums, so the same --threads gives bit-identical results across --jobs).",
    ),
    refit_: bool = typer.Option(
        False, "--refit", help="Train the best combination on the whole pool and evaluate it once on the test split."
    ),
    resume: Optional[Path] = typer.Option(
        None, "--resume", help="Continue an interrupted cv directory: finished folds are skipped."
    ),
    json_out: bool = typer.Option(False, "--json", help="Print the cv summary as JSON (machine-readable)."),
    executor_name: str = typer.Option(
        "local",
        "--executor",
        help="Where folds run: local (this machine's processes, see --jobs) or ray (a Ray cluster; needs the ray "
        "extra: pip install 'nntrain\\[ray]'; see docs/scaling-out.md).",
    ),
    address: Optional[str] = typer.Option(
        None,
        "--address",
        help="--executor ray: the cluster to join (auto = the one 'ray start' runs on this machine, or "
        "<head-ip>:6379); default: RAY_ADDRESS, else a new local Ray instance (also: local).",
    ),
    cpus_per_job: Optional[float] = typer.Option(
        None,
        "--cpus-per-job",
        help="--executor ray: CPUs each fold job reserves (default 1; also its torch threads unless --threads).",
    ),
    gpus_per_job: Optional[float] = typer.Option(
        None,
        "--gpus-per-job",
        help="--executor ray: GPUs each fold job reserves (default 0; fractions such as 0.5 share a GPU).",
    ),
) -> None:
    """k-fold cross-validation; with --grid/--sample, an Optuna search ranking hyperparameters by honest mean val
    accuracy (every fold scored at one common epoch)."""
    from nntrain.cli.live import EpochReporter
    from nntrain.cli.render import CvProgress, cv_report, plain, warn
    from nntrain.cv.run import CvOptions, run_cv
    from nntrain.errors import Diverged

    o = CvOptions(
        folds, grid or [], sample or [], trials, sampler, pruner, storage, study_name, jobs, threads, refit_,
        resume, executor_name, address, cpus_per_job, gpus_per_job,
        [f for f, v in (("--config", config), ("--set", set_)) if v],
    )  # fmt: skip
    cfg = load_cfg(config, set_) if resume is None else None
    shown: list[Any] = []

    def progress(plan: Any) -> Any:
        shown.append(CvProgress(bool(plan.grid or plan.space), plan.folds))
        return shown[0]

    reporter = EpochReporter("refit on the whole pool", live=False if json_out else None)
    where: list[Path] = []
    try:
        with sigterm_as_ctrl_c():
            outcome = run_cv(
                cfg,
                o,
                progress=None if json_out else progress,
                refit_callbacks=[] if json_out else [reporter],
                settle=settle_heap,  # start-up done: the collector walks only what the folds create
                started=lambda d: where.append(d.path),
                warn=warn,
            )
    except KeyboardInterrupt as e:  # Ctrl-C or SIGTERM: workers stopped, unfinished trials marked for --resume
        # (a fold in progress cannot be checkpointed: its result is written whole, so no step to finish first)
        for p in shown:
            p.close()
        reporter.close()
        if not where:  # before the cv directory existed: nothing to resume
            raise
        from nntrain.errors import Interrupted

        done = len(list(where[0].glob("combo-*/fold-*/result.json")))
        raise Interrupted(
            f"{e.args[0] if e.args else 'SIGINT'}: cv stopped; {done} finished folds are saved in {where[0]} "
            "(folds that were running start again). "
            f"Resume with: {resume_command(where[0], o)}"
        ) from None
    finally:
        for p in shown:
            p.close()
        reporter.close()
    summary, refit_summary = outcome.summary, outcome.refit
    if summary["skipped_done"] and not json_out:
        plain(f"resumed: {summary['skipped_done']} finished folds were skipped")
    if json_out:
        from nntrain.runs.files import json_text

        plain(json_text({**summary, "refit": refit_summary, "cv_dir": str(outcome.cvdir.path)}).rstrip())
    else:
        cv_report(summary, str(outcome.cvdir.path))
        if refit_summary:
            from nntrain.cli.render import fmt_acc

            plain(
                f"refit          test accuracy {fmt_acc(refit_summary['test_acc'])} "
                f"({refit_summary['n_train']} train, {refit_summary['n_test']} test samples)"
            )
    best = summary["combos"][summary["best"]]
    if best["mean_val_acc"] != best["mean_val_acc"]:  # NaN: every combination diverged
        raise Diverged("every combination diverged in at least one fold; lower train.optimizer.lr")
