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
    from nntrain.console import note

    for line in s.dataset.notes:  # skipped files, resizes, in-memory or streaming
        note(line)
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


def main() -> None:
    app(prog_name="nntrain")


if __name__ == "__main__":
    main()
