"""The end of a train run, in one place: the best model's one pass over the test split (``fit`` made it:
``History.test``) feeds ``summary.json`` (test accuracy, per-class accuracy and recall), ``confusion.png``
and the report's precision/recall and top losses; ``steps.csv`` and ``curves.png`` come from the history."""

from __future__ import annotations

import sys
import time
from typing import Any

import torch

from nntrain.data.stats import split_class_counts
from nntrain.pipeline.setup import Setup, versions
from nntrain.runs.rundir import RunDir
from nntrain.training import distributed
from nntrain.training.history import History
from nntrain.training.metrics import EvalResult


def test_result(history: History, classes: tuple[str, ...]) -> EvalResult | None:
    """The test split's confusion matrix and per-class figures (None without a test split)."""
    if history.test is None or not len(history.test):
        return None
    return EvalResult("test", tuple(classes), history.test.confusion(len(classes)))


def write_summary(run: RunDir, s: Setup, history: History, *, load_note: str | None, started: float) -> dict[str, Any]:
    """summary.json (and steps.csv); returns the summary."""
    run.write_steps(history.step_losses, len(history.records))
    result = test_result(history, s.data.classes)
    summary = {
        **summary_fields(s, history, started),
        "per_class_test": result.per_class() if result is not None else None,
        # mean per-class recall: accuracy that each class counts in equally (imbalanced test sets)
        "test_balanced_acc": result.balanced_accuracy if result is not None else None,
        "test_recall": result.recall() if result is not None else None,  # {class: recall or null}
        "advice": list(history.advice),  # the Diagnostics callback's, as fit's history keeps it (resume too)
        "load_note": load_note,  # other processes slowed the run (or None)
    }
    run.write_json("summary.json", summary)
    return summary


def summary_fields(s: Setup, h: History, started: float) -> dict[str, Any]:
    cfg = s.cfg
    return {
        "best_val_acc": h.best_val_acc,  # NaN → null in summary.json
        "best_epoch": h.best_epoch,
        "test_acc": h.test_acc,  # NaN → null in summary.json
        "test_loss": h.test_loss,  # NaN → null in summary.json
        "epochs_run": len(h.records),
        "stopped": h.stopped,
        "diverged": h.diverged,
        "train_seconds": h.seconds,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(started)),
        "seed": cfg.seed,
        "device": str(s.device),
        "precision": h.precision,  # what trained it (fp32 | bf16 | fp16) and why (train.amp)
        "precision_reason": h.precision_reason,
        "threads": torch.get_num_threads(),
        "world_size": distributed.hooks().world,  # torchrun processes
        "dataset": cfg.data.dataset,
        "split_sizes": {"train": len(s.data.train), "val": len(s.data.val), "test": len(s.data.test)},
        "classes": list(s.data.classes),
        "class_counts": split_class_counts(s.data),
        "data_notes": list(s.dataset.notes),
        "command": sys.argv,
        **versions(),
    }


def draw_run_pictures(run: RunDir, history: History, classes: tuple[str, ...]) -> None:
    """curves.png and (with a test split) confusion.png, drawn here, in this process."""
    from nntrain.plots import Curves, confusion_figure, curves_figure, save

    records = [dict(r) for r in history.records]
    curves = Curves(run.path.name, records, [float(v) for v in history.step_losses], test_acc=history.test_acc)
    save(curves_figure([curves]), run.path / "curves.png")
    result = test_result(history, classes)
    if result is not None:
        save(confusion_figure(result.confusion, list(classes), title="test confusion"), run.path / "confusion.png")
