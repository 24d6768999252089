"""Model builders: ``cnn`` and ``mlp`` as plain ``nn.Sequential`` stacks; ``resnet``, a small
pre-activation ResNet (He et al. 2016, "Identity mappings") whose head is the same MLP.

The lecture's two-layer net (3072 → 50 → 10, weights 1e-4·randn) is
``model: {name: mlp, hidden: [50], init_std: 1e-4}``.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from nntrain.config import ModelConfig
from nntrain.config.model import BACKBONES
from nntrain.errors import ConfigError

HEAD_SIZE = 4
"""cnn: feature maps larger than HEAD_SIZE² after the conv stages are average-pooled to it, so the
first Linear layer has channels·16 inputs whatever the image size (digits' 2x2 maps are unchanged)."""

WEIGHTED = (nn.Conv2d, nn.Linear)
"""Layers whose weights are regularized and counted as 'W' (not biases, not norm layers)."""


def build_model(cfg: ModelConfig, input_shape: tuple[int, int, int], num_classes: int) -> nn.Sequential:
    if cfg.name in BACKBONES:
        from nntrain.models.backbones import build_backbone

        return build_backbone(cfg, input_shape, num_classes)
    c, h, w = input_shape
    layers: dict[str, nn.Module] = {}  # named, so diagnostics can say "conv2" rather than "3"
    if cfg.name == "cnn":
        for i, out in enumerate(cfg.channels, start=1):
            if (h < 2 or w < 2) and i == 1:
                raise ConfigError(
                    f"the {h}x{w} input is too small for a conv stage (each halves H and W): "
                    "use data.image_size of 2 or more (8 or more to learn shapes), or model.name: mlp"
                )
            if h < 2 or w < 2:
                raise ConfigError(
                    f"model.channels: {len(cfg.channels)} conv stages halve the {input_shape[1]}x{input_shape[2]} "
                    f"input to nothing at stage {i}; use at most {i - 1} entries in model.channels"
                )
            layers[f"conv{i}"] = nn.Conv2d(c, out, kernel_size=3, padding=1)
            if cfg.batchnorm:
                layers[f"bn{i}"] = nn.BatchNorm2d(out)
            layers[f"relu{i}"] = nn.ReLU(inplace=True)
            layers[f"pool{i}"] = nn.MaxPool2d(2)
            c, h, w = out, h // 2, w // 2
    if cfg.name == "resnet":
        layers["stem"] = nn.Conv2d(c, cfg.channels[0], kernel_size=3, padding=1, bias=False)
        c = cfg.channels[0]
        for i, out in enumerate(cfg.channels, start=1):
            stride = 1 if i == 1 else 2
            blocks = [PreActBlock(c if b == 0 else out, out, stride if b == 0 else 1) for b in range(cfg.blocks)]
            layers[f"stage{i}"] = nn.Sequential(*blocks)
            c, h, w = out, (h + stride - 1) // stride, (w + stride - 1) // stride
        layers["bn"], layers["relu"] = nn.BatchNorm2d(c), nn.ReLU(inplace=True)
        layers["avgpool"] = nn.AdaptiveAvgPool2d(1)
        h = w = 1
    if cfg.name == "cnn" and max(h, w) > HEAD_SIZE:  # the head does not grow with the input size
        layers["avgpool"] = nn.AdaptiveAvgPool2d((min(h, HEAD_SIZE), min(w, HEAD_SIZE)))
        h, w = min(h, HEAD_SIZE), min(w, HEAD_SIZE)
    layers["flatten"] = nn.Flatten()
    features = c * h * w
    for j, width in enumerate(cfg.hidden, start=1):
        layers[f"fc{j}"] = nn.Linear(features, width)
        layers[f"fc{j}_relu"] = nn.ReLU(inplace=True)
        if cfg.dropout > 0:
            layers[f"fc{j}_dropout"] = nn.Dropout(cfg.dropout)
        features = width
    layers["out"] = nn.Linear(features, num_classes)
    model = nn.Sequential(OrderedDict(layers))
    if cfg.init_std is not None:
        init_weights(model, cfg.init_std)
    return model


class PreActBlock(nn.Module):
    """x + F(x) with F = BN → ReLU → Conv3x3(stride) → BN → ReLU → Conv3x3; when the shape changes the
    shortcut is a strided 1x1 conv of the pre-activated input (the pre-activation ResNet's block)."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.bn1, self.bn2 = nn.BatchNorm2d(c_in), nn.BatchNorm2d(c_out)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.shortcut = nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False) if stride != 1 or c_in != c_out else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = torch.relu(self.bn1(x))
        skip = self.shortcut(a) if self.shortcut is not None else x
        return skip + self.conv2(torch.relu(self.bn2(self.conv1(a))))


def init_weights(model: nn.Module, std: float) -> None:
    """The lecture's ``std * randn`` weights and zero biases for every conv/linear layer."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, WEIGHTED):
                m.weight.normal_(0.0, std)
                if m.bias is not None:
                    m.bias.zero_()


def reg_weights(model: nn.Module) -> list[torch.Tensor]:
    """The tensors R(W) sums over: weights of conv/linear layers only."""
    return [m.weight for m in model.modules() if isinstance(m, WEIGHTED)]


def named_weights(model: nn.Module) -> dict[str, torch.Tensor]:
    """{layer name: weight} for conv/linear layers, e.g. {'conv1': ..., 'out': ...}."""
    return {_unwrapped(name): m.weight for name, m in model.named_modules() if isinstance(m, WEIGHTED)}


def _unwrapped(name: str) -> str:
    """A layer's name without the prefixes torch.compile ("_orig_mod.") and DistributedDataParallel
    ("module.") add, in whichever order the wrappers were applied."""
    while name.startswith(("_orig_mod.", "module.")):
        name = name.removeprefix("_orig_mod.").removeprefix("module.")
    return name


def regularization(weights: list[torch.Tensor], reg: float) -> torch.Tensor:
    """R(W) = 0.5·λ·Σ‖W‖² (the lecture's convention, so its loss numbers reproduce)."""
    if not weights:
        return torch.zeros(())
    # w * w, not w.pow(2): the same value, and its backward is two multiplications instead of a pow
    # (about 40 µs less per step on the default CNN on a CPU, ~1 % of a digits epoch)
    return 0.5 * reg * torch.stack([(w * w).sum() for w in weights]).sum()


def first_layer_weights(model: nn.Module) -> torch.Tensor:
    """Weights of the first conv/linear layer: (out, C, kh, kw) for conv, (out, in) for linear."""
    for m in model.modules():
        if isinstance(m, WEIGHTED):
            return m.weight.detach().cpu()
    raise ValueError("model has no conv or linear layer")
