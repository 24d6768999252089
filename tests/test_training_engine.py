"""Engine: the reported loss, schedules, best-model selection, determinism, checkpoints."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from nntrain.data.types import Split
from nntrain.models import reg_weights, regularization
from nntrain.pipeline.setup import setup
from nntrain.pipeline.train import train_run
from nntrain.runs.files import load_checkpoint
from nntrain.training.engine import evaluate, fit, train_one_epoch
from nntrain.training.optim import make_optimizer


def test_epoch_loss_is_data_loss_plus_reg_before_the_step(tiny_cfg):
    """One full-batch step: the reported loss is CE(model(x), y) + R(W) at the starting weights."""
    cfg = tiny_cfg("train.reg=0.5", "model.batchnorm=false")
    s = setup(cfg)
    model = s.new_model()
    x, y = s.data.train.x, s.data.train.y
    # R(W) = 0.5·λ·Σ‖W‖² over conv/linear weights, computed here without the code under test
    r = (
        0.5
        * 0.5
        * sum(
            float((m.weight.detach().double() ** 2).sum())
            for m in model.modules()
            if isinstance(m, (nn.Conv2d, nn.Linear))
        )
    )
    assert r > 0
    with torch.no_grad():
        expected = F.cross_entropy(model(x), y).item() + r
        acc = (model(x).argmax(1) == y).float().mean().item()
    opt = make_optimizer(model, cfg.train.optimizer)
    stats = train_one_epoch(
        model, s.data.train, optimizer=opt, batch_size=len(y), reg=0.5, generator=torch.Generator().manual_seed(0)
    )
    assert stats.loss == pytest.approx(expected, rel=1e-5)
    assert stats.acc == pytest.approx(acc)
    assert len(stats.step_losses) == 1 and set(stats.update_ratios) == {"conv1", "fc1", "out"}


def test_every_sample_is_used_once_per_epoch(tiny_cfg):
    """Batches are index slices of a permutation: the per-step losses weighted by batch sizes
    average to the epoch loss, and with lr≈0 a 3-batch epoch equals the full-batch loss."""
    cfg = tiny_cfg("train.reg=0", "model.batchnorm=false", "train.optimizer.lr=1e-12")
    s = setup(cfg)
    model = s.new_model()
    x, y = s.data.train.x, s.data.train.y
    with torch.no_grad():
        full = F.cross_entropy(model(x), y).item()
    opt = make_optimizer(model, cfg.train.optimizer)
    bs = math.ceil(len(y) / 3)
    stats = train_one_epoch(
        model, s.data.train, optimizer=opt, batch_size=bs, reg=0.0, generator=torch.Generator().manual_seed(1)
    )
    assert len(stats.step_losses) == 3
    assert stats.loss == pytest.approx(full, rel=1e-5)


def test_evaluate_matches_a_manual_computation(tiny_cfg):
    s = setup(tiny_cfg())
    model = s.new_model().eval()
    with torch.no_grad():
        logits = model(s.data.val.x)
    loss, acc = evaluate(model, s.data.val, batch_size=50, reg=0.1)
    r = regularization(reg_weights(model), 0.1).item()
    assert loss == pytest.approx(F.cross_entropy(logits, s.data.val.y).item() + r, rel=1e-5)
    assert acc == pytest.approx((logits.argmax(1) == s.data.val.y).float().mean().item())
    assert all(math.isnan(v) for v in evaluate(model, Split(s.data.val.x[:0], s.data.val.y[:0])))


def test_evaluate_puts_a_train_mode_model_in_eval_mode_and_restores_it():
    """fit passes its model in train mode: evaluate must switch BatchNorm and dropout to eval
    behaviour, leave the running statistics alone and give the train flag back."""
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Flatten(), nn.Linear(64, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Dropout(0.5), nn.Linear(32, 10)
    )
    with torch.no_grad():  # running statistics far from a fresh BatchNorm's (0, 1)
        for _ in range(5):
            model(torch.randn(40, 1, 8, 8) * 3 + 1)
    x, y = torch.randn(50, 1, 8, 8), torch.randint(0, 10, (50,))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.train()
    loss, acc = evaluate(model, Split(x, y), batch_size=16)
    assert model.training and all(m.training for m in model.modules())
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    ref = nn.Sequential(*model).eval()  # same modules, eval mode, outside evaluate
    with torch.no_grad():
        logits = ref(x)
    model.train()
    assert loss == pytest.approx(F.cross_entropy(logits, y).item(), rel=1e-6)
    assert acc == pytest.approx((logits.argmax(1) == y).float().mean().item())


def test_named_weights_strip_compile_and_ddp_prefixes_on_cpu(tiny_cfg):
    from nntrain.models import named_weights

    model = setup(tiny_cfg()).new_model()

    class Wrapper(nn.Module):  # the attribute name DistributedDataParallel uses
        def __init__(self, module):
            super().__init__()
            self.module = module

    plain = named_weights(model)
    assert set(plain) == {"conv1", "fc1", "out"}
    for wrapped in (torch.compile(model), Wrapper(model), Wrapper(torch.compile(model))):
        got = named_weights(wrapped)
        assert set(got) == set(plain) and all(got[k] is plain[k] for k in plain)


@pytest.mark.slow
def test_compile_trains_on_cpu_like_eager(tiny_cfg):
    """train.compile=true is not CUDA-only: on CPU it trains to the eager run's numbers."""
    cfg = tiny_cfg("train.epochs=1", "model.batchnorm=false", "model.dropout=0")
    s = setup(cfg)
    eager = fit(s.new_model(), s.data, cfg.train, seed=0, device=s.device)
    compiled_cfg = tiny_cfg("train.epochs=1", "model.batchnorm=false", "model.dropout=0", "train.compile=true")
    compiled = fit(s.new_model(), s.data, compiled_cfg.train, seed=0, device=s.device)
    for a, b in zip(eager.records, compiled.records):
        assert b["train_loss"] == pytest.approx(a["train_loss"], rel=1e-4)
        assert b["val_acc"] == pytest.approx(a["val_acc"], abs=2 / len(s.data.val))


@pytest.mark.parametrize(
    "sched, expected",
    [
        ("none", lambda e: 0.1),
        ("step", lambda e: 0.1 * 0.5 ** (e - 1)),  # the lecture's per-epoch learning_rate_decay
        ("cosine", lambda e: 0.05 * (1 + math.cos(math.pi * (e - 1) / 4))),
    ],
)
def test_lr_schedules(tiny_cfg, sched, expected):
    cfg = tiny_cfg(f"train.lr_schedule={sched}", "train.lr_decay=0.5", "train.epochs=4", "train.optimizer.lr=0.1")
    s = setup(cfg)
    h = fit(s.new_model(), s.data, cfg.train, seed=0, device=s.device)
    assert [r["lr"] for r in h.records] == pytest.approx([expected(e) for e in range(1, 5)])


def test_best_model_is_tested_and_early_stopping(tiny_cfg):
    cfg = tiny_cfg("train.epochs=30", "train.patience=2", "train.optimizer.lr=0.3")
    s = setup(cfg)
    h, run = train_run(cfg, s=s)
    accs = [r["val_acc"] for r in h.records]
    best = max(range(len(accs)), key=lambda i: (accs[i], -i))  # first epoch with the max
    assert h.best_epoch == best + 1 and h.best_val_acc == accs[best]
    assert h.stopped and "early stop" in h.stopped and len(h.records) == h.best_epoch + 2 < 30
    # the test accuracy is that of best.pt's weights
    ckpt = load_checkpoint(run.path / "best.pt")
    assert ckpt["epoch"] == h.best_epoch
    model = s.new_model()
    model.load_state_dict(ckpt["model"])
    _, test_acc = evaluate(model, s.data.test)
    assert test_acc == h.test_acc


def test_same_seed_same_metrics(tiny_cfg):
    def metrics(cfg):
        _, run = train_run(cfg)
        return [{k: v for k, v in row.items() if k != "seconds"} for row in run.read_metrics()]

    a, b = metrics(tiny_cfg("model.dropout=0.3")), metrics(tiny_cfg("model.dropout=0.3"))
    assert a == b and len(a) == 2
    c = metrics(tiny_cfg("model.dropout=0.3", "seed=1"))
    assert c != a


def test_checkpoints_are_complete_and_weights_only(tiny_cfg):
    cfg = tiny_cfg()
    h, run = train_run(cfg)
    last = load_checkpoint(run.path / "last.pt")
    assert last["epoch"] == 2 and {"model", "optimizer", "scheduler", "rng", "config", "classes"} <= set(last)
    assert last["config"]["model"]["channels"] == [8]
    assert torch.load(run.path / "last.pt", weights_only=True)["epoch"] == 2


def test_the_project_loader_loads_weights_only(tiny_cfg, monkeypatch):
    """load_checkpoint itself asks torch for weights_only=True (a pickle that runs code is refused)."""
    h, run = train_run(tiny_cfg("train.epochs=1"))
    calls = []
    real = torch.load
    monkeypatch.setattr(torch, "load", lambda *a, **kw: calls.append(kw) or real(*a, **kw))
    assert load_checkpoint(run.path / "best.pt")["best_epoch"] == 1
    assert calls and all(kw.get("weights_only") is True for kw in calls)


def test_divergence_stops_with_a_reason(tiny_cfg):
    cfg = tiny_cfg("train.optimizer.lr=1e6", "train.epochs=5", "model.batchnorm=false")
    s = setup(cfg)
    h = fit(s.new_model(), s.data, cfg.train, seed=0, device=s.device)
    assert h.diverged and "lower train.optimizer.lr" in h.stopped
    assert len(h.records) < 5 and not math.isfinite(h.records[-1]["train_loss"])


@pytest.mark.parametrize("name", ["sgd", "adam", "adamw", "rmsprop"])
def test_every_optimizer_trains(tiny_cfg, name):
    lr = 0.05 if name == "sgd" else 3e-3
    cfg = tiny_cfg(
        f"train.optimizer.name={name}",
        f"train.optimizer.lr={lr}",
        "train.epochs=3",
        f"train.optimizer.nesterov={'true' if name == 'sgd' else 'false'}",
    )
    s = setup(cfg)
    model = s.new_model()
    opt = make_optimizer(model, cfg.train.optimizer)
    assert type(opt).__name__.lower() == name
    h = fit(model, s.data, cfg.train, seed=0, device=s.device)
    losses = [r["train_loss"] for r in h.records]
    assert losses[-1] < 0.7 * losses[0] and h.test_acc > 0.5


def test_checkpointer_writes_each_state_once_best_only_when_it_changed_and_throttles_unless_forced():
    from nntrain.training.checkpoint import Checkpointer
    from nntrain.training.history import History

    class Run:
        def __init__(self):
            self.saved: list[dict] = []

        def save_checkpoints_async(self, files):
            self.saved.append({name: obj["epoch"] for name, obj in files.items()})

    model = torch.nn.Linear(2, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    sched = torch.optim.lr_scheduler.StepLR(opt, 1)
    history, run = History(), Run()
    ckpt = Checkpointer(run, model=model, optimizer=opt, scheduler=sched, generator=torch.Generator(), history=history)
    best = {k: v.clone() for k, v in model.state_dict().items()}
    history.best_epoch = 1
    ckpt.save(1, best)
    ckpt.save(1, best)  # already on disk
    ckpt.save(2, best)  # best unchanged: last.pt only
    ckpt.save(2, best, force=True)  # forced, but nothing new
    assert run.saved == [{"last.pt": 1, "best.pt": 1}, {"last.pt": 2}]

    slow = Checkpointer(
        run,
        model=model,
        optimizer=opt,
        scheduler=sched,
        generator=torch.Generator(),
        history=history,
        every_seconds=1e9,
    )
    slow.save(3, best)  # throttled
    slow.save(3, best, force=True)
    assert run.saved[2:] == [{"last.pt": 3}]


@pytest.mark.parametrize(
    "mode, model, world, expected",
    [
        ("auto", "cnn", 1, True),  # the CPU default: channels-last conv nets
        ("off", "cnn", 1, False),
        ("on", "cnn", 2, True),
        ("auto", "cnn", 2, False),  # torchrun on the CPU: contiguous, so ranks equal one process
        ("auto", "mlp", 1, False),  # nothing to lay out
    ],
)
def test_channels_last_policy_on_the_cpu(tiny_cfg, mode, model, world, expected):
    from nntrain.training.engine import _layout

    # two convs: conv2's weight (8, 8, 3, 3) has one layout or the other (a 1-channel tensor has both)
    cfg = tiny_cfg(f"model.name={model}", "model.channels=[8,8]", f"train.channels_last={mode}")
    s = setup(cfg)
    net, (train, *_) = _layout(s.new_model(), (s.data.train, s.data.val, s.data.test), s.device, world, mode)
    if model == "cnn":
        assert net.conv2.weight.is_contiguous(memory_format=torch.channels_last) is expected
        assert net.conv2.weight.is_contiguous() is not expected
    else:
        assert train.x is s.data.train.x


def test_channels_last_trains_like_the_contiguous_layout_to_rounding(tiny_cfg):
    """The layout changes only the order of float operations: the same losses to ~1e-5, and fit leaves
    the trained model in it."""
    runs = {}
    for mode in ("on", "off"):
        cfg = tiny_cfg("train.epochs=2", "model.channels=[8,8]", f"train.channels_last={mode}")
        s = setup(cfg)
        model = s.new_model()
        runs[mode] = fit(model, s.data, cfg.train, seed=0, device=s.device)
        assert model.conv2.weight.is_contiguous(memory_format=torch.channels_last) is (mode == "on")
    on, off = runs["on"].step_losses, runs["off"].step_losses
    assert on != off  # really another layout (different rounding), yet:
    assert max(abs(a - b) for a, b in zip(on, off)) < 1e-4
    assert abs(runs["on"].test_acc - runs["off"].test_acc) <= 2 / 270
