"""``nntrain cv`` from its options to its result: the executor, the plan (new or resumed), the checks that
reject bad input before the cv directory exists, the search, and the optional refit."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from nntrain.config import Config
from nntrain.cv.store import CvDir
from nntrain.errors import ConfigError


@dataclass
class CvOptions:
    """The command line of ``nntrain cv`` besides the config (None: not given)."""

    folds: int | None = None
    grid: list[str] = field(default_factory=list)
    sample: list[str] = field(default_factory=list)
    trials: int | None = None
    sampler: str | None = None
    pruner: str = "none"
    storage: str | None = None
    study: str | None = None
    jobs: int = 1
    threads: int | None = None
    refit: bool = False
    resume: Path | None = None
    executor: str = "local"
    address: str | None = None
    cpus_per_job: float | None = None
    gpus_per_job: float | None = None
    config_flags: list[str] = field(default_factory=list)  # "--config", "--set" where given


@dataclass
class CvOutcome:
    cvdir: CvDir
    summary: dict[str, Any]
    refit: dict[str, Any] | None = None


def executor_for(o: CvOptions) -> Any:
    """The fold executor the flags ask for (flags checked before Ray is imported)."""
    if o.jobs < 1:
        raise ConfigError(f"--jobs {o.jobs}: use 1 (sequential) or more worker processes")
    if o.threads is not None and o.threads < 1:
        raise ConfigError(f"--threads {o.threads}: use 1 or more torch threads per job")
    if o.executor == "ray":
        if o.jobs != 1:
            raise ConfigError(
                f"--jobs {o.jobs}: only with --executor local; on Ray, folds run in parallel as the cluster's "
                "CPUs/GPUs allow (size each job with --cpus-per-job/--gpus-per-job)"
            )
        from nntrain.cv.ray_cluster import RayExecutor

        cpus = 1.0 if o.cpus_per_job is None else o.cpus_per_job
        return RayExecutor(o.address, cpus, 0.0 if o.gpus_per_job is None else o.gpus_per_job, o.threads)
    if o.executor != "local":
        raise ConfigError(f"--executor {o.executor!r}: use local (processes on this machine) or ray (a Ray cluster)")
    ray_only = [
        f
        for f, v in (("--address", o.address), ("--cpus-per-job", o.cpus_per_job), ("--gpus-per-job", o.gpus_per_job))
        if v is not None
    ]
    if ray_only:
        raise ConfigError(f"{', '.join(ray_only)}: only with --executor ray; add --executor ray or drop them")
    from nntrain.cv.local import LocalExecutor

    executor = LocalExecutor(o.jobs, o.threads)
    executor.warm_up()  # worker processes' imports overlap with loading and checking the data
    return executor


def new_plan(cfg: Config, o: CvOptions) -> Any:
    from nntrain.cv.plan import Plan
    from nntrain.cv.space import check_space, parse_grid, parse_sample
    from nntrain.cv.study import check_choices, open_storage
    from nntrain.pipeline.pretrained import effective_config, start_for

    cfg = effective_config(cfg, start_for(cfg))[0]  # model.weights: read (or rejected) now; its size and channels
    g, space = parse_grid(o.grid, cfg), parse_sample(o.sample, cfg)
    n_grid = len(check_space(cfg, g, space)) if not space else 0
    if o.trials is not None and o.trials < 1:
        raise ConfigError(f"--trials {o.trials}: run at least 1 trial")
    if o.trials is not None and not (g or space):
        raise ConfigError("--trials needs --grid or --sample: without them every trial is the same config")
    chosen = o.sampler or ("tpe" if space else "grid")
    trials = o.trials or (10 if space else n_grid)
    folds = 5 if o.folds is None else o.folds
    plan = Plan(cfg, folds, g, space, trials, chosen, o.pruner, o.storage, o.study or "nntrain-cv")
    check_choices(plan, chosen, o.pruner)
    if o.storage is not None:
        open_storage(o.storage)  # unreachable or missing driver: exit 2 before any data is loaded
    return plan


def reopened_plan(o: CvOptions, given: list[str]) -> tuple[CvDir, Any]:
    """``--resume DIR``: its saved plan (``given``: the plan's flags the user also passed, refused)."""
    if given:
        raise ConfigError(
            f"--resume repeats the plan saved in '{o.resume}'; drop {', '.join(given)} "
            "(or start a new cv without --resume)"
        )
    cvdir, plan = CvDir.open(o.resume)
    if o.storage is not None:  # plan.json keeps no password: --storage gives it back
        from nntrain.cv.plan import without_password
        from nntrain.cv.study import safe_url

        if plan.storage is None or without_password(o.storage) != plan.storage:
            saved = "its own study.db" if plan.storage is None else safe_url(plan.storage)
            raise ConfigError(
                f"--resume '{o.resume}' searched in {saved}; --storage {safe_url(o.storage)} is another "
                "database: drop --storage, or give the same URL (with its password)"
            )
        plan.storage = o.storage
    return cvdir, plan


def plan_flags(o: CvOptions) -> list[str]:
    """The flags that make up a plan, as the user gave them (``--resume`` refuses them)."""
    flags = (
        *((f, True) for f in o.config_flags),
        ("--folds", o.folds),
        ("--grid", o.grid),
        ("--sample", o.sample),
        ("--trials", o.trials),
        ("--sampler", o.sampler),
        ("--pruner", o.pruner if o.pruner != "none" else None),
        ("--study", o.study),
    )
    return [f for f, v in flags if v]


def run_cv(
    cfg: Config | None,
    o: CvOptions,
    *,
    progress: Callable[[Any], Any] | None = None,
    refit_callbacks: list[Any] | None = None,
    settle: Any = None,
    started: Any = None,
    warn: Any = None,
) -> CvOutcome:
    """Check everything, create (or reopen) the cv directory, search, refit. ``cfg``: None with ``--resume``.
    ``progress(plan)``: the search's progress callable, made once the plan is known; ``settle()``: called once
    start-up is done; ``started(cvdir)``: once the cv directory exists (the CLI's resume hint on an interrupt);
    ``warn``: how tracking's one warning is shown (output.mlflow)."""
    from nntrain.cv.folds import check, refit
    from nntrain.cv.search import run_search
    from nntrain.cv.study import default_storage, open_study

    executor = executor_for(o)
    if o.resume is not None:
        cvdir, plan = reopened_plan(o, plan_flags(o))
    else:
        plan = new_plan(cfg, o)
    if o.executor == "ray":
        executor.check_device(plan.base.device)
    if o.threads is None and plan.base.threads != "auto":  # the config's `threads: N` sizes every fold job alike
        executor.threads = int(plan.base.threads)
    fold_idx = check(plan, device_here=o.executor == "local")  # all bad input is rejected here, before any training
    if o.executor == "ray":
        executor.connect()  # unreachable cluster, or no node large enough for one job: before the cv directory
    vals = [va for _, va in fold_idx]
    study = None
    if plan.storage is not None:  # a shared study: each process draws its own points; space checked before the cv dir
        study = open_study(plan, plan.storage, seed=None)
    from nntrain.tracking import start_tracking

    tracker = start_tracking(plan.base, warn=warn)  # output.mlflow: bad URI or missing extra → exit 2, no cv dir
    if o.resume is not None:
        cvdir.check_folds(vals)
    else:
        cvdir = CvDir.create(plan, vals)
    if started is not None:
        started(cvdir)
    if study is None:
        study = open_study(plan, default_storage(cvdir.path), seed=plan.base.seed)  # own study: seeded by the config
    if settle is not None:
        settle()
    parallel = o.jobs if o.executor == "local" else plan.folds
    report = progress(plan) if progress is not None else None
    summary = run_search(plan, cvdir, fold_idx, study, executor=executor, parallel=parallel, report=report)
    outcome = CvOutcome(cvdir, summary)
    if o.refit:
        outcome.refit = refit(plan, summary["best_params"], summary["refit_epochs"], cvdir, callbacks=refit_callbacks)
    # MLflow: a parent run for this cv directory, a nested run per trial (its run id in summary.json)
    outcome.summary = tracker.log_cv(cvdir.path, summary, storage=plan.storage, refit=outcome.refit)
    return outcome
