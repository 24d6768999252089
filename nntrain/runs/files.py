"""Files written so a crash never corrupts them: atomic text/bytes writes (temp file,
fsync, rename), checkpoints saved in order by a background thread, and checkpoints loaded
with ``weights_only=True``."""

from __future__ import annotations

import io
import json
import math
import os
import pickle
import tempfile
from pathlib import Path
from typing import Any

from nntrain.errors import CheckpointError, NntrainError


def json_text(obj: Any) -> str:
    """The one JSON writer of nntrain: every ``--json`` output and every JSON file (summary.json,
    lr-sweep.json, cv's files). NaN and ±inf (no val split, a diverged fold) become ``null``, so
    the text is strict JSON any parser reads; other non-JSON values (paths, ...) become strings.
    Indented by 2, ending with a newline."""

    def clean(v: Any) -> Any:
        if isinstance(v, float) and not math.isfinite(v):
            return None
        if isinstance(v, dict):
            return {k: clean(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [clean(x) for x in v]
        return v

    return json.dumps(clean(obj), indent=2, default=str, allow_nan=False) + "\n"


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise NntrainError(
            f"cannot write '{path}': {e.strerror or e}; free disk space or choose another output.runs_dir"
        ) from None


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def save_checkpoint(path: Path, obj: dict[str, Any]) -> None:
    _write_checkpoints([Path(path)], obj)


def _write_checkpoints(paths: list[Path], obj: dict[str, Any]) -> None:
    import torch

    buf = io.BytesIO()
    torch.save(obj, buf)  # serialized once, however many files receive it
    data = buf.getvalue()
    for path in paths:
        atomic_write_bytes(path, data)


def _snapshot(obj: Any) -> Any:
    """A private copy: tensors copied to CPU, containers rebuilt (training goes on mutating the originals)."""
    import torch

    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return {k: _snapshot(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_snapshot(v) for v in obj)
    return obj


class BackgroundWriter:
    """Per-epoch checkpoints and metrics rows off the training thread, in order.

    The state is snapshotted synchronously (a copy on the CPU); serializing, writing,
    fsyncing and renaming happen in one background thread while the next epoch trains.
    A metrics row is queued behind its checkpoint, so a row never exists without the
    checkpoint of its epoch. At most one epoch is in flight; an error (disk full, ...)
    is raised by the next ``save_checkpoints`` or by ``wait``.
    """

    def __init__(self) -> None:
        from concurrent.futures import ThreadPoolExecutor

        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="nntrain-writer")
        self._pending: list[Any] = []

    def save_checkpoints(self, files: dict[Path, dict[str, Any]]) -> None:
        self.wait()
        for path, obj in files.items():
            self.submit(_write_checkpoints, [path], _snapshot(obj))

    def submit(self, fn: Any, *args: Any) -> None:
        self._pending.append(self._pool.submit(fn, *args))

    def wait(self) -> None:
        pending, self._pending = self._pending, []
        for f in pending:
            f.result()


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load with ``weights_only=True``: a pickle that would run code is refused, never executed."""
    import torch

    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"checkpoint '{p}' not found; pass a run directory or a .pt file written by nntrain")
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else "unsupported content"
        raise CheckpointError(
            f"checkpoint '{p}' refused: it holds objects other than tensors and plain data "
            f"(loading it could run code): {first}. Only load checkpoints you trust and that nntrain wrote"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError) as e:
        raise CheckpointError(
            f"checkpoint '{p}' cannot be read ({str(e).splitlines()[0]}); it is truncated or not a PyTorch file"
        ) from None
    if not isinstance(obj, dict) or "model" not in obj:
        raise CheckpointError(f"checkpoint '{p}' is not an nntrain checkpoint (no 'model' entry)")
    return obj
