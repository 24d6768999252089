"""The one domain exception family. Library code raises these; only ``cli.py`` turns
them into an exit code and a message (ARCHITECTURE.md, "Contracts")."""

from __future__ import annotations


class NntrainError(Exception):
    """Base class. ``exit_code`` follows the CLI contract: 2 bad input, 1 negative verdict."""

    exit_code = 2


class ConfigError(NntrainError):
    """The config file or an override is invalid (names the dotted key and the bad value)."""


class DataError(NntrainError):
    """A dataset is missing, unreadable or inconsistent."""


class CheckpointError(NntrainError):
    """A checkpoint cannot be read, is untrusted, or does not match the model."""


class RunDirError(NntrainError):
    """A path given as a run directory is not one (no config.yaml, metrics.csv or checkpoint
    where nntrain train writes them) or is damaged."""


class CheckFailed(NntrainError):
    """A sanity check's verdict is negative: the job ran, the answer is 'no'."""

    exit_code = 1


class Diverged(NntrainError):
    """Training diverged (loss NaN/Inf or exploding)."""

    exit_code = 1


class Interrupted(NntrainError):
    """Ctrl-C / SIGTERM: the run was checkpointed and can be resumed."""

    exit_code = 130


def name_some(items: list[str] | tuple[str, ...], limit: int = 10) -> str:
    """'a, b, c' — every item up to ``limit``, then how many more (for messages naming files or classes)."""
    shown = ", ".join(map(str, items[:limit]))
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")
