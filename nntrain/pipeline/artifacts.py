"""What a ``train`` run leaves for monitoring, and reading it back.

Written at the end of every run: ``steps.csv`` (every SGD step's loss), ``curves.png``
(loss per step and per epoch, train vs val accuracy, lr), ``confusion.png`` (test split)
and the per-class test accuracy (returned for ``summary.json``). ``read_curves`` loads a
finished run for ``nntrain plot-curves``.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from torch import nn

from nntrain.errors import RunDirError
from nntrain.plots import Curves
from nntrain.runs.files import atomic_write_text
from nntrain.runs.rundir import RunDir
from nntrain.training.engine import History
from nntrain.training.metrics import EvalResult, evaluate_classes

if TYPE_CHECKING:
    from nntrain.pipeline.drawer import PictureWorker


def write_run_pictures(
    run: RunDir,
    history: History,
    model: nn.Module,
    data: Any,
    *,
    batch_size: int,
    pictures: PictureWorker | None = None,
) -> EvalResult | None:
    """steps.csv, curves.png and (when the test split is not empty) confusion.png for ``model``.

    ``pictures``: the helper process that draws the PNGs (``pipeline.drawer``); the caller's
    ``pictures.finish()`` waits for them. Without it they are drawn here, before returning."""
    from nntrain.pipeline.drawer import PictureWorker

    worker = pictures if pictures is not None else PictureWorker()  # not started: draws at finish()
    step_losses = [float(v) for v in history.step_losses]
    curves = Curves(run.path.name, [dict(r) for r in history.records], step_losses, test_acc=history.test_acc)
    worker.submit(("curves", str(run.path / "curves.png"), curves))  # drawn while the rest goes on
    steps_per_epoch = len(step_losses) // max(len(history.records), 1)
    lines = ["step,epoch,loss"] + [f"{i + 1},{i // steps_per_epoch + 1},{v!r}" for i, v in enumerate(step_losses)]
    atomic_write_text(run.path / "steps.csv", "\n".join(lines) + "\n")
    result = None
    if len(data.test):
        result = evaluate_classes(model, data.test, data.classes, name="test", batch_size=batch_size)
        cm = result.confusion
        worker.submit(("confusion", str(run.path / "confusion.png"), cm, list(result.classes), "test confusion"))
    if pictures is None:
        worker.finish()
    return result


def read_curves(run_dir: str | Path) -> Curves:
    """A finished run's epoch records (metrics.csv) and step losses (steps.csv, if present)."""
    run = Path(run_dir)
    metrics = run / "metrics.csv"
    if not metrics.is_file():
        raise RunDirError(f"'{run}' has no metrics.csv; pass a run directory written by nntrain train")
    try:
        with open(metrics, newline="") as f:
            records = [{k: _num(v) for k, v in row.items()} for row in csv.DictReader(f)]
        steps: list[float] = []
        if (run / "steps.csv").is_file():
            with open(run / "steps.csv", newline="") as f:
                steps = [_num(row["loss"]) for row in csv.DictReader(f)]
    except (OSError, KeyError, ValueError, csv.Error) as e:
        raise RunDirError(f"cannot read the metrics of '{run}': {e}; the run directory is damaged") from None
    if not records:
        raise RunDirError(f"'{run}/metrics.csv' has no epochs yet; wait for the run's first epoch")
    return Curves(run.resolve().name, records, steps, test_acc=_test_acc(run))


def _test_acc(run: Path) -> float | None:
    """The run's test accuracy from summary.json (None when absent or unreadable: the title says so)."""
    try:
        v = json.loads((run / "summary.json").read_text()).get("test_acc")
        return float(v) if v is not None else None
    except (OSError, ValueError, TypeError, AttributeError):
        return None


def _num(v: str | None) -> float:
    if v is None or v == "":
        return math.nan
    return float(v)
