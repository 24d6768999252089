"""Command line: thin commands (parse → call library → render).

The only place that turns an ``NntrainError`` into a message and an exit code
(0 ok · 1 negative verdict · 2 bad input · 130 interrupted). torch and the library are
imported inside commands so ``nntrain --help`` stays instant.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any, Callable, List, Optional

import typer

app = typer.Typer(
    help="Train small image classifiers with PyTorch the disciplined way: "
    "sanity checks, SGD watched epoch by epoch, cross-validation, pictures.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    add_completion=False,
)
config_app = typer.Typer(help="Show or validate configuration files.", no_args_is_help=True)
app.add_typer(config_app, name="config")

ConfigOpt = typer.Option(
    None, "--config", "-c", help="YAML config file (default: the built-in defaults = configs/default.yaml)."
)
SetOpt = typer.Option(
    None, "--set", "-s", help="Override a key, validated like the file: --set train.optimizer.lr=0.01 (repeatable)."
)


def guarded(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Bad input → one line on stderr + exit 2; negative verdict → 1; Ctrl-C → 130."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from nntrain.errors import NntrainError

        try:
            return fn(*args, **kwargs)
        except NntrainError as e:
            from nntrain.console import error

            error(str(e))
            raise typer.Exit(e.exit_code) from None
        except KeyboardInterrupt:
            from nntrain.console import error

            error("interrupted")
            raise typer.Exit(130) from None

    return wrapper


def _load(config: Optional[Path], overrides: Optional[List[str]]):
    from nntrain.config import load_config

    return load_config(config, overrides or [])


@app.command()
@guarded
def train(
    config: Optional[Path] = ConfigOpt,
    set_: Optional[List[str]] = SetOpt,
    json_out: bool = typer.Option(False, "--json", help="Print the run summary as JSON (machine-readable)."),
) -> None:
    """Train with SGD, watch every epoch, keep the best model by val accuracy and test it once."""
    cfg = _load(config, set_)
    from nntrain.console import EpochReporter, plain, train_summary, warn
    from nntrain.pipeline import setup, train_run

    s = setup(cfg)  # all bad input is rejected here, before a run directory exists
    if len(s.data.val) == 0:
        warn("data.val_fraction is 0: train/test only (the lecture's last resort); the last epoch's model is kept")
    reporter = EpochReporter(f"train {cfg.model.name} on {cfg.data.dataset}", live=False if json_out else None)
    try:
        history, run = train_run(cfg, callbacks=[] if json_out else [reporter], s=s)
    finally:
        reporter.close()
    summary = json.loads((run.path / "summary.json").read_text())
    if json_out:
        plain(json.dumps({**summary, "run_dir": str(run.path)}, indent=2))
    else:
        train_summary(summary, str(run.path))
    if history.diverged:
        from nntrain.console import error

        error(history.stopped or "training diverged")
        raise typer.Exit(1)


@config_app.command("show")
@guarded
def config_show(config: Optional[Path] = ConfigOpt, set_: Optional[List[str]] = SetOpt) -> None:
    """Print the resolved config (file + overrides + defaults) as YAML."""
    from nntrain.config import to_yaml

    print(to_yaml(_load(config, set_)), end="")


@config_app.command("validate")
@guarded
def config_validate(files: List[Path] = typer.Argument(..., help="Config files to check.")) -> None:
    """Check config files; exit 2 naming every invalid one."""
    from nntrain.config import load_config
    from nntrain.errors import ConfigError

    bad = 0
    for f in files:
        try:
            load_config(f)
            print(f"ok       {f}")
        except ConfigError as e:
            bad += 1
            print(f"invalid  {f}: {e}")
    if bad:
        raise typer.Exit(2)


@app.command()
@guarded
def cv(
    config: Optional[Path] = ConfigOpt,
    set_: Optional[List[str]] = SetOpt,
    folds: Optional[int] = typer.Option(None, "--folds", "-k", help="Number of stratified folds over the train+val pool (default 5)."),
    grid: Optional[List[str]] = typer.Option(None, "--grid", help="Sweep a key over values, e.g. --grid train.optimizer.lr=0.01,0.05,0.1 (repeatable: cross product)."),
    sample: Optional[List[str]] = typer.Option(None, "--sample", help="Random search range, e.g. --sample train.optimizer.lr=log:1e-4:1e-1 or model.dropout=uniform:0:0.5 (repeatable)."),
    trials: Optional[int] = typer.Option(None, "--trials", help="Combinations drawn by --sample (seeded by the config's seed; default 10)."),
    jobs: int = typer.Option(1, "--jobs", "-j", help="Worker processes running folds in parallel (torch threads are divided among them)."),
    threads: Optional[int] = typer.Option(None, "--threads", help="torch threads per fold job (default: CPU cores // --jobs). CPU results are bit-identical across --jobs for equal --threads."),
    refit_: bool = typer.Option(False, "--refit", help="Train the best combination on the whole pool and evaluate it once on the test split."),
    resume: Optional[Path] = typer.Option(None, "--resume", help="Continue an interrupted cv directory: finished folds are skipped."),
    json_out: bool = typer.Option(False, "--json", help="Print the cv summary as JSON (machine-readable)."),
) -> None:
    """k-fold cross-validation; with --grid/--sample, rank hyperparameters by mean val accuracy."""
    from nntrain.console import CvProgress, EpochReporter, cv_report, plain, warn
    from nntrain.cv import CvDir, Plan, check, refit, run_cv
    from nntrain.errors import ConfigError, Diverged
    from nntrain.executor import LocalExecutor

    if jobs < 1:
        raise ConfigError(f"--jobs {jobs}: use 1 (sequential) or more worker processes")
    if threads is not None and threads < 1:
        raise ConfigError(f"--threads {threads}: use 1 or more torch threads per job")
    executor = LocalExecutor(jobs, threads)
    executor.warm_up()  # worker processes' imports overlap with loading and checking below
    if resume is not None:
        given = [f for f, v in (("--config", config), ("--set", set_), ("--folds", folds), ("--grid", grid),
                                ("--sample", sample), ("--trials", trials)) if v]
        if given:
            raise ConfigError(f"--resume repeats the plan saved in '{resume}'; drop {', '.join(given)} "
                              "(or start a new cv without --resume)")
        cvdir, plan = CvDir.open(resume)
    else:
        from nntrain.search import combinations, parse_grid, parse_sample

        cfg = _load(config, set_)
        g, space = parse_grid(grid or [], cfg), parse_sample(sample or [], cfg)
        plan = Plan(cfg, 5 if folds is None else folds, combinations(cfg, g, space, trials), g, space)
    fold_idx = check(plan)  # all bad input is rejected here, before any training
    vals = [va for _, va in fold_idx]
    if resume is not None:
        cvdir.check_folds(vals)
    else:
        cvdir = CvDir.create(plan, vals)

    progress = None if json_out else CvProgress(len(plan.combos), plan.folds)
    try:
        summary = run_cv(plan, cvdir, fold_idx, executor=executor, report=progress)
    except KeyboardInterrupt:
        if progress:
            progress.close()
        warn(f"finished folds are saved; continue with: nntrain cv --resume {cvdir.path}")
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
            refit_summary = refit(plan, summary["best"], cvdir, callbacks=[] if json_out else [reporter])
        finally:
            reporter.close()
    if json_out:
        from nntrain.cvdir import json_text

        plain(json_text({**summary, "refit": refit_summary, "cv_dir": str(cvdir.path)}).rstrip())
    else:
        cv_report(summary, str(cvdir.path))
        if refit_summary:
            from nntrain.console import fmt_acc

            plain(f"refit          test accuracy {fmt_acc(refit_summary['test_acc'])} "
                  f"({refit_summary['n_train']} train, {refit_summary['n_test']} test samples)")
    best = summary["combos"][summary["best"]]
    if best["mean_val_acc"] != best["mean_val_acc"]:  # NaN: every combination diverged
        raise Diverged("every combination diverged in at least one fold; lower train.optimizer.lr")


def main() -> None:
    app(prog_name="nntrain")


if __name__ == "__main__":
    main()
