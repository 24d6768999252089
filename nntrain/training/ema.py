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
        self._pairs: tuple | None = None  # (model, float tensors: average, model; all tensors: average, model)

    @property
    def module(self) -> nn.Module:
        """The averaged network (same architecture and state-dict keys as the trained one)."""
        return self.averaged.module

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """AveragedModel.update_parameters with the EMA rule, in one fused ``_foreach_lerp_`` per step
        (its generic path's per-tensor Python loop is a large part of a small net's step)."""
        if self._pairs is None or self._pairs[0] is not model:
            own = [*self.module.parameters(), *self.module.buffers()]
            theirs = [*model.parameters(), *model.buffers()]
            floats = [i for i, t in enumerate(own) if t.is_floating_point()]
            self._pairs = (model, [own[i] for i in floats], [theirs[i] for i in floats], own, theirs)
        _, own_f, theirs_f, own, theirs = self._pairs
        if int(self.averaged.n_averaged) == 0:  # the first update copies (AveragedModel's rule)
            torch._foreach_copy_(own, [t.detach() for t in theirs])
        else:
            torch._foreach_lerp_(own_f, [t.detach() for t in theirs_f], 1.0 - self.decay)
        self.averaged.n_averaged += 1

    def state_dict(self) -> dict[str, Any]:
        return self.averaged.state_dict()  # module.* tensors and n_averaged: resume continues exactly

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.averaged.load_state_dict(state)
