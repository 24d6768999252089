"""An exponential moving average of the weights (``train.ema``): after every SGD step
``θ_ema ← decay·θ_ema + (1 − decay)·θ`` for parameters *and* buffers (BatchNorm running
statistics), so the averaged model evaluates with statistics that match its weights.
The first update copies the weights (torch's AveragedModel)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn


class Ema:
    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay = decay
        self.averaged = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)

    @property
    def module(self) -> nn.Module:
        """The averaged network (same architecture and state-dict keys as the trained one)."""
        return self.averaged.module

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.averaged.update_parameters(model)

    def state_dict(self) -> dict[str, Any]:
        return self.averaged.state_dict()  # module.* tensors and n_averaged: resume continues exactly

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.averaged.load_state_dict(state)
