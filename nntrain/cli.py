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
    from nntrain.console import EpochReporter, error, plain, train_summary, warn
    from nntrain.errors import Interrupted
    from nntrain.pipeline import resume_run, setup, train_run
    from nntrain.signals import GracefulStop

    s = None
    if cfg is not None:
        s = setup(cfg)  # all bad input is rejected here, before a run directory exists
        if len(s.data.val) == 0:
            warn("data.val_fraction is 0: train/test only (the lecture's last resort); the last epoch's model is kept")
    title = f"resume {resume}" if resume is not None else f"train {cfg.model.name} on {cfg.data.dataset}"
    reporter = EpochReporter(title, live=False if json_out else None)
    callbacks = [] if json_out else [reporter]
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
            f"{stop.requested or 'stop'}: {history.interrupted}; last.pt saved. "
            f"Resume with: nntrain train --resume {run.path}"
        )
    summary = json.loads((run.path / "summary.json").read_text())
    if json_out:
        plain(json.dumps({**summary, "run_dir": str(run.path)}, indent=2))
    else:
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


@app.command()
@guarded
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


def main() -> None:
    app(prog_name="nntrain")


if __name__ == "__main__":
    main()
