"""What every command shares: the --config/--set options, loading them, and the guard that
turns an ``NntrainError`` into one message and an exit code (0 ok · 1 negative verdict ·
2 bad input · 130 interrupted) — the only place that does."""

from __future__ import annotations

import functools
import os
import signal
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, List, Optional

import typer

_IMPORTED = time.perf_counter()


def process_seconds() -> float:
    """Wall time since this process started (Linux: from /proc; elsewhere: since the CLI was imported)."""
    try:
        start = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19]) / os.sysconf("SC_CLK_TCK")
        return max(0.0, float(Path("/proc/uptime").read_text().split()[0]) - start)
    except (OSError, ValueError, IndexError):
        return time.perf_counter() - _IMPORTED


ConfigOpt = typer.Option(
    None, "--config", "-c", help="YAML config file (default: the built-in defaults = configs/default.yaml)."
)


SetOpt = typer.Option(
    None,
    "--set",
    "-s",
    metavar="KEY=VALUE",
    help="Override a key, validated like the file: --set train.optimizer.lr=0.01 (repeatable).",
)


def guarded(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Bad input → one line on stderr + exit 2; negative verdict → 1; Ctrl-C → 130."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from nntrain.errors import NntrainError

        try:
            return fn(*args, **kwargs)
        except NntrainError as e:
            from nntrain.cli.render import error

            if e.exit_code == 130:
                print(str(e), file=sys.stderr, flush=True)
            else:
                error(str(e))
            raise typer.Exit(e.exit_code) from None
        except KeyboardInterrupt as e:
            from nntrain.cli.render import error

            error(f"{e.args[0]}: interrupted" if e.args else "interrupted")
            raise typer.Exit(130) from None

    return wrapper


@contextmanager
def sigterm_as_ctrl_c() -> Iterator[None]:
    """SIGTERM stops the command as Ctrl-C does (a KeyboardInterrupt named after it, so ``guarded`` or the
    command's own handler says what stopped it and exits 130); the default action kills the process
    without a word. ``train`` has its own handler: it finishes the step and checkpoints first."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handle(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(signal.Signals(signum).name)

    old = signal.signal(signal.SIGTERM, handle)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def load_cfg(config: Optional[Path], overrides: Optional[List[str]], *, as_typed: bool = False):
    """The config of a command. ``data.root`` is made absolute (``~`` expanded) unless ``as_typed`` (``config
    show``): a run's config.yaml and checkpoints then name the data wherever ``eval``/``export`` run later."""
    import os

    from nntrain.config import load_config

    cfg = load_config(config, overrides or [])
    if as_typed or cfg.data.root is None:
        return cfg
    root = os.path.abspath(os.path.expanduser(cfg.data.root))
    return cfg.model_copy(update={"data": cfg.data.model_copy(update={"root": root})})


ForceOpt = typer.Option(False, "--force", help="Overwrite the output file if it exists (default: refuse, exit 2).")


def out_path(out: Path, option: str = "--out", suffixes: tuple[str, ...] = (".png",), *, force: bool = False) -> Path:
    """An output file the user asked for: one of ``suffixes`` (pictures: .png), in an existing folder (the
    write itself reports a read-only one), not an existing file unless ``force`` (``runs.files.refuse_overwrite``,
    the one overwrite policy)."""
    from nntrain.errors import NntrainError
    from nntrain.runs.files import refuse_overwrite

    if out.suffix.lower() not in suffixes:
        if suffixes == (".png",):
            raise NntrainError(f"{option} {out}: nntrain writes PNG pictures; give a file name ending in .png")
        raise NntrainError(f"{option} {out}: unknown extension '{out.suffix}'; use {', '.join(suffixes)}")
    if not out.parent.is_dir():
        raise NntrainError(
            f"{option} {out}: the directory '{out.parent}' does not exist; create it or choose a path in an "
            "existing folder"
        )
    refuse_overwrite(out, option, force)
    return out


def default_out(name: str) -> Path:
    """A picture's default place: ``name`` in the current directory, unless that directory is a run
    (reading a run never writes into it)."""
    from nntrain.errors import NntrainError

    here = Path.cwd()
    if (here / "config.yaml").is_file() and ((here / "metrics.csv").is_file() or (here / "last.pt").is_file()):
        raise NntrainError(
            f"the current directory '{here}' is a run directory and nntrain never writes into a run unless asked; "
            f"pass --out (e.g. --out ../{name})"
        )
    return Path(name)


def run_name(path: Path) -> str:
    """The name of the run at ``path`` ('.' and 'runs/x/' resolved to the folder's own name)."""
    return Path(path).resolve().name


def set_hint(option: str, command: str | None) -> str | None:
    """``--epochs`` → "config keys are set with --set: --set train.epochs=VALUE" (None if no key matches)."""
    from nntrain.config import Config

    name = option.lstrip("-").replace("-", "_")
    found: list[str] = []

    def walk(model: Any, prefix: str) -> None:
        for key, field in model.model_fields.items():
            ann = field.annotation
            if isinstance(ann, type) and hasattr(ann, "model_fields"):
                walk(ann, f"{prefix}{key}.")
            elif key == name:
                found.append(f"{prefix}{key}")

    walk(Config, "")
    if not found or command not in ("train", "sanity", "lr-sweep", "cv", "data", "config"):
        return None
    return "config keys are set with --set: " + " or ".join(f"--set {k}=VALUE" for k in found[:3])
