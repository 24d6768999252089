"""Command line: thin commands (parse → call library → render).

The only place that turns an ``NntrainError`` into a message and an exit code
(0 ok · 1 negative verdict · 2 bad input · 130 interrupted). torch and the library are
imported inside commands so ``nntrain --help`` stays instant.
"""

from __future__ import annotations

import functools
import json
import sys
from pathlib import Path
from typing import Any, Callable, List, Optional

import typer

from nntrain.heap import FreezeHeap, before_exit, collector_paused, settle_heap

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

            if e.exit_code == 130:
                print(str(e), file=sys.stderr, flush=True)
            else:
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
    cfg = None if resume is not None else _load(config, set_)
    from nntrain import distributed

    from nntrain.errors import Interrupted

    # under torchrun: join the process group (rank > 0 then prints nothing)
    ddp = distributed.init_from_env(cfg.device if cfg is not None else _resume_device(resume))
    try:
        _train(cfg, resume, json_out, ddp)
    except (Interrupted, typer.Exit):  # every rank stopped at the same point: leave the group cleanly
        distributed.shutdown()
        raise
    distributed.shutdown()  # (after an error a rank just exits: torchrun ends the others)


def _resume_device(resume: Path) -> str:
    """The device setting of the run to resume (resume_run reports a missing config.yaml)."""
    return _load(resume / "config.yaml", []).device if (resume / "config.yaml").is_file() else "auto"


def _train(cfg: Any, resume: Optional[Path], json_out: bool, ddp: Any) -> None:
    from nntrain.console import EpochReporter, error, plain, train_summary, warn
    from nntrain.errors import Interrupted
    from nntrain.pipeline import resume_run, setup, train_run
    from nntrain.signals import GracefulStop

    s = None
    if ddp is not None and not ddp.is_main:  # torchrun rank > 0: trains in step with rank 0, silently
        settle_heap()  # no callbacks here (no FreezeHeap): the collector is on for its training
        with GracefulStop() as stop:
            history = (resume_run(resume, should_stop=stop)[0] if resume is not None
                       else train_run(cfg, s=setup(cfg), should_stop=stop)[0])
        if history.interrupted:
            raise typer.Exit(130)
        return
    if cfg is not None:
        s = setup(cfg)  # all bad input is rejected here, before a run directory exists
        from nntrain.console import note

        for line in s.dataset.notes:  # skipped files, resizes, in-memory or streaming
            note(line)
        if len(s.data.val) == 0:
            warn("data.val_fraction is 0: train/test only (the lecture's last resort); the last epoch's model is kept")
    title = f"resume {resume}" if resume is not None else f"train {cfg.model.name} on {cfg.data.dataset}"
    if ddp is not None:
        title += f" (DistributedDataParallel: {ddp.world} processes, {ddp.backend})"
    reporter = EpochReporter(title, live=False if json_out else None)
    from nntrain.console import advice, per_class_table
    from nntrain.diagnostics import Diagnostics

    if cfg is not None:
        diag_cfg = cfg.diagnostics
    else:  # resuming: the run's own settings (resume_run reports a missing config.yaml)
        diag_cfg = _load(resume / "config.yaml", []).diagnostics if (resume / "config.yaml").is_file() else None
    diagnostics = Diagnostics(diag_cfg, report=functools.partial(advice, stderr=json_out))
    callbacks = ([] if json_out else [reporter]) + [diagnostics, FreezeHeap()]
    with GracefulStop() as stop:
        try:
            if resume is not None:
                history, run, cfg = resume_run(resume, callbacks=callbacks, should_stop=stop)
            else:
                history, run = train_run(cfg, callbacks=callbacks, s=s, should_stop=stop)
        finally:
            reporter.close()
    if history.interrupted:
        raise Interrupted(
            f"{stop.requested or ('stop requested on another rank' if ddp else 'stop')}: {history.interrupted}; last.pt saved. "
            f"Resume with: nntrain train --resume {run.path}"
        )
    summary = json.loads((run.path / "summary.json").read_text())
    if json_out:
        plain(json.dumps({**summary, "run_dir": str(run.path)}, indent=2))
    else:
        if summary.get("per_class_test"):
            per_class_table(summary["per_class_test"], "per-class test accuracy (confusion.png)")
        train_summary(summary, str(run.path))
    if history.diverged:
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

# --------------------------------------------------------------------------- monitoring and pictures


def _out_path(out: Path) -> Path:
    from nntrain.errors import NntrainError

    if not out.parent.is_dir():
        raise NntrainError(f"--out {out}: the directory '{out.parent}' does not exist; create it or choose another path")
    return out


@app.command("plot-filters")
@guarded
def plot_filters(
    source: Path = typer.Argument(..., help="A run directory (uses its best.pt) or a .pt checkpoint."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="PNG to write (default: filters.png beside the checkpoint)."),
    compare_init: bool = typer.Option(
        False, "--compare-init", help="Put the filters at initialization (the run's init.pt) beside the trained ones."
    ),
) -> None:
    """Draw the first layer's weights as an image grid: conv filters, or each MLP hidden unit as an image."""
    from nntrain.console import plain
    from nntrain.errors import CheckpointError
    from nntrain.evaluation import load_model, resolve_checkpoint
    from nntrain.models import first_layer_weights
    from nntrain.plots import filter_tiles, filters_figure, save
    from nntrain.runs import load_checkpoint

    def tiles(path: Path):
        ckpt = load_checkpoint(path)
        weights = first_layer_weights(load_model(ckpt, path))
        return ckpt, filter_tiles(weights, ckpt["input_shape"])

    path = resolve_checkpoint(source)
    ckpt, trained = tiles(path)
    kind = "conv filters" if ckpt["config"]["model"]["name"] == "cnn" else "hidden units"
    panels = [(f"{len(trained)} {kind}, trained (epoch {ckpt.get('epoch', '?')})", trained)]
    if compare_init:
        init = path.parent / "init.pt"
        if not init.is_file():
            raise CheckpointError(
                f"no init.pt beside '{path}': that run did not keep its initial weights; run without --compare-init"
            )
        panels.insert(0, (f"{len(trained)} {kind}, at initialization", tiles(init)[1]))
    target = _out_path(out) if out else path.parent / ("filters-vs-init.png" if compare_init else "filters.png")
    save(filters_figure(panels), target)
    plain(f"wrote {target}")


@app.command("plot-curves")
@guarded
def plot_curves(
    runs: List[Path] = typer.Argument(..., help="One or more run directories, drawn on the same axes."),
    out: Path = typer.Option(Path("curves.png"), "--out", "-o", help="PNG to write."),
) -> None:
    """Learning curves of one or several runs: loss (per step and per epoch), train vs val accuracy, lr."""
    from nntrain.console import plain
    from nntrain.monitor import read_curves
    from nntrain.plots import curves_figure, save

    curves = [read_curves(r) for r in runs]
    save(curves_figure(curves), _out_path(out))
    plain(f"wrote {out} ({len(curves)} run(s): {', '.join(c.label for c in curves)})")


@app.command("lr-sweep")
@guarded
def lr_sweep_cmd(
    config: Optional[Path] = ConfigOpt,
    set_: Optional[List[str]] = SetOpt,
    lrs: str = typer.Option("1e-4,1e-3,1e-2,1e-1,1", "--lrs", help="Comma-separated learning rates to try."),
    epochs: int = typer.Option(5, "--epochs", min=1, help="Epochs per learning rate (short runs show the shape)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Also write the figure here."),
) -> None:
    """Train a fresh net per learning rate and draw all loss curves on one figure, with a recommendation."""
    from nntrain.lrsweep import parse_lrs

    cfg = _load(config, set_)
    values = parse_lrs(lrs)
    target = _out_path(out) if out else None
    from nntrain.config import to_yaml
    from nntrain.console import plain, sweep_table
    from nntrain.lrsweep import lr_sweep, recommendation
    from nntrain.pipeline import setup
    from nntrain.plots import lr_sweep_figure, save
    from nntrain.runs import RunDir

    s = setup(cfg)

    def progress(r) -> None:
        status = "diverged" if r.diverged else f"final loss {r.final_loss:.4f}"
        plain(f"lr {r.lr:g}: {len(r.curves.records)} epoch(s), {status}")

    runs = lr_sweep(s, values, epochs=epochs, progress=progress)
    run = RunDir.create(cfg.output.runs_dir, f"{cfg.output.run_name}-lr-sweep", config_yaml=to_yaml(cfg))
    fig = lr_sweep_figure([(r.lr, r.curves, r.diverged) for r in runs])
    save(fig, run.path / "lr-sweep.png")
    if target is not None:
        save(fig, target)
    advice = recommendation(runs)
    run.write_json("lr-sweep.json", {"epochs": epochs, "runs": [r.row() for r in runs], "recommendation": advice})
    sweep_table([r.row() for r in runs])
    plain(advice)
    plain(f"wrote {target or run.path / 'lr-sweep.png'} (run directory {run.path})")
    if all(r.diverged for r in runs):
        raise typer.Exit(1)


@app.command("eval")
@guarded
def eval_cmd(
    run_dir: Path = typer.Argument(..., help="A run directory written by nntrain train."),
    split: str = typer.Option("test", "--split", help="Which split to evaluate: test or val."),
    json_out: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Recompute a run's confusion matrix and per-class accuracy (best.pt) on its test or val split."""
    from nntrain.errors import ConfigError

    if split not in ("test", "val"):
        raise ConfigError(f"--split {split!r}: allowed: test, val")
    from nntrain.console import per_class_table, plain
    from nntrain.evaluation import eval_run
    from nntrain.plots import confusion_figure, save

    result = eval_run(run_dir, split=split)
    target = run_dir / ("confusion.png" if split == "test" else f"confusion-{split}.png")
    save(confusion_figure(result.confusion, result.classes, title=f"{split} confusion"), target)
    if json_out:
        plain(json.dumps({"split": split, "n": result.n, "accuracy": result.accuracy,
                          "per_class": result.per_class(), "confusion": result.confusion.tolist(),
                          "figure": str(target)}, indent=2))
        return
    per_class_table(result.per_class(), f"per-class {split} accuracy")
    plain(f"{split} accuracy {result.accuracy:.4f} (n={result.n})")
    plain(f"wrote {target}")


@app.command()
@guarded
@collector_paused()
def sanity(
    config: Optional[Path] = ConfigOpt,
    set_: Optional[List[str]] = SetOpt,
    json_out: bool = typer.Option(False, "--json", help="Print the results as JSON (machine-readable)."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Print every epoch of the overfit check (the lecture's log)."),
) -> None:
    """Check the model and data before training: loss at init, regularization, overfitting 20
    samples, gradients, batch independence, split hygiene, learning rate. Exit 1 if any fails."""
    cfg = _load(config, set_)
    from nntrain.console import SanityReporter, plain, sanity_report
    from nntrain.pipeline import setup
    from nntrain.sanity import run_sanity

    s = setup(cfg)
    settle_heap()
    reporter = SanityReporter(verbose=verbose, live=False if json_out else None)
    try:
        results = run_sanity(s, callbacks=[] if json_out else [reporter])
    finally:
        reporter.close()
    ok = all(r.passed for r in results)
    if json_out:
        plain(json.dumps({"passed": ok, "checks": [r.to_dict() for r in results]}, indent=2))
    else:
        sanity_report(results)
    if not ok:
        raise typer.Exit(1)


@app.command("data")
@guarded
def data_cmd(
    config: Optional[Path] = ConfigOpt,
    set_: Optional[List[str]] = SetOpt,
    grid: Path = typer.Option(Path("data-grid.png"), "--grid", help="Where to write the grid of training images (PNG)."),
    images: int = typer.Option(16, "--images", min=1, max=64, help="How many training images the grid shows."),
    json_out: bool = typer.Option(False, "--json", help="Print the report as JSON (machine-readable)."),
) -> None:
    """Inspect the data as training will see it: class counts per split, image shape, value range
    after normalization, duplicates across splits, and a grid of normalized, augmented train images."""
    cfg = _load(config, set_)
    from nntrain.console import note, plain, warn
    from nntrain.datareport import describe, image_grid, network_view, report_lines
    from nntrain.errors import NntrainError
    from nntrain.pipeline import setup

    if grid.suffix.lower() != ".png" or not grid.parent.is_dir():
        raise NntrainError(f"--grid {grid}: must be a .png file in an existing folder")
    s = setup(cfg)
    for line in s.dataset.notes:
        note(line)
    report = describe(s)
    x, y = network_view(s, min(images, len(s.data.train)))
    fig = image_grid(x, y, s.data.classes, title=f"{cfg.data.dataset}: train images as the network sees them")
    fig.savefig(grid, dpi=100)
    report["grid"] = str(grid)
    if json_out:
        plain(json.dumps(report, indent=2))
        return
    for line in report_lines(report):
        plain(line)
    plain(f"\ngrid of {len(x)} train images (normalized{', augmented' if cfg.data.augment.crop_padding or cfg.data.augment.hflip else ''}) written to {grid}")
    if len(s.data.val) == 0:
        warn("data.val_fraction is 0: train/test only (the lecture's last resort); choose hyperparameters on a val split")
    dups = sum(d["count"] for d in (report["duplicates"] or {}).values())
    if dups:
        warn(f"{dups} sample(s) have an exact copy in an earlier split: scores on val/test overstate generalization; remove the copies")


@app.command()
@guarded
@collector_paused()
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
    executor_name: str = typer.Option("local", "--executor", help="Where folds run: local (this machine's processes, see --jobs) or ray (a Ray cluster; needs the ray extra, see the README's 'Scaling out: Ray')."),
    address: Optional[str] = typer.Option(None, "--address", help="--executor ray: the cluster to join (auto = the one 'ray start' runs on this machine, or <head-ip>:6379); default: RAY_ADDRESS, else a new local Ray instance (also: local)."),
    cpus_per_job: Optional[float] = typer.Option(None, "--cpus-per-job", help="--executor ray: CPUs each fold job reserves (default 1; also its torch threads unless --threads)."),
    gpus_per_job: Optional[float] = typer.Option(None, "--gpus-per-job", help="--executor ray: GPUs each fold job reserves (default 0; fractions such as 0.5 share a GPU)."),
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
    if executor_name == "ray":
        executor = _ray_executor(jobs, threads, address, cpus_per_job, gpus_per_job)
    elif executor_name != "local":
        raise ConfigError(f"--executor {executor_name!r}: use local (processes on this machine) or ray (a Ray cluster)")
    else:
        ray_only = [f for f, v in (("--address", address), ("--cpus-per-job", cpus_per_job),
                                   ("--gpus-per-job", gpus_per_job)) if v is not None]
        if ray_only:
            raise ConfigError(f"{', '.join(ray_only)}: only with --executor ray; add --executor ray or drop them")
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
    if executor_name == "ray":
        executor.check_device(plan.base.device)
    fold_idx = check(plan, device_here=executor_name == "local")  # all bad input is rejected here, before any training
    if executor_name == "ray":
        executor.connect()  # unreachable cluster, or no node large enough for one job: before the cv directory
    vals = [va for _, va in fold_idx]
    if resume is not None:
        cvdir.check_folds(vals)
    else:
        cvdir = CvDir.create(plan, vals)

    settle_heap()  # start-up done (imports, data, checks): the collector walks only what the folds create
    progress = None if json_out else CvProgress(len(plan.combos), plan.folds)
    try:
        summary = run_cv(plan, cvdir, fold_idx, executor=executor, report=progress)
    except KeyboardInterrupt:
        if progress:
            progress.close()
        warn(f"finished folds are saved; continue with: nntrain cv --resume {cvdir.path}"
             + (" --executor ray" if executor_name == "ray" else ""))
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


def _ray_executor(jobs: int, threads: Optional[int], address: Optional[str], cpus: Optional[float],
                  gpus: Optional[float]):
    """cv --executor ray: flags checked first, then Ray imported (missing: how to install it)."""
    from nntrain.errors import ConfigError
    from nntrain.ray_executor import RayExecutor

    if jobs != 1:
        raise ConfigError(f"--jobs {jobs}: only with --executor local; on Ray, folds run in parallel as the cluster's "
                          "CPUs/GPUs allow (size each job with --cpus-per-job/--gpus-per-job)")
    return RayExecutor(address, 1.0 if cpus is None else cpus, 0.0 if gpus is None else gpus, threads)


def main() -> None:
    try:
        app(prog_name="nntrain")
    finally:
        before_exit()  # the command's files are written: a quick exit

if __name__ == "__main__":
    main()
