"""Per-class evaluation of a trained model: predictions, confusion matrix, per-class accuracy."""

from __future__ import annotations

import math
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


@dataclass
class SplitOutputs:
    """What a model did on each sample of a split, from one pass (``engine.evaluate(..., keep=True)``)."""

    log_probs: torch.Tensor  # (n, C) float32 on the CPU
    y: torch.Tensor  # (n,) int64
    loss: float  # the split's mean loss as training reports it (criterion + R(W))
    acc: float

    @classmethod
    def of(cls, log_probs: torch.Tensor, y: torch.Tensor, *, loss: float, acc: float) -> SplitOutputs:
        return cls(log_probs, y, loss, acc)

    @classmethod
    def empty(cls) -> SplitOutputs:
        return cls(torch.zeros(0, 0), torch.zeros(0, dtype=torch.int64), math.nan, math.nan)

    def __len__(self) -> int:
        return len(self.y)

    @property
    def pred(self) -> np.ndarray:
        return self.log_probs.argmax(1).numpy() if len(self) else np.zeros(0, dtype=np.int64)

    @property
    def sample_loss(self) -> np.ndarray:
        """(n,) plain cross-entropy of each sample."""
        if not len(self):
            return np.zeros(0, dtype=np.float32)
        return (-self.log_probs.gather(1, self.y[:, None])[:, 0]).numpy()

    def confusion(self, num_classes: int) -> np.ndarray:
        return confusion_matrix(self.y.numpy(), self.pred, num_classes)


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


def confusion_matrix(y: np.ndarray, pred: np.ndarray, num_classes: int) -> np.ndarray:
    """(C, C) int64 counts: rows = true class, columns = predicted."""
    flat = np.asarray(y, dtype=np.int64) * num_classes + np.asarray(pred, dtype=np.int64)
    return np.bincount(flat, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def precision_recall_f1(cm: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per class from a confusion matrix: (precision, recall, F1, support), 0 where undefined
    (scikit-learn's ``precision_recall_fscore_support(..., zero_division=0)``)."""
    tp = np.diag(cm).astype(np.float64)
    support, predicted = cm.sum(1), cm.sum(0)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    recall = np.divide(tp, support, out=np.zeros_like(tp), where=support > 0)
    both = precision + recall
    f1 = np.divide(2 * precision * recall, both, out=np.zeros_like(tp), where=both > 0)
    return precision, recall, f1, support


def evaluate_classes(
    model: nn.Module, split: Split, classes: tuple[str, ...], *, name: str, batch_size: int = 1024
) -> EvalResult:
    pred = predict(model, split, batch_size=batch_size).numpy()
    return EvalResult(name, tuple(classes), confusion_matrix(split.y.cpu().numpy(), pred, len(classes)))
