"""Per-class evaluation of a trained model: predictions, confusion matrix, per-class accuracy."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
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

    def recall(self) -> dict[str, float | None]:
        """{class: correct / samples of that class} (None for a class absent from the split)."""
        return {r["class"]: r["acc"] for r in self.per_class()}

    @property
    def balanced_accuracy(self) -> float:
        """Mean per-class recall over the classes present (scikit-learn's balanced_accuracy_score)."""
        present = [a for a in self.recall().values() if a is not None]
        return float(np.mean(present)) if present else float("nan")

    def per_class(self) -> list[dict[str, Any]]:
        """One row per class: samples, correct, accuracy (None for a class absent from the split)."""
        rows = []
        for i, name in enumerate(self.classes):
            n = int(self.confusion[i].sum())
            correct = int(self.confusion[i, i])
            rows.append({"class": name, "n": n, "correct": correct, "acc": correct / n if n else None})
        return rows


class FlipTTA(nn.Module):
    """Test-time augmentation (``eval.tta: flip``): log of the mean softmax over each image and its
    left-right mirror. Log-probabilities are valid logits (softmax and cross-entropy leave them unchanged),
    so every consumer of a model's output (argmax, loss, predict) works on it as on plain logits."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = F.softmax(self.net(x).float(), dim=1) + F.softmax(self.net(x.flip(-1)).float(), dim=1)
        return torch.log(p / 2)


def with_tta(model: nn.Module, tta: str) -> nn.Module:
    """``model`` wrapped for the configured test-time augmentation (none: ``model`` itself)."""
    return FlipTTA(model).train(model.training) if tta == "flip" else model  # the wrapper in the model's mode


def checkpoint_tta(ckpt: dict[str, Any]) -> str:
    """The ``eval.tta`` a checkpoint's run was evaluated with ("none" for checkpoints from before it existed)."""
    return str(((ckpt.get("config") or {}).get("eval") or {}).get("tta", "none"))


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
    from nntrain.data import sklearn_calls

    pred = predict(model, split, batch_size=batch_size).numpy()
    cm = sklearn_calls.call("confusion_matrix", split.y.cpu().numpy(), pred, labels=np.arange(len(classes)))
    return EvalResult(name, tuple(classes), cm.astype(np.int64))
