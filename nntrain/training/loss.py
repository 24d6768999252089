"""The training criterion: cross-entropy with optional class weights and label smoothing.

With class weights ``w`` the data loss of a batch is torch's weighted mean
``Σ_i w_{y_i}·CE_i / Σ_i w_{y_i}``, so equal per-sample losses (an untrained net: ln C each,
smoothing or not) give the same number as the plain mean. R(W) is added by the engine as before.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from nntrain.config import TrainConfig
from nntrain.errors import ConfigError


def balanced_weights(y: torch.Tensor, num_classes: int) -> torch.Tensor:
    """w_c = N / (C·n_c) from the labels ``y`` (scikit-learn's 'balanced'); a class absent from ``y`` gets 0."""
    counts = torch.bincount(y.cpu(), minlength=num_classes).double()
    w = torch.where(counts > 0, len(y) / (num_classes * counts.clamp_min(1)), torch.zeros_like(counts))
    return w.float()


def class_weights(cfg: TrainConfig, train_y: torch.Tensor, num_classes: int) -> torch.Tensor | None:
    """The configured per-class weights (CPU float32), or None for plain cross-entropy."""
    if cfg.class_weights == "none":
        return None
    if cfg.class_weights == "balanced":
        return balanced_weights(train_y, num_classes)
    check_class_weights(cfg, num_classes)
    return torch.tensor(cfg.class_weights, dtype=torch.float32)


def check_class_weights(cfg: TrainConfig, num_classes: int) -> None:
    """A list of class weights gives one weight per class (``setup`` checks it before any run directory exists)."""
    if not isinstance(cfg.class_weights, str) and len(cfg.class_weights) != num_classes:
        raise ConfigError(
            f"train.class_weights: {len(cfg.class_weights)} weights for {num_classes} classes; "
            f"give one weight per class, or use balanced"
        )


@dataclass
class Criterion:
    """``criterion(logits, y)``: the mean data loss of a batch; ``sum``/``norm`` split it for sharded batches
    (loss = Σ shards' ``sum`` / ``norm`` of the whole batch)."""

    weight: torch.Tensor | None = None  # (C,) on the training device
    label_smoothing: float = 0.0

    @classmethod
    def create(cls, cfg: TrainConfig, train_y: torch.Tensor, num_classes: int, device: torch.device) -> Criterion:
        w = class_weights(cfg, train_y, num_classes)
        return cls(w.to(device) if w is not None else None, cfg.label_smoothing)

    def sum(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Σ_i w_{y_i}·CE_i (float32)."""
        return F.cross_entropy(
            logits.float(), y, weight=self.weight, label_smoothing=self.label_smoothing, reduction="sum"
        )

    def norm(self, y: torch.Tensor) -> torch.Tensor | float:
        """Σ_i w_{y_i}: the batch's weight (its size without class weights)."""
        return self.weight[y].sum() if self.weight is not None else float(len(y))

    def __call__(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """torch's mean reduction: Σ w_{y_i}·CE_i / Σ w_{y_i}."""
        return F.cross_entropy(logits, y, weight=self.weight, label_smoothing=self.label_smoothing)

    @property
    def plain(self) -> bool:
        return self.weight is None and self.label_smoothing == 0.0
