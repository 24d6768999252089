"""Per-class evaluation of a trained model: predictions, confusion matrix, per-class accuracy."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from nntrain.data.types import Split


@dataclass
class EvalResult:
    split: str
    classes: tuple[str, ...]
    confusion: np.ndarray  # (C, C) int64: rows = true class, columns = predicted

    @property
    def n(self) -> int:
        return int(self.confusion.sum())

    @property
    def accuracy(self) -> float:
        return float(np.trace(self.confusion) / self.n) if self.n else float("nan")

    def per_class(self) -> list[dict[str, Any]]:
        """One row per class: samples, correct, accuracy (None for a class absent from the split)."""
        rows = []
        for i, name in enumerate(self.classes):
            n = int(self.confusion[i].sum())
            correct = int(self.confusion[i, i])
            rows.append({"class": name, "n": n, "correct": correct, "acc": correct / n if n else None})
        return rows


def predict(model: nn.Module, split: Split, *, batch_size: int = 1024, precision: Any = None) -> torch.Tensor:
    """(n,) predicted class indices (CPU) in eval mode; works for resident and streamed splits."""
    from nntrain.training.device import Precision

    was_training = model.training
    model.eval()
    out = []
    with torch.inference_mode(), (precision or Precision()).autocast():  # as the engine's evaluate
        for xb, _ in split.eval_batches(batch_size):
            out.append(model(xb).argmax(1).cpu())
    model.train(was_training)
    return torch.cat(out) if out else torch.empty(0, dtype=torch.int64)


def evaluate_classes(
    model: nn.Module, split: Split, classes: tuple[str, ...], *, name: str, batch_size: int = 1024
) -> EvalResult:
    from sklearn.metrics import confusion_matrix

    pred = predict(model, split, batch_size=batch_size).numpy()
    cm = confusion_matrix(split.y.cpu().numpy(), pred, labels=np.arange(len(classes)))
    return EvalResult(name, tuple(classes), cm.astype(np.int64))
