"""Networks: ``core`` builds cnn, mlp and the small resnet and holds R(W); ``backbones`` wraps torchvision's
resnet18 / mobilenet_v3_small / efficientnet_b0 with a new head (torchvision imported only when one is built)."""

from nntrain.models.core import (
    HEAD_SIZE,
    WEIGHTED,
    PreActBlock,
    build_model,
    first_layer_weights,
    init_weights,
    named_weights,
    reg_weights,
    regularization,
)
from nntrain.models.state import load_weights

__all__ = [
    "HEAD_SIZE",
    "WEIGHTED",
    "PreActBlock",
    "build_model",
    "first_layer_weights",
    "init_weights",
    "load_weights",
    "named_weights",
    "reg_weights",
    "regularization",
]
