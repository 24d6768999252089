"""The run directory: evidence every run leaves, written so a crash never corrupts it.

``runs/<name>-<timestamp>/``: ``config.yaml`` (resolved), ``metrics.csv`` (one whole row
per epoch), ``summary.json``, ``best.pt``, ``last.pt``, figures. Files are written to a
temp file in the same directory, flushed, fsynced and renamed; an existing run is
never overwritten.
"""

from __future__ import annotations

import csv
import io
import json
import os
import pickle
import tempfile
import time
from pathlib import Path
from typing import Any

from nntrain.errors import CheckpointError, NntrainError

METRIC_COLUMNS = ("epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "seconds")


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
        raise NntrainError(f"cannot write '{path}': {e.strerror or e}; free disk space or choose another output.runs_dir") from None


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
        raise CheckpointError(f"checkpoint '{p}' cannot be read ({str(e).splitlines()[0]}); it is truncated or not a PyTorch file") from None
    if not isinstance(obj, dict) or "model" not in obj:
        raise CheckpointError(f"checkpoint '{p}' is not an nntrain checkpoint (no 'model' entry)")
    return obj


class RunDir:
    """One run's directory. Also a training callback: appends a metrics row per epoch."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._writer: BackgroundWriter | None = None

    @classmethod
    def create(cls, runs_dir: str | Path, name: str, *, config_yaml: str) -> "RunDir":
        root = Path(runs_dir)
        try:
            root.mkdir(parents=True, exist_ok=True)
            stamp = time.strftime("%Y%m%d-%H%M%S")
            for i in range(1000):
                path = root / (f"{name}-{stamp}" if i == 0 else f"{name}-{stamp}-{i}")
                try:
                    path.mkdir()  # exist_ok=False: never reuse (and so overwrite) a run
                    break
                except FileExistsError:
                    continue
            else:  # pragma: no cover - a thousand runs in one second
                raise NntrainError(f"cannot find a free run directory name under '{root}'")
        except OSError as e:
            raise NntrainError(
                f"cannot create a run directory under '{root}': {e.strerror or e}; "
                "set output.runs_dir to a writable directory"
            ) from None
        run = cls(path)
        atomic_write_text(path / "config.yaml", config_yaml)
        return run

    def on_fit_start(self, info: dict[str, Any]) -> None:
        # METRIC_COLUMNS then one update_ratio.<layer> column per conv/linear layer
        self.columns = list(METRIC_COLUMNS) + [f"update_ratio.{name}" for name in info["layers"]]
        if self._writer is None:  # rows and checkpoints are written (and fsynced) off the training thread
            self._writer = BackgroundWriter()
        if not (self.path / "metrics.csv").exists():
            atomic_write_text(self.path / "metrics.csv", ",".join(self.columns) + "\n")

    def on_epoch_end(self, record: dict[str, Any]) -> None:
        line = ",".join(_fmt(record[c]) for c in self.columns) + "\n"
        if self._writer is not None:  # behind this epoch's checkpoint, off the training thread
            self._writer.submit(self._append_row, line)
        else:
            self._append_row(line)

    def _append_row(self, line: str) -> None:
        metrics = self.path / "metrics.csv"
        try:  # one whole row per write, flushed and fsynced: a crash leaves only whole rows
            with open(metrics, "a") as f:
                f.write(line)
                f.flush()
                os.fsync(f.fileno())
        except OSError as e:
            raise NntrainError(f"cannot write '{metrics}': {e.strerror or e}; free disk space and resume the run") from None

    def rewrite_metrics(self, records: list[dict[str, Any]]) -> None:
        """Replace metrics.csv by exactly ``records`` (atomic): used when resuming from last.pt."""
        metrics = self.path / "metrics.csv"
        if not records:
            metrics.unlink(missing_ok=True)  # on_fit_start writes the header again
            return
        atomic_write_text(metrics, metrics_csv(records))

    def save_checkpoint(self, name: str, obj: dict[str, Any]) -> None:
        save_checkpoint(self.path / name, obj)

    def save_checkpoints_async(self, files: dict[str, dict[str, Any]]) -> None:
        """{name: checkpoint} (last.pt, best.pt), written in the background."""
        if self._writer is None:
            self._writer = BackgroundWriter()
        self._writer.save_checkpoints({self.path / n: obj for n, obj in files.items()})

    def wait_checkpoints(self) -> None:
        if self._writer is not None:
            self._writer.wait()

    def on_fit_end(self, history: Any) -> None:
        self.wait_checkpoints()  # every checkpoint is on disk when fit returns

    def write_json(self, name: str, obj: dict[str, Any]) -> None:
        atomic_write_text(self.path / name, json.dumps(obj, indent=2, default=str) + "\n")

    def read_metrics(self) -> list[dict[str, str]]:
        with open(self.path / "metrics.csv", newline="") as f:
            return list(csv.DictReader(f))


def metrics_csv(records: list[dict[str, Any]]) -> str:
    """metrics.csv's text for ``records``: METRIC_COLUMNS, then the update_ratio.<layer> columns
    in layer order, floats in full precision (the format ``RunDir`` appends row by row)."""
    columns = list(METRIC_COLUMNS) + [k for k in (records[0] if records else {}) if k.startswith("update_ratio.")]
    rows = [",".join(columns)] + [",".join(_fmt(r[c]) for c in columns) for r in records]
    return "\n".join(rows) + "\n"


def _fmt(v: Any) -> str:
    # repr() keeps every bit of a float: two runs compare equal only if they are equal
    return repr(float(v)) if isinstance(v, float) else str(v)
