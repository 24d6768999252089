"""Training recipes (issue 20): class weights, label smoothing, EMA, warmup, flip-TTA, ResNet,
balanced accuracy. Oracles: losses and averages computed here by hand, sklearn, torch's own layers."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers import cli
from torch import nn

from nntrain.config import ModelConfig, load_config
from nntrain.data.types import Split
from nntrain.errors import ConfigError
from nntrain.models import build_model, reg_weights, regularization
from nntrain.pipeline.setup import setup
from nntrain.pipeline.train import resume_run, train_run
from nntrain.runs.files import load_checkpoint
from nntrain.sanity.checks import loss_at_init
from nntrain.training.distributed import Context
from nntrain.training.ema import Ema
from nntrain.training.engine import evaluate, fit, train_one_epoch
from nntrain.training.loss import Criterion, balanced_weights
from nntrain.training.metrics import FlipTTA
from nntrain.training.optim import make_optimizer

pytestmark = pytest.mark.usefixtures("one_torch_thread")
WEIGHTED = (nn.Conv2d, nn.Linear)


def manual_loss(logits: torch.Tensor, y: torch.Tensor, w: torch.Tensor, eps: float) -> float:
    """Σ_i Σ_c w_c·q_ic·(−log p_ic) / Σ_i w_{y_i}, q = (1−ε)·onehot + ε/C: torch's documented weighted smoothing."""
    logp = torch.log_softmax(logits.double(), 1)
    c = logits.shape[1]
    q = (1 - eps) * F.one_hot(y, c).double() + eps / c
    return float((-(q * logp) * w.double()).sum() / w.double()[y].sum())


# --------------------------------------------------------------------------- class weights, smoothing


def test_balanced_weights_are_sklearns():
    from sklearn.utils.class_weight import compute_class_weight

    y = torch.tensor([0] * 50 + [1] * 5 + [2] * 20)
    expected = compute_class_weight("balanced", classes=np.arange(3), y=y.numpy())  # N / (C·n_c)
    assert balanced_weights(y, 3).double().numpy() == pytest.approx(expected, rel=1e-6)
    assert float((balanced_weights(y, 3)[y]).mean()) == pytest.approx(1.0)  # the train split's mean weight is 1


@pytest.mark.parametrize("eps", [0.0, 0.2])
def test_weighted_smoothed_loss_equals_the_independent_formula(eps):
    torch.manual_seed(0)
    logits, y = torch.randn(9, 4), torch.tensor([0, 1, 1, 3, 3, 3, 2, 0, 1])
    w = torch.tensor([0.5, 2.0, 1.0, 3.0])
    crit = Criterion(w, eps)
    assert float(crit(logits, y)) == pytest.approx(manual_loss(logits, y, w, eps), rel=1e-5)
    assert float(crit.sum(logits, y) / crit.norm(y)) == pytest.approx(manual_loss(logits, y, w, eps), rel=1e-5)
    assert float(crit(logits, y)) != pytest.approx(float(F.cross_entropy(logits, y)), rel=1e-3)  # weights act


def test_training_reports_the_weighted_loss_plus_r_w(tiny_cfg):
    """One full-batch step with class weights and smoothing: the epoch loss is the weighted CE + R(W)."""
    cfg = tiny_cfg(
        "train.reg=0.5", "model.batchnorm=false", "train.class_weights=balanced", "train.label_smoothing=0.1"
    )
    s = setup(cfg)
    model = s.new_model()
    x, y = s.data.train.x, s.data.train.y
    w = balanced_weights(y, s.data.num_classes)
    with torch.no_grad():
        r = 0.5 * 0.5 * sum(float((m.weight.double() ** 2).sum()) for m in model.modules() if isinstance(m, WEIGHTED))
        expected = manual_loss(model(x), y, w, 0.1) + r
    crit = Criterion.create(cfg.train, y, s.data.num_classes, s.device)
    stats = train_one_epoch(
        model,
        s.data.train,
        optimizer=make_optimizer(model, cfg.train.optimizer),
        batch_size=len(y),
        reg=0.5,
        generator=torch.Generator().manual_seed(0),
        criterion=crit,
    )
    assert stats.loss == pytest.approx(expected, rel=1e-5)


def test_a_weight_list_of_the_wrong_length_is_refused_naming_the_key(tiny_cfg):
    sets = ["device=cpu", "train.epochs=1", "train.class_weights=[1,2]"]
    res = cli("train", *[a for kv in sets for a in ("--set", kv)])
    assert res.exit_code == 2 and "train.class_weights: 2 weights for 10 classes" in res.output
    with pytest.raises(ConfigError, match=r"train\.class_weights=\[1,-2\].*one positive number per class"):
        load_config(None, ["train.class_weights=[1,-2]"])


@pytest.mark.parametrize("switch", ["train.class_weights=[1,1,1,1,1,9,9,9,9,9]", "train.label_smoothing=0.3"])
def test_loss_at_init_is_still_ln_c_with_the_switch_and_a_confident_net_still_fails(tiny_cfg, switch):
    cfg = tiny_cfg(switch, "model.init_std=1e-4")  # logits ~0: uniform prediction
    s = setup(cfg)
    crit = Criterion.create(cfg.train, s.data.train.y, s.data.num_classes, s.device)
    assert not crit.plain
    r = loss_at_init(s.new_model(), s.data.train, 10, tol=0.01, batch_size=64, criterion=crit)
    assert r.passed and r.values["loss"] == pytest.approx(math.log(10), rel=1e-3)
    bad = setup(tiny_cfg(switch, "model.init_std=1.0"))
    r = loss_at_init(bad.new_model(), bad.data.train, 10, tol=0.1, batch_size=64, criterion=crit)
    assert not r.passed and "too large" in r.hint


def test_sanity_loss_at_init_and_regularization_pass_with_every_switch(tiny_cfg):
    """The runner builds the configured criterion; the regularization check still measures R(W) exactly."""
    from nntrain.sanity.runner import CHECKS, run_sanity

    sets = ["train.class_weights=balanced", "train.label_smoothing=0.2", "train.ema=0.9", "train.warmup_epochs=1"]
    s = setup(tiny_cfg(*sets, "model.init_std=1e-4"))
    init, reg = run_sanity(s, checks=[c for c in CHECKS if c.name in ("loss_at_init", "regularization")])
    assert init.passed and init.values["loss"] == pytest.approx(math.log(10), rel=1e-3)
    assert reg.passed, reg


# --------------------------------------------------------------------------- EMA


def test_ema_equals_the_closed_form_average_for_weights_and_batchnorm_statistics():
    net = nn.Sequential(nn.Linear(1, 1, bias=False), nn.BatchNorm1d(1))
    d, values = 0.9, [1.0, 3.0, -2.0, 5.0]
    ema = Ema(net, d)
    for v in values:  # what SGD steps would do: new weights, new running statistics
        with torch.no_grad():
            net[0].weight.fill_(v)
            net[1].running_mean.fill_(10 * v)
        ema.update(net)
    # first update copies, then θ ← d·θ + (1−d)·v
    expected = values[0]
    for v in values[1:]:
        expected = d * expected + (1 - d) * v
    closed = d**3 * 1.0 + (1 - d) * (d**2 * 3.0 + d * -2.0 + 5.0)
    assert expected == pytest.approx(closed)
    assert float(ema.module[0].weight.detach()) == pytest.approx(closed, rel=1e-6)
    assert float(ema.module[1].running_mean) == pytest.approx(10 * closed, rel=1e-6)
    assert float(net[0].weight.detach()) == 5.0  # the trained net is untouched


def test_ema_run_saves_the_average_as_best_and_its_state_in_last_pt(tiny_cfg):
    cfg = tiny_cfg("train.ema=0.5")
    s = setup(cfg)
    h, run = train_run(cfg, s=s)
    last, best = load_checkpoint(run.path / "last.pt"), load_checkpoint(run.path / "best.pt")
    assert last["ema"] is not None and int(last["ema"]["n_averaged"]) == 2 * math.ceil(len(s.data.train) / 64)
    ema_weights = {k.removeprefix("module."): v for k, v in last["ema"].items() if k.startswith("module.")}
    assert not all(torch.equal(ema_weights[k], last["model"][k]) for k in last["model"])  # an average, not a copy
    if h.best_epoch == 2:
        assert all(torch.equal(best["model"][k], ema_weights[k]) for k in best["model"])
    model = s.new_model()
    model.load_state_dict(best["model"])
    assert evaluate(model, s.data.val)[1] == h.best_val_acc and evaluate(model, s.data.test)[1] == h.test_acc


def test_resume_with_ema_is_exact(tiny_cfg):
    from test_runs_reliability import StopAfter, rows

    cfg = tiny_cfg("train.epochs=3", "train.batch_size=100", "train.ema=0.8")  # 13 steps per epoch
    full_hist, full_run = train_run(cfg)
    part_hist, part_run = train_run(cfg, should_stop=StopAfter(18))  # inside epoch 2
    assert part_hist.interrupted
    hist, run, _ = resume_run(part_run.path)
    assert rows(run.path) == rows(full_run.path) and hist.test_acc == full_hist.test_acc
    a, b = load_checkpoint(run.path / "last.pt")["ema"], load_checkpoint(full_run.path / "last.pt")["ema"]
    assert all(torch.equal(a[k], b[k]) for k in b)


# --------------------------------------------------------------------------- warmup


@pytest.mark.parametrize(
    "sched, after",
    [("cosine", lambda t: 0.05 * (1 + math.cos(math.pi * t / 3))), ("step", lambda t: 0.1 * 0.5**t)],
)
def test_warmup_lr_sequence(tiny_cfg, sched, after):
    sets = [f"train.lr_schedule={sched}", "train.lr_decay=0.5", "train.epochs=5", "train.warmup_epochs=2"]
    s = setup(tiny_cfg(*sets, "train.optimizer.lr=0.1"))
    h = fit(s.new_model(), s.data, s.cfg.train, seed=0, device=s.device)
    expected = [0.1 / 3, 0.2 / 3] + [after(t) for t in range(3)]  # lr·k/(w+1), then the schedule over 3 epochs
    assert [r["lr"] for r in h.records] == pytest.approx(expected)


def test_warmup_must_leave_epochs():
    with pytest.raises(ConfigError, match="warmup_epochs=3 leaves no epoch for the schedule"):
        load_config(None, ["train.epochs=3", "train.warmup_epochs=3"])


# --------------------------------------------------------------------------- TTA


def test_flip_tta_averages_the_two_forward_passes_and_evaluate_uses_it():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(12, 3))
    x, y = torch.randn(20, 1, 3, 4), torch.randint(0, 3, (20,))
    with torch.no_grad():
        p = (F.softmax(net(x), 1) + F.softmax(net(torch.flip(x, dims=[3])), 1)) / 2
        out = FlipTTA(net)(x)
    torch.testing.assert_close(out.exp(), p)
    loss, acc = evaluate(FlipTTA(net), Split(x, y))
    assert loss == pytest.approx(float(F.nll_loss(p.log(), y)), rel=1e-5)
    assert acc == pytest.approx(float((p.argmax(1) == y).float().mean()))
    assert acc != evaluate(net, Split(x, y))[1] or loss != pytest.approx(evaluate(net, Split(x, y))[0])


def test_flip_tta_is_refused_for_digits_unless_flips_keep_the_class():
    res = cli("train", "--set", "eval.tta=flip")
    assert res.exit_code == 2 and res.output.count("\n") == 1
    assert "error: invalid --set eval.tta=flip: eval.tta: flip" in res.output and "another symbol" in res.output
    with pytest.raises(ConfigError, match="data.dataset: mnist"):
        load_config(None, ["data.dataset=mnist", "eval.tta=flip"])
    assert load_config(None, ["eval.tta=flip", "data.augment.hflip=true"]).eval.tta == "flip"
    assert load_config(None, ["data.dataset=cifar10", "eval.tta=flip"]).eval.tta == "flip"


def test_a_tta_run_tests_with_the_mirror_average(tiny_cfg):
    cfg = tiny_cfg("eval.tta=flip", "data.augment.hflip=true")
    s = setup(cfg)
    h, run = train_run(cfg, s=s)
    model = s.new_model()
    model.load_state_dict(load_checkpoint(run.path / "best.pt")["model"])
    assert evaluate(FlipTTA(model), s.data.test)[1] == h.test_acc
    summary = json.loads((run.path / "summary.json").read_text())
    assert summary["test_acc"] == h.test_acc


# --------------------------------------------------------------------------- ResNet


def test_resnet_shapes_depth_and_residual_identity():
    cfg = ModelConfig(name="resnet", channels=(4, 8), blocks=2, hidden=())
    net = build_model(cfg, (3, 32, 32), 10)
    assert net(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 1 + 2 * 2 * 2 + 1  # stem, 2 convs × 2 blocks × 2 stages, one 1x1 shortcut
    block = net.stage1[0]  # same width, stride 1: identity shortcut, so zero convs give x back
    nn.init.zeros_(block.conv2.weight)
    x = torch.randn(2, 4, 8, 8)
    torch.testing.assert_close(block(x), x)


def test_resnet_trains_on_cifar_shaped_data(tmp_path, monkeypatch):
    import os

    import torchvision.datasets.cifar as cifar
    from helpers import write_cifar10

    monkeypatch.setattr(cifar, "check_integrity", lambda fpath, md5=None: os.path.isfile(fpath))
    write_cifar10(tmp_path / "c", per_batch=20, n_test=20)
    sets = ["device=cpu", "data.dataset=cifar10", f"data.root={tmp_path / 'c'}", "model.name=resnet"]
    sets += ["model.channels=[4,8]", "model.blocks=1", "model.hidden=[]", "train.epochs=1"]
    sets += [f"output.runs_dir={tmp_path / 'runs'}"]
    res = cli("train", *[a for kv in sets for a in ("--set", kv)])
    assert res.exit_code == 0, res.output
    assert "balanced acc" in res.output


# --------------------------------------------------------------------------- balanced accuracy


def test_summary_reports_balanced_accuracy_and_recall_as_sklearn(tiny_cfg):
    from sklearn.metrics import balanced_accuracy_score, recall_score

    cfg = tiny_cfg("train.class_weights=balanced")
    s = setup(cfg)
    h, run = train_run(cfg, s=s)
    model = s.new_model()
    model.load_state_dict(load_checkpoint(run.path / "best.pt")["model"])
    model.eval()
    with torch.no_grad():
        pred = model(s.data.test.x).argmax(1).numpy()
    y = s.data.test.y.numpy()
    summary = json.loads((run.path / "summary.json").read_text())
    assert summary["test_balanced_acc"] == pytest.approx(balanced_accuracy_score(y, pred))
    assert list(summary["test_recall"].values()) == pytest.approx(list(recall_score(y, pred, average=None)))


# --------------------------------------------------------------------------- DDP, cv


def test_weighted_rank_losses_averaged_like_ddp_give_the_single_process_gradient():
    """Each rank's Σ w·CE(chunk)·world / Σ w(global batch): the ranks' mean gradient is the weighted mean's."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 5))
    x, y, reg, world = torch.randn(11, 1, 3, 4), torch.randint(0, 5, (11,)), 0.3, 3
    crit = Criterion(torch.tensor([0.2, 1.0, 3.0, 0.5, 2.0]), 0.1)

    def grads(loss):
        model.zero_grad()
        loss.backward()
        return [p.grad.clone() for p in model.parameters()]

    ref = grads(crit(model(x), y) + regularization(reg_weights(model), reg))
    avg = [torch.zeros_like(g) for g in ref]
    for r in range(world):
        ctx = Context(r, world, r, torch.device("cpu"), "gloo")
        ((xb, yb),) = list(ctx.batches(Split(x, y), torch.arange(11), 11))  # chunks of 4, 4, 3
        g = grads(ctx.data_loss(model(xb), yb, 0, crit) + regularization(reg_weights(model), reg))
        avg = [a + gi / world for a, gi in zip(avg, g)]
    for a, b in zip(avg, ref):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)


def test_cv_runs_with_every_switch(tmp_path):
    sets = ["device=cpu", "model.channels=[4]", "model.hidden=[8]", "train.epochs=3", "train.class_weights=balanced"]
    sets += ["train.label_smoothing=0.1", "train.ema=0.9", "train.warmup_epochs=1", "eval.tta=flip"]
    sets += ["data.augment.hflip=true", f"output.runs_dir={tmp_path / 'runs'}"]
    res = cli("cv", "--folds", "2", *[a for kv in sets for a in ("--set", kv)])
    (d,) = [p for p in (tmp_path / "runs").iterdir() if p.is_dir()]
    folds = json.loads((d / "summary.json").read_text())["combos"][0]["folds"]
    assert len(folds) == 2 and all(0.2 < f["best_val_acc"] <= 1 for f in folds)  # learned: chance is 0.1
    assert res.exit_code == 0, res.output
