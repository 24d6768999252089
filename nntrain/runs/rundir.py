"""The run directory: evidence every run leaves.

``runs/<name>-<timestamp>/``: ``config.yaml`` (resolved), ``metrics.csv`` (one whole row
per epoch), ``summary.json``, ``best.pt``, ``last.pt``, figures. An existing run is never
overwritten."""

from __future__ import annotations

import csv
import fcntl
import os
import time
from pathlib import Path
from typing import Any

from nntrain.errors import NntrainError, RunDirError
from nntrain.runs.files import BackgroundWriter, atomic_write_text, json_text, save_checkpoint

_HELD: dict[str, Any] = {}  # run directory (real path) → its open, flock-ed .lock file

METRIC_COLUMNS = ("epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "seconds")


class RunDir:
    """One run's directory. Also a training callback: appends a metrics row per epoch."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._writer: BackgroundWriter | None = None

    @classmethod
    def create(cls, runs_dir: str | Path, name: str, *, config_yaml: str) -> RunDir:
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

    def lock(self) -> None:
        """Hold ``.lock`` (fcntl.flock) while this process writes the run: a second ``train --resume``
        of the same directory refuses (exit 2) instead of appending every epoch twice. The OS drops
        the lock when the process ends, however it ends: a killed run can be resumed."""
        key = os.path.realpath(self.path)
        if key in _HELD:  # this process holds it already (a resume after a train in one process)
            return
        f = open(self.path / ".lock", "a+")
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            pid = f.read().strip()
            f.close()
            who = f"process {pid}" if pid.isdigit() else "another process"
            raise RunDirError(
                f"'{self.path}' is being written by {who}: wait for it to finish (or stop it), then resume"
            ) from None
        f.seek(0)
        f.truncate()
        f.write(f"{os.getpid()}\n")
        f.flush()
        _HELD[key] = f  # kept open: closing the file would release the lock

    def unlock(self) -> None:
        f = _HELD.pop(os.path.realpath(self.path), None)
        if f is not None:
            f.close()

    def require_last(self, arg: str | Path) -> Path:
        """``last.pt`` of a run to resume; a run directory without one was killed before its first checkpoint."""
        last = self.path / "last.pt"
        if not last.exists() and (self.path / "config.yaml").is_file():
            raise RunDirError(
                f"--resume {arg}: this run was killed before its first checkpoint (no last.pt): "
                "nothing to resume; start it again"
            )
        return last

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
            raise NntrainError(
                f"cannot write '{metrics}': {e.strerror or e}; free disk space and resume the run"
            ) from None

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

    def on_fit_end(self, history: Any) -> None:
        if self._writer is not None:  # every checkpoint is on disk when fit returns; no thread is left behind
            writer, self._writer = self._writer, None
            writer.close()

    def write_steps(self, step_losses: list[float], epochs: int) -> None:
        """steps.csv: every SGD step's loss, with its epoch."""
        per_epoch = max(len(step_losses) // max(epochs, 1), 1)
        lines = ["step,epoch,loss"] + [f"{i + 1},{i // per_epoch + 1},{float(v)!r}" for i, v in enumerate(step_losses)]
        atomic_write_text(self.path / "steps.csv", "\n".join(lines) + "\n")

    def write_json(self, name: str, obj: dict[str, Any]) -> None:
        atomic_write_text(self.path / name, json_text(obj))  # NaN/inf → null

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
