"""`nntrain sanity` on pretrained backbones (issue 30): each check stays honest for a torchvision net whose
backbone comes from a torchvision-format state dict, PASSES on a healthy one and FAILS on a broken one."""

from __future__ import annotations

import math
import re

import pytest
import torch
import torch.nn.functional as F
import torchvision
from helpers import cli
from torch import nn

from nntrain.config import load_config
from nntrain.pipeline.setup import setup
from nntrain.sanity.checks import tiny_subset
from nntrain.sanity.gradients import BACKBONE_LAYERS, gradient_check, gradient_flow
from nntrain.sanity.runner import CHECKS, run_sanity

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def r18_file(tmp_path_factory):
    """resnet18 weights in torchvision's own on-disk layout (random values: there is no network here)."""
    torch.manual_seed(1)
    path = tmp_path_factory.mktemp("weights") / "resnet18.pth"
    torch.save(torchvision.models.resnet18().state_dict(), path)
    return path


def backbone_setup(name: str, *extra: str):
    return setup(load_config(None, ["device=cpu", f"model.name={name}", "data.image_size=32", *extra]))


@pytest.fixture(scope="module")
def r18(r18_file):
    return backbone_setup("resnet18", f"model.weights={r18_file}")


def only(s, *names: str):
    return {r.name: r for r in run_sanity(s, checks=[c for c in CHECKS if c.name in names])}


def mean_ce_train_mode(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int) -> float:
    """The oracle: mean cross-entropy of the untrained net in train mode, batch by batch, dropout off
    (mobilenet_v3_small keeps a Dropout inside its backbone), without the code under test."""
    model.train()
    for m in model.modules():
        if isinstance(m, nn.Dropout):
            m.p = 0.0
    total = 0.0
    with torch.no_grad():
        for i in range(0, len(y), batch):
            total += float(F.cross_entropy(model(x[i : i + batch]), y[i : i + batch], reduction="sum"))
    return total / len(y)


# --------------------------------------------------------------------------- loss at init


@pytest.mark.parametrize("arch", ["resnet18", "mobilenet_v3_small"])
def test_loss_at_init_is_ln_c_with_a_new_small_head(arch, r18, r18_file):
    s = r18 if arch == "resnet18" else backbone_setup(arch)
    model = s.new_model()
    if arch == "resnet18":  # the backbone really is the file's
        assert torch.equal(model.backbone.net.conv1.weight, torch.load(r18_file)["conv1.weight"])
    r = only(s, "loss_at_init")["loss_at_init"]
    assert r.passed, r.measured
    oracle = mean_ce_train_mode(model, s.data.train.x, s.data.train.y, s.cfg.train.batch_size)
    assert r.values["loss"] == pytest.approx(oracle, rel=1e-4)
    assert abs(oracle - math.log(10)) <= 0.1 * math.log(10)


def test_loss_at_init_fails_when_the_head_starts_large(r18, monkeypatch):
    """A head initialized like a hidden layer (weights ~N(0, 1)) is confidently wrong: the check says so."""
    from dataclasses import replace

    new_model = r18.new_model

    def large_head(*args, **kwargs):
        model = new_model(*args, **kwargs)
        with torch.no_grad():
            model.out.weight.normal_(0.0, 1.0)
        return model

    broken = replace(r18)
    monkeypatch.setattr(broken, "new_model", large_head)
    r = only(broken, "loss_at_init")["loss_at_init"]
    assert not r.passed and r.values["loss"] > 2 * math.log(10)
    assert "too large" in r.hint


# --------------------------------------------------------------------------- regularization: what R(W) covers


def test_regularization_states_that_r_covers_the_backbone_convs_and_not_norm_layers(r18):
    r = only(r18, "regularization")["regularization"]
    assert r.passed, r.measured
    model = r18.new_model()
    # oracle: every ≥2-D weight is a conv or linear weight here (BatchNorm's are 1-D), computed by hand
    weights = {n: p for n, p in model.named_parameters() if n.endswith(".weight") and p.dim() > 1}
    assert len(weights) == 21 and sum(n.startswith("backbone.") for n in weights) == 20
    oracle = 0.5 * 1e3 * sum(float(p.detach().double().pow(2).sum()) for p in weights.values())
    assert r.values["penalty"] == pytest.approx(oracle, rel=1e-9)
    assert "the 21 conv/linear weights (11.2M values; 20 in the backbone, 1 in the head)" in r.expected
    assert "not biases or norm layers" in r.expected


# --------------------------------------------------------------------------- overfit


def test_overfit_20_passes_for_resnet18_at_32px(r18):
    r = only(r18, "overfit_tiny")["overfit_tiny"]
    assert r.passed, r.measured
    assert r.values["train_acc"] == 1.0 and r.values["loss"] <= 0.1 * math.log(10)
    assert r.values["epochs"] < 50 and r.seconds < 60  # the default 200-epoch bound is never near


# --------------------------------------------------------------------------- gradient check


class DoubleGrad(torch.autograd.Function):
    """Identity forward, a backward twice too large: a wrong gradient upstream of it."""

    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, g):
        return 2 * g


def gradcheck(model, s):
    few = tiny_subset(s.data.train, 3, seed=0)
    return gradient_check(model, few.x, few.y, entries=5, step=1e-5, tol=1e-4, floor=1e-8, seed=0)


def test_gradient_check_takes_the_head_and_a_named_sample_of_backbone_layers(r18):
    r = gradcheck(r18.new_model(), r18)
    assert r.passed, r.measured
    sampled = r.values["sampled_layers"]
    assert len(sampled) == BACKBONE_LAYERS and r.values["backbone_layers"] == 40  # resnet18: 20 convs, 20 BNs
    assert sampled[0] == "backbone.net.conv1" and sampled[-1] == "backbone.net.layer4.1.bn2"  # first and last
    checked = set(r.values["per_tensor"])
    assert {"out.weight", "out.bias"} <= checked
    assert {n.rsplit(".", 1)[0] for n in checked if n.startswith("backbone.")} == set(sampled)
    assert "of the head and of 8 of the backbone's 40 layers (conv1, layer1.1.conv1," in r.measured


def test_gradient_check_fails_on_a_wrong_backward_inside_the_backbone(r18):
    model = r18.new_model()
    model.backbone.net.conv1.register_forward_hook(lambda m, args, out: DoubleGrad.apply(out))
    r = gradcheck(model, r18)
    assert not r.passed and r.values["worst_tensor"] == "backbone.net.conv1.weight"
    assert r.values["worst_rel_error"] > 0.1 and "backbone.net.conv1.weight" in r.hint


def test_gradient_check_skips_hard_swish_kinks_on_mobilenet_v3(tmp_path):
    """MobileNetV3's hard-swish/hard-sigmoid bend at ±3: an entry whose ±h crosses one is no derivative.
    Before they were detected this check failed (9e-3) on a healthy mobilenet_v3_small."""
    torch.manual_seed(2)
    path = tmp_path / "mnv3.pth"
    torch.save(torchvision.models.mobilenet_v3_small().state_dict(), path)
    s = backbone_setup("mobilenet_v3_small", f"model.weights={path}")
    r = gradcheck(s.new_model(), s)
    assert r.passed, r.measured
    assert r.values["worst_rel_error"] < 1e-4 and len(r.values["sampled_layers"]) == BACKBONE_LAYERS


# --------------------------------------------------------------------------- gradient flow


def flow(model, s, **kw):
    n = s.cfg.train.batch_size
    return gradient_flow(model, s.data.train.x[:n], s.data.train.y[:n], optimizer=s.cfg.train.optimizer, **kw)


def test_gradient_flow_passes_on_mobilenet_v3_whose_eval_mode_signal_vanishes():
    """A randomly initialized mobilenet_v3_small in eval mode (BatchNorm statistics 0, 1) passes ~1e-11 of the
    signal: judged in eval mode alone, 80 of 142 tensors were 'unchanged by a step'; in train mode all move."""
    s = backbone_setup("mobilenet_v3_small")
    r = flow(s.new_model(), s)
    assert r.passed and r.values["tensors"] == 142, r.measured


def test_gradient_flow_flags_a_backbone_layer_frozen_by_accident(r18):
    model = r18.new_model()
    model.backbone.net.layer2[0].conv1.weight.requires_grad_(False)
    r = flow(model, r18)
    assert not r.passed and list(r.values["problems"]) == ["backbone.net.layer2.0.conv1.weight"]
    assert "frozen" in r.values["problems"]["backbone.net.layer2.0.conv1.weight"]


def test_gradient_flow_flags_a_backbone_the_optimizer_does_not_move(r18):
    model = r18.new_model()
    r = flow(model, r18, backbone_lr=1e-30)  # an lr too small to change a float32 weight of size ~1e-2..1
    assert not r.passed
    # every backbone tensor but the all-zero BatchNorm biases (0 − 1e-30·g ≠ 0 in float32): 40 of 60
    stuck = {n for n, p in model.named_parameters() if n.startswith("backbone.") and p.any()}
    assert set(r.values["problems"]) == stuck and len(stuck) == 40
    assert all("unchanged by one sgd step at lr 1e-30" in why for why in r.values["problems"].values())


# --------------------------------------------------------------------------- lr probe


def test_lr_probe_freezes_the_backbone_for_train_freeze_epochs_as_training_does(r18_file):
    s = backbone_setup("resnet18", f"model.weights={r18_file}", "train.freeze_epochs=1", "train.epochs=3")
    model = s.new_model()
    start = {n: p.detach().clone() for n, p in model.named_parameters()}
    from nntrain.sanity.checks import lr_probe

    r = lr_probe(
        model, tiny_subset(s.data.train, 64, seed=0), optimizer=s.cfg.train.optimizer.model_copy(update={"lr": 0.01}),
        steps=4, batch_size=16, reg=0.0, window=2, min_drop=0.01, explode_factor=3.0, seed=0, freeze_epochs=1,
    )  # fmt: skip
    assert r.values["frozen_epochs"] == 1 and r.values["steps"] == 4
    moved = {n for n, p in model.named_parameters() if not torch.equal(p.detach(), start[n])}
    assert moved == {"out.weight", "out.bias"}  # one frozen epoch: the head alone trained
    assert "frozen for the first 1 epoch(s)" in r.measured
    assert all(p.requires_grad for p in model.parameters())  # unfrozen afterwards


def test_lr_probe_too_high_names_backbone_lr_for_a_backbone(r18):
    from nntrain.sanity.checks import lr_probe

    r = lr_probe(
        r18.new_model(), tiny_subset(r18.data.train, 64, seed=0),
        optimizer=r18.cfg.train.optimizer.model_copy(update={"lr": 1e4}), steps=8, batch_size=16, reg=0.0,
        window=2, min_drop=0.1, explode_factor=3.0, seed=0, backbone_lr="0.5x",
    )  # fmt: skip
    assert not r.passed and r.hint.startswith("lr too high")
    assert r.values["backbone_lr"] == 5e3 and "train.backbone_lr (now 5000" in r.hint


# --------------------------------------------------------------------------- end to end


def test_sanity_cli_on_resnet18_from_a_state_dict_passes_every_check(r18_file):
    res = cli(
        "sanity", "--set", "device=cpu", "--set", "model.name=resnet18", "--set", f"model.weights={r18_file}",
        "--set", "data.image_size=32", "--set", "train.optimizer.lr=0.01", "--set", "sanity.lr_probe_steps=20",
        "--set", "threads=1",
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    rows = [line for line in res.output.splitlines() if line.startswith(("PASS", "FAIL"))]
    assert len(rows) == 8 and all(line.startswith("PASS") for line in rows), res.output
    assert re.search(r"PASS  gradient_check .* of the head and of 8 of the backbone's 40 layers \(conv1, ", res.output)
    assert "20 in the backbone, 1 in the head" in res.output
    assert res.output.rstrip().endswith("8/8 checks passed")
