"""Loading a state dict into a model, with one message a user can act on when the two differ."""

from __future__ import annotations

import torch
from torch import nn

from nntrain.errors import CheckpointError


def mismatch(own: dict[str, torch.Tensor], state: dict[str, torch.Tensor], there: str, here: str) -> str | None:
    """How ``state`` differs from a model's ``own`` state dict, in the model's order (None: it fits):
    the first shapes that differ, then how many of the model's tensors are missing and how many it lacks."""
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [
        (k, tuple(state[k].shape), tuple(v.shape)) for k, v in own.items() if k in state and state[k].shape != v.shape
    ]
    parts = [f"{k}: {there} {a} vs {here} {b}" for k, a, b in shapes[:3]]
    parts += [f"{len(missing)} of {here}'s tensors missing in {there} (e.g. {missing[0]})"] if missing else []
    parts += [f"{len(unexpected)} tensors {here} does not have (e.g. {unexpected[0]})"] if unexpected else []
    return "; ".join(parts) or None


def load_weights(model: nn.Module, state: dict[str, torch.Tensor], *, source: str) -> None:
    """``load_state_dict`` with a message a user can act on when the architectures differ."""
    why = mismatch(model.state_dict(), state, "checkpoint", "model")
    if why is not None:
        raise CheckpointError(
            f"{source} does not match the configured model ({why}); "
            "use the config the checkpoint was trained with (its run's config.yaml)"
        )
    model.load_state_dict(state)
