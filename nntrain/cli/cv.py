"""``nntrain cv``: k-fold cross-validation and hyperparameter ranking."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from nntrain.cli.common import ConfigOpt, SetOpt, guarded, load_cfg
from nntrain.cli.startup import collector_paused, settle_heap


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
        "'nntrain[postgres]'); processes on any machine that reach it share the study. Default: study.db in the "
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
        "extra, see the README's 'Scaling out: Ray').",
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
    from nntrain.cv.folds import check, refit
    from nntrain.cv.local import LocalExecutor
    from nntrain.cv.plan import Plan
    from nntrain.cv.search import run_search
    from nntrain.cv.store import CvDir
    from nntrain.cv.study import check_choices, default_storage, open_storage, open_study
    from nntrain.errors import ConfigError, Diverged

    if jobs < 1:
        raise ConfigError(f"--jobs {jobs}: use 1 (sequential) or more worker processes")
    if threads is not None and threads < 1:
        raise ConfigError(f"--threads {threads}: use 1 or more torch threads per job")
    if executor_name == "ray":
        executor = _ray_executor(jobs, threads, address, cpus_per_job, gpus_per_job)
    elif executor_name != "local":
        raise ConfigError(f"--executor {executor_name!r}: use local (processes on this machine) or ray (a Ray cluster)")
    else:
        ray_only = [
            f
            for f, v in (("--address", address), ("--cpus-per-job", cpus_per_job), ("--gpus-per-job", gpus_per_job))
            if v is not None
        ]
        if ray_only:
            raise ConfigError(f"{', '.join(ray_only)}: only with --executor ray; add --executor ray or drop them")
        executor = LocalExecutor(jobs, threads)
        executor.warm_up()  # worker processes' imports overlap with loading and checking below
    if resume is not None:
        given = [
            f
            for f, v in (
                ("--config", config),
                ("--set", set_),
                ("--folds", folds),
                ("--grid", grid),
                ("--sample", sample),
                ("--trials", trials),
                ("--sampler", sampler),
                ("--pruner", pruner if pruner != "none" else None),
                ("--study", study_name),
            )
            if v
        ]
        if given:
            raise ConfigError(
                f"--resume repeats the plan saved in '{resume}'; drop {', '.join(given)} "
                "(or start a new cv without --resume)"
            )
        cvdir, plan = CvDir.open(resume)
        if storage is not None:  # plan.json keeps no password: --storage gives it back
            from nntrain.cv.plan import without_password
            from nntrain.cv.study import safe_url

            if plan.storage is None or without_password(storage) != plan.storage:
                saved = "its own study.db" if plan.storage is None else safe_url(plan.storage)
                raise ConfigError(
                    f"--resume '{resume}' searched in {saved}; --storage {safe_url(storage)} is another "
                    "database: drop --storage, or give the same URL (with its password)"
                )
            plan.storage = storage
    else:
        from nntrain.cv.space import check_space, parse_grid, parse_sample

        cfg = load_cfg(config, set_)
        g, space = parse_grid(grid or [], cfg), parse_sample(sample or [], cfg)
        n_grid = len(check_space(cfg, g, space)) if not space else 0
        if trials is not None and trials < 1:
            raise ConfigError(f"--trials {trials}: run at least 1 trial")
        if trials is not None and not (g or space):
            raise ConfigError("--trials needs --grid or --sample: without them every trial is the same config")
        chosen = sampler or ("tpe" if space else "grid")
        plan = Plan(
            cfg,
            5 if folds is None else folds,
            g,
            space,
            trials or (10 if space else n_grid),
            chosen,
            pruner,
            storage,
            study_name or "nntrain-cv",
        )
        check_choices(plan, chosen, pruner)
        if storage is not None:
            open_storage(storage)  # unreachable or missing driver: exit 2 before any data is loaded
    if executor_name == "ray":
        executor.check_device(plan.base.device)
    if threads is None and plan.base.threads != "auto":  # the config's `threads: N` sizes every fold job alike
        executor.threads = int(plan.base.threads)
    fold_idx = check(plan, device_here=executor_name == "local")  # all bad input is rejected here, before any training
    if executor_name == "ray":
        executor.connect()  # unreachable cluster, or no node large enough for one job: before the cv directory
    vals = [va for _, va in fold_idx]
    study = None
    if plan.storage is not None:  # a shared study: each process draws its own points; space checked before the cv dir
        study = open_study(plan, plan.storage, seed=None)
    if resume is not None:
        cvdir.check_folds(vals)
    else:
        cvdir = CvDir.create(plan, vals)

    if study is None:
        study = open_study(plan, default_storage(cvdir.path), seed=plan.base.seed)  # own study: seeded by the config
    settle_heap()  # start-up done (imports, data, checks): the collector walks only what the folds create
    progress = None if json_out else CvProgress(bool(plan.grid or plan.space), plan.folds)
    parallel = jobs if executor_name == "local" else plan.folds
    try:
        summary = run_search(plan, cvdir, fold_idx, study, executor=executor, parallel=parallel, report=progress)
    except KeyboardInterrupt:
        if progress:
            progress.close()
        warn(
            f"finished folds are saved; continue with: nntrain cv --resume {cvdir.path}"
            + (" --executor ray" if executor_name == "ray" else "")
        )
        raise
    finally:
        if progress:
            progress.close()
    if summary["skipped_done"] and not json_out:
        plain(f"resumed: {summary['skipped_done']} finished folds were skipped")
    refit_summary = None
    if refit_:
        reporter = EpochReporter("refit on the whole pool", live=False if json_out else None)
        try:
            refit_summary = refit(
                plan, summary["best_params"], summary["refit_epochs"], cvdir, callbacks=[] if json_out else [reporter]
            )
        finally:
            reporter.close()
    if json_out:
        from nntrain.runs.files import json_text

        plain(json_text({**summary, "refit": refit_summary, "cv_dir": str(cvdir.path)}).rstrip())
    else:
        cv_report(summary, str(cvdir.path))
        if refit_summary:
            from nntrain.cli.render import fmt_acc

            plain(
                f"refit          test accuracy {fmt_acc(refit_summary['test_acc'])} "
                f"({refit_summary['n_train']} train, {refit_summary['n_test']} test samples)"
            )
    best = summary["combos"][summary["best"]]
    if best["mean_val_acc"] != best["mean_val_acc"]:  # NaN: every combination diverged
        raise Diverged("every combination diverged in at least one fold; lower train.optimizer.lr")


def _ray_executor(
    jobs: int, threads: Optional[int], address: Optional[str], cpus: Optional[float], gpus: Optional[float]
):
    """cv --executor ray: flags checked first, then Ray imported (missing: how to install it)."""
    from nntrain.cv.ray_cluster import RayExecutor
    from nntrain.errors import ConfigError

    if jobs != 1:
        raise ConfigError(
            f"--jobs {jobs}: only with --executor local; on Ray, folds run in parallel as the cluster's "
            "CPUs/GPUs allow (size each job with --cpus-per-job/--gpus-per-job)"
        )
    return RayExecutor(address, 1.0 if cpus is None else cpus, 0.0 if gpus is None else gpus, threads)
