"""Model builders and the regularized loss, against the lecture's numbers."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from nntrain.config import ModelConfig
from nntrain.errors import ConfigError
from nntrain.models import build_model, first_layer_weights, reg_weights, regularization


def test_cnn_layout_follows_the_spec():
    m = build_model(
        ModelConfig(name="cnn", channels=(8, 16), hidden=(32,), batchnorm=True, dropout=0.25), (3, 32, 32), 7
    )
    kinds = [type(x).__name__ for x in m]
    assert kinds == [
        "Conv2d",
        "BatchNorm2d",
        "ReLU",
        "MaxPool2d",
        "Conv2d",
        "BatchNorm2d",
        "ReLU",
        "MaxPool2d",
        "AdaptiveAvgPool2d",  # 8x8 maps → 4x4: the head does not grow with the input size
        "Flatten",
        "Linear",
        "ReLU",
        "Dropout",
        "Linear",
    ]
    assert m.conv1.kernel_size == (3, 3) and m.conv1.padding == (1, 1)
    assert m.fc1.in_features == 16 * 4 * 4 and m.out.out_features == 7
    assert m(torch.zeros(2, 3, 32, 32)).shape == (2, 7)


def test_mlp_layout_and_two_layer_net():
    m = build_model(ModelConfig(name="mlp", hidden=(50,)), (3, 32, 32), 10)
    assert [type(x).__name__ for x in m] == ["Flatten", "Linear", "ReLU", "Linear"]
    assert m.fc1.weight.shape == (50, 3072) and m.out.weight.shape == (10, 50)


def test_too_many_conv_stages_is_a_config_error():
    with pytest.raises(ConfigError, match="model.channels: 4 conv stages .* use at most 3 entries"):
        build_model(ModelConfig(channels=(4, 4, 4, 4)), (1, 8, 8), 10)


def test_init_std_draws_weights_and_zeroes_biases():
    torch.manual_seed(0)
    m = build_model(ModelConfig(name="mlp", hidden=(200,), init_std=0.01), (1, 32, 32), 10)
    assert m.fc1.weight.std().item() == pytest.approx(0.01, rel=0.02)
    assert abs(m.fc1.weight.mean().item()) < 1e-3
    assert torch.count_nonzero(m.fc1.bias) == 0 and torch.count_nonzero(m.out.bias) == 0


def test_regularization_covers_conv_and_linear_weights_only():
    m = build_model(ModelConfig(channels=(4,), hidden=(8,), batchnorm=True), (1, 8, 8), 3)
    ws = reg_weights(m)
    assert [tuple(w.shape) for w in ws] == [(4, 1, 3, 3), (8, 64), (3, 8)]  # no biases, no BN
    expected = 0.5 * 0.3 * sum(float((w.detach().double() ** 2).sum()) for w in ws)
    assert float(regularization(ws, 0.3).detach()) == pytest.approx(expected, rel=1e-6)


def test_first_layer_weights_is_the_first_conv():
    m = build_model(ModelConfig(channels=(5,), hidden=()), (3, 8, 8), 2)
    assert first_layer_weights(m).shape == (5, 3, 3, 3)


def test_lecture_loss_numbers_reproduce():
    """Two-layer net 3072→50→10, weights 1e-4·randn: loss 2.3026 at λ=0, ≈3.07 at λ=1e3."""
    torch.manual_seed(0)
    m = build_model(ModelConfig(name="mlp", hidden=(50,), init_std=1e-4), (3, 32, 32), 10)
    x = torch.randn(500, 3, 32, 32)
    y = torch.randint(0, 10, (500,))
    data_loss = F.cross_entropy(m(x), y).item()
    assert data_loss == pytest.approx(math.log(10), abs=1e-3)  # 2.3026
    loss_high = data_loss + regularization(reg_weights(m), 1e3).item()
    # E[R] = 0.5·1e3·(3072·50 + 50·10)·1e-8 = 0.7705
    assert loss_high == pytest.approx(3.07, abs=0.02)
