"""Optimizers and learning-rate schedules from the config."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from nntrain.config import OptimizerConfig, TrainConfig


def make_optimizer(
    model: nn.Module, cfg: OptimizerConfig, backbone_lr: float | str | None = None
) -> torch.optim.Optimizer:
    """A model with a pretrained backbone gets two parameter groups, the head's first (at ``cfg.lr``) and the
    backbone's (at ``backbone_lr``: an lr, a multiplier "0.1x", or None = cfg.lr); frozen epochs leave the
    backbone's gradients None, which every torch optimizer skips."""
    from nntrain.models.backbones import is_backbone_param

    named = list(model.named_parameters())
    body = [p for n, p in named if is_backbone_param(n)]
    params: list[Any] = [p for n, p in named if not is_backbone_param(n) and (body or p.requires_grad)]
    if body:
        params = [{"params": params}, {"params": body, "lr": group_lr(cfg.lr, backbone_lr)}]
    if cfg.name == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov)
    if cfg.name == "adam":
        return torch.optim.Adam(params, lr=cfg.lr)
    if cfg.name == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.0)  # R(W) lives in the loss
    return torch.optim.RMSprop(params, lr=cfg.lr, momentum=cfg.momentum)


def group_lr(lr: float, backbone_lr: float | str | None) -> float:
    if backbone_lr is None:
        return lr
    if isinstance(backbone_lr, str):  # "0.1x": a multiplier of the head's lr
        return lr * float(backbone_lr.rstrip("x"))
    return float(backbone_lr)


def make_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig) -> torch.optim.lr_scheduler.LRScheduler:
    """Stepped once per epoch. ``warmup_epochs`` = w > 0: epoch k ≤ w runs at lr·k/(w+1), then the
    configured schedule runs over the remaining epochs − w (one LambdaLR, closed form)."""
    if cfg.warmup_epochs > 0:
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda k: lr_factor(k, cfg))
    if cfg.lr_schedule == "step":  # the lecture's learning_rate_decay: lr ×= decay every epoch
        return torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=cfg.lr_decay)
    if cfg.lr_schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=cfg.epochs)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _epoch: 1.0)


def lr_factor(k: int, cfg: TrainConfig) -> float:
    """The lr multiplier of epoch k + 1 (k = epochs done): warmup, then the schedule's closed form."""
    w = cfg.warmup_epochs
    if k < w:
        return (k + 1) / (w + 1)
    t = k - w
    if cfg.lr_schedule == "step":
        return cfg.lr_decay**t
    if cfg.lr_schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * t / (cfg.epochs - w)))
    return 1.0
