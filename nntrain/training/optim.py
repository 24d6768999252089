"""Optimizers and learning-rate schedules from the config."""

from __future__ import annotations

import torch
from torch import nn

from nntrain.config import OptimizerConfig, TrainConfig


def make_optimizer(model: nn.Module, cfg: OptimizerConfig) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if cfg.name == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov)
    if cfg.name == "adam":
        return torch.optim.Adam(params, lr=cfg.lr)
    if cfg.name == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.0)  # R(W) lives in the loss
    return torch.optim.RMSprop(params, lr=cfg.lr, momentum=cfg.momentum)


def make_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig) -> torch.optim.lr_scheduler.LRScheduler:
    """Stepped once per epoch."""
    if cfg.lr_schedule == "step":  # the lecture's learning_rate_decay: lr ×= decay every epoch
        return torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=cfg.lr_decay)
    if cfg.lr_schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=cfg.epochs)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _epoch: 1.0)
