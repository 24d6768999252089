"""``model:``: which network, and where its initial weights come from (``model.weights``)."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from nntrain.config.base import _Section

BACKBONES = ("resnet18", "mobilenet_v3_small", "efficientnet_b0")
"""``model.name`` values built by torchvision (a backbone plus a new one-layer head for the dataset's classes)."""


class ModelConfig(_Section):
    name: Literal["cnn", "mlp", "resnet", "resnet18", "mobilenet_v3_small", "efficientnet_b0"] = "cnn"
    """cnn: [Conv3x3 → (BN) → ReLU → MaxPool2]×len(channels) → (average-pool maps larger than 4x4 to 4x4)
    → MLP head; mlp: Flatten → MLP; resnet: a small pre-activation ResNet (Conv3x3 stem, then per entry of
    channels a stage of model.blocks residual blocks [BN → ReLU → Conv3x3]×2, stages after the first halve
    H and W) → BN → ReLU → global average pool → MLP head. A step up from cnn for CIFAR-like 32 px images.
    resnet18 | mobilenet_v3_small | efficientnet_b0: torchvision's backbone with a new Linear head for the
    dataset's classes (weights small, so the loss at init is ln C); RGB input, see model.weights
    (docs/pretrained.md). channels, blocks, hidden, batchnorm and init_std do not apply to them."""
    weights: str = "none"
    """Where the initial weights come from: none (random init) | imagenet (the backbone's default torchvision
    weights, read from torchvision's cache: $TORCH_HOME/hub/checkpoints) | a torchvision weights name such as
    IMAGENET1K_V1 | a file: a torchvision-format state dict (.pth/.pt), a .safetensors, or an nntrain run
    directory / best.pt (matching layers are loaded; a head for other classes is new). Pretrained weights bring
    their normalization and working size (docs/pretrained.md)."""
    download: bool = False
    """model.weights names only: download a missing weights file into torchvision's cache (needs network)."""
    channels: tuple[int, ...] = (32, 64)
    """cnn: output channels of each conv stage (each stage halves H and W); resnet: the width of each stage."""
    blocks: int = Field(2, ge=1)
    """resnet only: residual blocks per stage (depth = 2·blocks·len(channels) + 2 weighted layers)."""
    hidden: tuple[int, ...] = (128,)
    """Widths of the hidden Linear layers (the lecture's two-layer net: mlp, [50])."""
    batchnorm: bool = True
    """cnn only: BatchNorm2d after each conv."""
    dropout: float = Field(0.0, ge=0.0, lt=1.0)
    """Dropout probability after each hidden Linear+ReLU (0 disables)."""
    init_std: float | None = Field(None, gt=0.0)
    """If set, every conv/linear weight ~ N(0, init_std²) and biases = 0 (lecture: 1e-4)."""

    @field_validator("weights")
    @classmethod
    def _weights_given(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("empty: use none, imagenet, a torchvision weights name or a file")
        return "none" if v.strip().lower() in ("none", "null") else v.strip()

    @model_validator(mode="after")
    def _backbone_keys(self) -> ModelConfig:
        # changed from the default, so a saved config.yaml (every key written out) reads back
        own = {k for k in ("channels", "blocks", "hidden", "batchnorm", "init_std") if getattr(self, k) != _DEFAULT[k]}
        if self.name in BACKBONES and own:
            raise ValueError(
                f"model.{sorted(own)[0]} does not apply to model.name: {self.name} (torchvision builds the "
                "backbone; the head is one Linear layer): remove it"
            )
        if self.name not in BACKBONES and self.weights.lower() != "none" and is_weights_name(self.weights):
            raise ValueError(
                f"model.weights: {self.weights} names torchvision weights, which exist for "
                f"{', '.join(BACKBONES)} only; for {self.name} use none or a run directory / best.pt of nntrain"
            )
        return self

    @field_validator("channels", "hidden")
    @classmethod
    def _positive_widths(cls, v: tuple[int, ...]) -> tuple[int, ...]:
        if any(w <= 0 for w in v):
            raise ValueError(f"every width must be a positive integer, got {list(v)}")
        return v

    @field_validator("channels")
    @classmethod
    def _conv_nets_need_a_stage(cls, v: tuple[int, ...], info: ValidationInfo) -> tuple[int, ...]:
        name = info.data.get("name")
        if name in ("cnn", "resnet") and not v:
            raise ValueError(
                f"empty: a {name} needs at least one conv stage (e.g. [32, 64]); "
                "for a net without conv layers use model.name: mlp"
            )
        return v


_DEFAULT = {"channels": (32, 64), "blocks": 2, "hidden": (128,), "batchnorm": True, "init_std": None}


def is_weights_name(v: str) -> bool:
    """imagenet, default or a torchvision weights name (IMAGENET1K_V1, ResNet18_Weights.IMAGENET1K_V1): not a path."""
    return v.lower() in ("imagenet", "default") or re.fullmatch(r"(\w+_Weights\.)?[A-Z0-9_]+", v) is not None
