"""torchvision backbones with a new head: ``nn.Sequential(backbone=Backbone, [dropout,] out=Linear)``.

torchvision is imported only here, when such a model is built (it costs seconds to import). The backbone
is torchvision's own model with its last Linear replaced by ``Identity``, so its state dict is
torchvision's, prefixed ``backbone.net.``, and torchvision-format files load into it unchanged."""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nntrain.config import ModelConfig
from nntrain.errors import CheckpointError, ConfigError
from nntrain.models.state import mismatch

CLASSIFIER = {"resnet18": "fc", "mobilenet_v3_small": "classifier.3", "efficientnet_b0": "classifier.1"}
"""The Linear layer each torchvision model ends with (ImageNet's 1000 classes): replaced by the new head."""
HEAD_STD = 0.01
"""The new head's weights ~ N(0, 0.01²), bias 0: logits near 0 at init, so the loss starts at ≈ ln C."""
MIN_SIZE = 32
"""The backbones downsample 32×: smaller inputs leave nothing to pool."""
PREFIX = "backbone."


class Backbone(nn.Module):
    """A torchvision model without its classifier; ``frozen``: no gradients, BatchNorm kept in eval mode
    (its running statistics are the pretrained ones) whatever ``train()`` the loop calls."""

    def __init__(self, net: nn.Module, features: int):
        super().__init__()
        self.net, self.features, self.frozen = net, features, False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def train(self, mode: bool = True) -> Backbone:
        return super().train(mode and not self.frozen)

    def freeze(self, frozen: bool) -> None:
        self.frozen = frozen
        for p in self.parameters():
            p.requires_grad_(not frozen)
        if frozen:
            self.eval()


def build_backbone(cfg: ModelConfig, input_shape: tuple[int, int, int], num_classes: int) -> nn.Sequential:
    import torchvision

    c, h, w = input_shape
    if c != 3:
        raise ConfigError(
            f"model.name: {cfg.name} takes RGB input, the data has {c} channel(s); set data.channels: 3 "
            "(gray images are repeated to 3 channels)"
        )
    if min(h, w) < MIN_SIZE:
        raise ConfigError(
            f"model.name: {cfg.name} needs images of at least {MIN_SIZE}x{MIN_SIZE} (it downsamples 32×), "
            f"the data is {h}x{w}; set data.image_size: {MIN_SIZE} or more"
        )
    net = torchvision.models.get_model(cfg.name, weights=None)
    for m in net.modules():
        # torchvision's MobileNetV3/EfficientNet use BatchNorm momentum 0.01 (ImageNet's long schedule): in a run of
        # a few hundred steps the running statistics lag so far behind that eval-mode accuracy stays at chance
        # (mobilenet_v3_small on digits, 4 epochs: train 0.96, val 0.10); PyTorch's default 0.1 follows the data
        if isinstance(m, nn.BatchNorm2d):
            m.momentum = 0.1
    parent, leaf = _parent(net, CLASSIFIER[cfg.name])
    features = getattr(parent, leaf).in_features
    setattr(parent, leaf, nn.Identity())
    layers: dict[str, nn.Module] = {"backbone": Backbone(net, features)}
    if cfg.dropout > 0:
        layers["dropout"] = nn.Dropout(cfg.dropout)
    layers["out"] = nn.Linear(features, num_classes)
    with torch.no_grad():
        layers["out"].weight.normal_(0.0, HEAD_STD)
        layers["out"].bias.zero_()
    return nn.Sequential(OrderedDict(layers))


def _parent(net: nn.Module, dotted: str) -> tuple[nn.Module, str]:
    *path, leaf = dotted.split(".")
    for part in path:
        net = getattr(net, part)
    return net, leaf


def backbone_of(model: nn.Module) -> Backbone | None:
    return next((m for m in model.modules() if isinstance(m, Backbone)), None)


def set_frozen(model: nn.Module, frozen: bool) -> None:
    """Freeze or unfreeze the backbone (a model without one is unchanged)."""
    bb = backbone_of(model)
    if bb is not None and bb.frozen != frozen:
        bb.freeze(frozen)


def is_backbone_param(name: str) -> bool:
    """A parameter name of ``named_parameters()`` (wrappers' prefixes allowed) that belongs to the backbone."""
    while name.startswith(("_orig_mod.", "module.")):
        name = name.removeprefix("_orig_mod.").removeprefix("module.")
    return name.startswith(PREFIX)


def weights_enum(arch: str, spec: str) -> Any:
    """``imagenet``/``default`` → the architecture's default weights; otherwise torchvision's weights name
    (``IMAGENET1K_V1`` or ``ResNet18_Weights.IMAGENET1K_V1``), checked against ``arch``."""
    from torchvision.models import get_model_weights

    enum = get_model_weights(arch)
    name = spec.split(".", 1)[1] if "." in spec else spec
    if "." in spec and spec.split(".", 1)[0] != enum.__name__:
        raise ConfigError(f"model.weights: {spec} are not weights of {arch}; its weights are {_names(enum)}")
    if name.lower() in ("imagenet", "default"):
        return enum.DEFAULT
    try:
        return enum[name]
    except KeyError:
        raise ConfigError(
            f"model.weights: no torchvision weights '{name}' for {arch}; use imagenet or one of {_names(enum)}"
        ) from None


def _names(enum: Any) -> str:
    return ", ".join(f"{w.name}" for w in enum)


def cache_file(weights: Any) -> Path:
    """Where torchvision's ``get_state_dict`` keeps (and looks for) the file: ``torch.hub.get_dir()/checkpoints``,
    i.e. $TORCH_HOME/hub/checkpoints (default ~/.cache/torch)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name


def read_torchvision_weights(weights: Any, *, download: bool) -> dict[str, torch.Tensor]:
    """The state dict of torchvision ``weights`` from its cache; download only when asked (network)."""
    path = cache_file(weights)
    if not path.is_file() and not download:
        raise CheckpointError(
            f"model.weights: {weights} is not in torchvision's cache: {path} does not exist (the cache is "
            "$TORCH_HOME/hub/checkpoints). Copy the file there from a machine that has it "
            f"(or download {weights.url}), or set model.download: true on a machine with network"
        )
    try:
        return weights.get_state_dict(progress=False, check_hash=not path.is_file())
    except (OSError, RuntimeError, ValueError) as e:  # URLError is an OSError; a bad file: RuntimeError
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise CheckpointError(
            f"model.weights: {weights} could not be read from {path} or {weights.url}: {first}"
        ) from None


def load_backbone_state(model: nn.Module, state: dict[str, torch.Tensor], arch: str, *, source: str) -> list[str]:
    """Load a torchvision-format state dict of ``arch`` into the backbone; ImageNet's classifier is dropped
    (the head stays new). Returns what was loaded, for the run's output. A state dict of another
    architecture or with other shapes: one CheckpointError naming the first differences."""
    bb = backbone_of(model)
    own = bb.net.state_dict()
    classifier = CLASSIFIER[arch] + "."
    state = {k.removeprefix("module."): v for k, v in state.items() if isinstance(v, torch.Tensor)}
    dropped = sorted(k for k in state if k.startswith(classifier) and k not in own)
    state = {k: v for k, v in state.items() if k not in dropped}
    why = mismatch(own, state, "file", arch)
    if why is not None:
        raise CheckpointError(
            f"model.weights: {source} is not a torchvision {arch} state dict ({why}); use weights "
            f"saved from torchvision.models.{arch}() (its state_dict()), or set model.name to the file's architecture"
        )
    bb.net.load_state_dict(state)
    n = sum(v.numel() for v in state.values() if v.is_floating_point())
    note = f"loaded {len(state)} backbone tensors ({n / 1e6:.1f}M values) from {source}; the head ({arch}'s "
    note += f"{CLASSIFIER[arch]} replaced by a new Linear) starts small"
    return [note + (f" (dropped the file's {', '.join(dropped)})" if dropped else "")]
