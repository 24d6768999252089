"""Files written so a crash never corrupts them: atomic text/bytes writes (temp file,
fsync, rename), checkpoints saved in order by a background thread, and checkpoints loaded
with ``weights_only=True``."""

from __future__ import annotations

import io
import json
import math
import os
import pickle
import re
import tempfile
from pathlib import Path
from typing import Any

from nntrain.errors import CheckpointError, NntrainError


def _umask() -> int:
    """The process umask, read without changing it where Linux allows (other threads write files too)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def default_mode(path: Path) -> None:
    """Give a file made by ``mkstemp`` (0600) the mode ``open()`` would have given it: 0666 minus the umask
    (umask 022: 0644), so that an exported model or a written table is as readable as any other file."""
    os.chmod(path, 0o666 & ~_umask())


def refuse_overwrite(path: Path, option: str = "--out", force: bool = False) -> None:
    """The one overwrite policy of every command that writes a file the user names: an existing file is kept
    unless ``--force`` is given (reading a run never writes into it; a file is never lost by surprise)."""
    if not force and Path(path).exists():
        raise NntrainError(
            f"{option} {path}: the file already exists; pass --force to overwrite it, or choose another path "
            "(nothing was written)"
        )


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
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        default_mode(Path(tmp))  # mkstemp makes 0600
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass
        raise NntrainError(
            f"cannot write '{path}': {e.strerror or e}; free disk space, check the folder's permissions "
            "or write elsewhere (--out, output.runs_dir)"
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

    def close(self) -> None:
        """Wait for what was submitted (raising its error), then end the thread."""
        try:
            self.wait()
        finally:
            self._pool.shutdown(wait=True)


_TORCH_LEGACY_MAGIC = b"\x80\x02\x8a\nl\xfc\x9cF\xf9 j\xa8P\x19."  # torch.save before the zip format


def _not_a_checkpoint(p: Path) -> str | None:
    """Why ``p`` is not a PyTorch file at all (None when its first bytes look like one)."""
    import zipfile

    size = p.stat().st_size
    if size == 0:
        return "it is empty (0 bytes; an interrupted copy or write?)"
    with open(p, "rb") as f:
        head = f.read(64)
    if head.startswith(_TORCH_LEGACY_MAGIC) or (head.startswith(b"PK") and zipfile.is_zipfile(p)):
        return None
    if head.startswith(b"PK\x03\x04"):
        return f"it is truncated or not a PyTorch file (a zip archive without its end, {size} bytes)"
    stripped = head.lstrip()
    if stripped[:1] in (b"{", b"["):
        what = "JSON or other text"
    elif all(32 <= b < 127 or b in (9, 10, 13) for b in head):
        what = "text"
    else:
        what = "unrecognised binary data"
    return f"it holds {what} ({size} bytes)"


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load with ``weights_only=True``: a pickle that would run code is refused, never executed."""
    import torch

    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"checkpoint '{p}' not found; pass a run directory or a .pt file written by nntrain")
    try:
        why = _not_a_checkpoint(p)
    except OSError as e:
        raise CheckpointError(f"checkpoint '{p}' cannot be read: {e.strerror or e}") from None
    if why is not None:
        raise CheckpointError(
            f"'{p}' is not a PyTorch checkpoint: {why}; pass a run directory or a .pt file written by nntrain"
        )
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        # Name what the pickle asks for; never relay PyTorch's advice to turn weights_only off.
        found = re.search(r"GLOBAL\s+([\w.]+)", str(e))
        what = f" ({found.group(1)})" if found else ""
        raise CheckpointError(
            f"checkpoint '{p}' refused: it holds objects other than tensors and plain data{what}; "
            "loading it could run code. "
            "Only load checkpoints you trust and that nntrain wrote"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError, KeyError, IndexError) as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise CheckpointError(
            f"'{p}' is not a readable PyTorch checkpoint ({first}); it is truncated or not a PyTorch file"
        ) from None
    if not isinstance(obj, dict) or "model" not in obj:
        raise CheckpointError(f"checkpoint '{p}' is not an nntrain checkpoint (no 'model' entry)")
    return obj
