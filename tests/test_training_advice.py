"""Live diagnostics: each rule fires when (and only when) it holds, once; the engine's stop
mechanism keeps a diverging epoch out of best.pt; a diverging CLI run exits 1 with advice."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import pytest
import torch
from helpers import cli

from nntrain.config import DiagnosticsConfig, load_config
from nntrain.pipeline.setup import setup
from nntrain.runs.files import load_checkpoint
from nntrain.runs.rundir import RunDir
from nntrain.training.advice import Diagnostics
from nntrain.training.callbacks import StopTraining
from nntrain.training.engine import evaluate, fit

torch.set_num_threads(1)  # tiny models: threads only oversubscribe a shared 2-core machine

TINY = ["--set", "model.channels=[4]", "--set", "model.hidden=[16]"]


def record(epoch, loss, *, train_acc=0.5, val_acc=0.5, lr=0.1, **ratios):
    r = {
        "epoch": epoch,
        "train_loss": loss,
        "train_acc": train_acc,
        "val_acc": val_acc,
        "val_loss": loss,
        "lr": lr,
        "seconds": 0.0,
    }
    r.update({f"update_ratio.{k}": v for k, v in ratios.items()})
    return r


def run_records(diag: Diagnostics, records, *, epochs=10, first_step_loss=2.3):
    """Drive the callback exactly as fit does; return the StopTraining raised, if any."""
    diag.on_fit_start({"epochs": epochs, "history": SimpleNamespace(step_losses=[first_step_loss])})
    for r in records:
        try:
            diag.on_epoch_metrics(r)
        except StopTraining as stop:
            diag.on_epoch_end(r)
            return stop
        diag.on_epoch_end(r)
    return None


def rules(diag):
    return [a.rule for a in diag.advice]


# --------------------------------------------------------------------------- rules, one by one


def test_nan_loss_stops_with_lower_the_lr_advice():
    reported = []
    diag = Diagnostics(report=reported.append)
    stop = run_records(diag, [record(1, 1.0), record(2, math.nan)])
    assert stop is not None and stop.diverged
    assert "lower the learning rate" in stop.reason and "epoch 2" in stop.reason
    assert [a.rule for a in reported] == ["diverged"] and reported[0].epoch == 2


@pytest.mark.parametrize("factor,stops", [(2.9, False), (3.1, True)])
def test_loss_far_above_its_initial_value_stops(factor, stops):
    # cs231n's rule: loss > 3 x the first loss → break; the first loss here is 2.0
    diag = Diagnostics()
    stop = run_records(diag, [record(1, 1.5), record(2, 2.0 * factor)], first_step_loss=2.0)
    assert (stop is not None) is stops
    if stops:
        assert stop.diverged and f"{factor:.1f}x its initial value 2" in stop.reason


def test_flat_loss_in_the_early_epochs_says_lr_may_be_too_low_once():
    diag = Diagnostics(DiagnosticsConfig(early_epochs=3, flat_drop=0.01))
    run_records(diag, [record(e, 2.29) for e in range(1, 7)], first_step_loss=2.30)  # -0.4%: flat
    assert rules(diag) == ["flat"]
    assert diag.advice[0].epoch == 3 and "learning rate may be too low" in diag.advice[0].message


def test_falling_loss_is_not_flat_and_rising_loss_says_too_high():
    falling = Diagnostics()
    run_records(falling, [record(1, 2.0), record(2, 1.5), record(3, 1.2)], first_step_loss=2.3)
    assert rules(falling) == []
    rising = Diagnostics()
    run_records(rising, [record(1, 2.5), record(2, 2.6), record(3, 2.7)], first_step_loss=2.3)
    # reported in the first epoch that ends above the loss at initialization, not at early_epochs
    assert rules(rising) == ["above_init"] and "too high" in rising.advice[0].message
    assert rising.advice[0].epoch == 1 and rising.verdict() == "too high"


def test_overfitting_gap_reported_once_and_only_above_the_threshold():
    at_threshold = Diagnostics(DiagnosticsConfig(overfit_gap=0.25))
    run_records(at_threshold, [record(e, 1.0 / e, train_acc=1.0, val_acc=0.75) for e in range(1, 4)])
    assert "overfit" not in rules(at_threshold)  # a gap of exactly 0.25 is not "above"
    diag = Diagnostics(DiagnosticsConfig(overfit_gap=0.1, overfit_epochs=2))
    run_records(
        diag,
        [
            record(1, 1.0, train_acc=0.8, val_acc=0.78),
            record(2, 0.9, train_acc=0.31, val_acc=0.20),  # one noisy epoch: not yet
            record(3, 0.8, train_acc=0.50, val_acc=0.48),
        ]
        + [record(e, 1.0 / e, train_acc=0.99, val_acc=0.80) for e in range(4, 8)],
    )
    assert rules(diag).count("overfit") == 1
    a = next(a for a in diag.advice if a.rule == "overfit")
    # val improved to 0.80 at epoch 4 and stopped: two epochs without improvement → epoch 6
    assert a.epoch == 6 and "overfitting: raise reg or get more data" in a.message


def test_overfit_stays_quiet_while_val_rises_and_on_a_dip_below_its_best():
    rising = Diagnostics(DiagnosticsConfig(overfit_gap=0.1, overfit_epochs=2))
    # the photo folder's early epochs: train far ahead, val still climbing every epoch
    accs = [(0.68, 0.30), (0.89, 0.45), (0.97, 0.53), (0.99, 0.73), (0.99, 0.84), (0.99, 0.98)]
    run_records(rising, [record(e, 1.0 / e, train_acc=t, val_acc=v) for e, (t, v) in enumerate(accs, start=1)])
    assert "overfit" not in rules(rising)
    dip = Diagnostics(DiagnosticsConfig(overfit_gap=0.1, overfit_epochs=2))
    # val reached 0.95, then two noisy epochs far below it: the gap to the best val is small
    accs = [(0.70, 0.82), (0.97, 0.95), (0.98, 0.47), (0.86, 0.75), (0.99, 0.80)]
    run_records(dip, [record(e, 0.5, train_acc=t, val_acc=v) for e, (t, v) in enumerate(accs, start=1)])
    assert "overfit" not in rules(dip)


def test_update_ratio_advice_comes_once_per_direction_when_the_leading_layer_changes():
    """The rule speaks for every layer at once; a new most-extreme layer next epoch is not new advice."""
    diag = Diagnostics(DiagnosticsConfig(update_ratio=1e-3, update_ratio_factor=100, early_epochs=3))
    run_records(
        diag,
        [
            record(1, 2.29, conv1=0.5, conv2=0.3, fc1=1e-3),
            record(2, 2.29, conv1=0.3, conv2=0.9, fc1=1e-3),  # conv2 now leads: the same advice
        ],
    )
    ratio_rules = [r for r in rules(diag) if r.startswith("update_ratio.")]
    assert ratio_rules == ["update_ratio.conv1.high"]
    assert "2 layers (conv1 0.5, conv2 0.3)" in diag.advice[0].message


def test_update_ratio_names_the_layer_and_the_direction_early_only():
    diag = Diagnostics(DiagnosticsConfig(update_ratio=1e-3, update_ratio_factor=100, early_epochs=2))
    run_records(
        diag,
        [
            record(1, 2.29, conv1=0.5, fc1=1e-3, out=2e-3),  # conv1 500x too big, the loss barely fell
            record(
                2, 2.29, conv1=2e-3, fc1=1e-6, out=1e-3
            ),  # fc1 1000x too small (a same-epoch "lower" would silence it)
            record(3, 2.29, conv1=0.5, fc1=1e-3, out=1.0),  # past early_epochs: not checked
        ],
    )
    assert rules(diag) == ["update_ratio.conv1.high", "flat", "update_ratio.fc1.low"]
    high, _, low = diag.advice
    assert (
        high.message.startswith("layer conv1:")
        and "far above" in high.message
        and "lower the learning rate" in high.message
    )
    assert (
        low.message.startswith("layer fc1:") and "far below" in low.message and "raise the learning rate" in low.message
    )


def test_update_ratio_stays_quiet_while_the_loss_falls_well():
    """The loss is the evidence: a far-off ratio in an epoch whose loss fell well is no reason to move
    the lr (the lr-sweep rates such an lr good; train must not say "lower the learning rate")."""
    diag = Diagnostics(DiagnosticsConfig(update_ratio=1e-3, update_ratio_factor=100, early_epochs=2))
    run_records(diag, [record(1, 1.2, conv1=0.11, fc1=1e-3), record(2, 0.6, conv1=0.2, fc1=1e-6)])
    assert rules(diag) == [] and diag.verdict() == "good"


def test_learned_little_lists_too_low_first_for_a_loss_that_fell_slowly_and_never_rose():
    """The lecture's "lr too low" picture: no rule spoke (the loss fell more than flat_drop), val
    accuracy stayed at chance; the causes follow the curve: too low first. A loss that rose: too high first."""
    slow = Diagnostics(DiagnosticsConfig())
    slow.on_fit_start({"epochs": 3, "history": SimpleNamespace(step_losses=[2.3]), "num_classes": 10})
    for e, loss in enumerate((2.25, 2.2, 2.15), start=1):
        r = record(e, loss, train_acc=0.1, val_acc=0.1)
        slow.on_epoch_metrics(r)
        slow.on_epoch_end(r)
    assert rules(slow) == ["poor"]
    msg = slow.advice[0].message
    assert msg.index("too low") < msg.index("too high")
    bumpy = Diagnostics(DiagnosticsConfig())
    bumpy.on_fit_start({"epochs": 3, "history": SimpleNamespace(step_losses=[2.3]), "num_classes": 10})
    for e, loss in enumerate((2.2, 2.25, 2.1), start=1):  # rose from epoch 1 to 2, never above the start
        r = record(e, loss, train_acc=0.1, val_acc=0.1)
        bumpy.on_epoch_metrics(r)
        bumpy.on_epoch_end(r)
    msg = bumpy.advice[-1].message
    assert bumpy.advice[-1].rule == "poor" and msg.index("too high") < msg.index("too low")


def test_disabled_diagnostics_say_nothing_and_never_stop():
    diag = Diagnostics(DiagnosticsConfig(enabled=False))
    assert run_records(diag, [record(1, math.nan, train_acc=1.0, val_acc=0.0, conv1=10.0)]) is None
    assert diag.advice == []


# --------------------------------------------------------------------------- engine stop mechanism


class VetoAt:
    """Declares epoch ``epoch`` diverged before the best-model decision (as Diagnostics does)."""

    def __init__(self, epoch):
        self.epoch = epoch

    def on_epoch_metrics(self, r):
        if r["epoch"] == self.epoch:
            raise StopTraining("diverged: test veto; lower the learning rate", diverged=True)


class StopAt:
    def __init__(self, epoch):
        self.epoch = epoch

    def on_epoch_end(self, r):
        if r["epoch"] == self.epoch:
            raise StopTraining("enough")


@pytest.fixture(scope="module")
def tiny_setup():
    cfg = load_config(None, ["model.channels=[4]", "model.hidden=[16]", "train.epochs=4", "device=cpu"])
    return setup(cfg)


def test_a_vetoed_epoch_never_becomes_best_and_the_best_is_tested(tmp_path, tiny_setup):
    s = tiny_setup
    run = RunDir.create(tmp_path, "veto", config_yaml="")
    model = s.new_model()
    h = fit(model, s.data, s.cfg.train, seed=0, device=s.device, callbacks=[VetoAt(2)], run=run)
    assert h.diverged and h.stopped == "diverged: test veto; lower the learning rate"
    assert len(h.records) == 2 and h.best_epoch == 1
    assert len(run.read_metrics()) == 2  # the run still got the stopping epoch's row
    best = load_checkpoint(run.path / "best.pt")
    assert best["epoch"] == 1 and load_checkpoint(run.path / "last.pt")["epoch"] == 2
    # the test accuracy is that of best.pt (epoch 1), evaluated independently
    fresh = s.new_model()
    fresh.load_state_dict(best["model"])
    assert evaluate(fresh, s.data.test, reg=s.cfg.train.reg) == pytest.approx((h.test_loss, h.test_acc))


def test_stop_from_an_earlier_callback_still_reaches_later_ones(tmp_path, tiny_setup):
    s = tiny_setup
    run = RunDir.create(tmp_path, "stop", config_yaml="")
    h = fit(s.new_model(), s.data, s.cfg.train, seed=0, device=s.device, callbacks=[StopAt(1)], run=run)
    assert h.stopped == "enough" and not h.diverged and len(h.records) == 1
    assert len(run.read_metrics()) == 1


# --------------------------------------------------------------------------- through the CLI


def invoke(args, tmp_path):
    return cli(*args, "--set", f"output.runs_dir={tmp_path / 'runs'}")


def test_diverging_train_run_exits_1_with_its_advice_once(tmp_path):
    res = invoke(["train", *TINY, "--set", "train.epochs=3", "--set", "train.optimizer.lr=1e6"], tmp_path)
    assert res.exit_code == 1, res.output
    assert res.output.count("advice (epoch 1): ") == 1
    assert "lower the learning rate" in res.output and "Traceback" not in res.output
    assert "error: diverged:" in res.stderr
    (run,) = (tmp_path / "runs").iterdir()
    summary = json.loads((run / "summary.json").read_text())
    assert summary["diverged"] is True and summary["epochs_run"] == 1
    assert not (run / "best.pt").exists()  # no epoch was good: nothing claims to be the best model


def test_too_low_lr_gets_the_too_low_advice_and_finishes(tmp_path):
    res = invoke(["train", *TINY, "--set", "train.epochs=3", "--set", "train.optimizer.lr=1e-7"], tmp_path)
    assert res.exit_code == 0, res.output
    assert "advice (epoch 3): train loss barely moved" in res.output
    assert "learning rate may be too low" in res.output
    # at lr 1e-7 every layer's update/weight ratio is far below 1e-3: one advice line names each layer once
    (line,) = [ln for ln in res.output.splitlines() if ln.startswith("advice (epoch 1): ") and "ratios" in ln]
    assert "3 layers (" in line and "far below" in line and "raise the learning rate" in line, line
    for layer in ("conv1", "fc1", "out"):
        assert line.count(f"{layer} ") == 1, line


def test_update_ratio_in_metrics_csv_matches_the_weights_it_describes(tmp_path):
    # batch larger than the train split: one SGD step per epoch, so init.pt → epoch-1 weights is
    # exactly the step the ratio measures: ‖W1 − W0‖ / ‖W1‖
    res = invoke(["train", *TINY, "--set", "train.epochs=1", "--set", "train.batch_size=4096"], tmp_path)
    assert res.exit_code == 0, res.output
    (run,) = (tmp_path / "runs").iterdir()
    row = RunDir(run).read_metrics()[0]
    w0 = load_checkpoint(run / "init.pt")["model"]
    w1 = load_checkpoint(run / "last.pt")["model"]
    for layer in ("conv1", "fc1", "out"):
        a, b = w0[f"{layer}.weight"], w1[f"{layer}.weight"]
        expected = float(torch.linalg.vector_norm(b - a) / torch.linalg.vector_norm(b))
        assert float(row[f"update_ratio.{layer}"]) == pytest.approx(expected, rel=1e-4)


def test_json_output_stays_parseable_with_advice_on_stderr(tmp_path):
    res = invoke(["train", *TINY, "--json", "--set", "train.epochs=2", "--set", "train.optimizer.lr=1e6"], tmp_path)
    assert res.exit_code == 1
    assert json.loads(res.stdout)["diverged"] is True  # stdout: the JSON summary only
    assert "advice (epoch 1): train loss is nan" in res.stderr


# --------------------------------------------------------------------------- issue 15: real short runs


def test_a_run_stuck_near_chance_gets_causes_and_commands_in_summary_and_panel(tmp_path):
    # lr 1e-6: the loss barely moves, val accuracy stays at chance; the run is never silent
    res = invoke(["train", *TINY, "--set", "train.epochs=2", "--set", "train.optimizer.lr=1e-6"], tmp_path)
    assert res.exit_code == 0, res.output
    (run,) = (tmp_path / "runs").iterdir()
    advice = json.loads((run / "summary.json").read_text())["advice"]
    poor = [a for a in advice if a["rule"] == "poor"]
    assert len(poor) == 1 and "near chance" in poor[0]["message"]
    msg = poor[0]["message"]
    assert msg.index("too low") < msg.index("too high") < msg.index("input scale") < msg.index("too big")
    assert "nntrain lr-sweep --lrs" in msg and "nntrain sanity" in msg
    assert f"advice         (epoch 2) {msg}" in res.output  # repeated in the final panel


def test_healthy_run_has_no_advice_and_one_epoch_never_says_flat(tmp_path):
    res = invoke(["train", *TINY, "--set", "train.epochs=1"], tmp_path)
    assert res.exit_code == 0 and "advice (epoch" not in res.output, res.output
    (run,) = (tmp_path / "runs").iterdir()
    assert json.loads((run / "summary.json").read_text())["advice"] == []


def test_huge_lr_diverges_in_epoch_1_against_the_initial_loss_and_never_says_too_low(tmp_path):
    res = invoke(["train", *TINY, "--set", "train.epochs=3", "--set", "train.optimizer.lr=1"], tmp_path)
    (run,) = (tmp_path / "runs").iterdir()
    summary = json.loads((run / "summary.json").read_text())
    rules_seen = [a["rule"] for a in summary["advice"]]
    assert "flat" not in rules_seen and not any(r.endswith(".low") for r in rules_seen)
    first = summary["advice"][0]
    assert first["rule"] in ("diverged", "above_init") and first["epoch"] == 1  # judged in epoch 1
    if summary["diverged"]:  # stopped in the epoch it happened, exit 1
        assert res.exit_code == 1 and summary["epochs_run"] == 1


def test_flat_never_fires_above_the_initial_loss_or_rising():
    above = Diagnostics()
    run_records(above, [record(1, 2.31), record(2, 2.31), record(3, 2.31)], first_step_loss=2.30)
    assert "flat" not in rules(above)
    rising = Diagnostics()
    run_records(rising, [record(1, 2.0), record(2, 2.1), record(3, 2.29)], first_step_loss=2.30)
    assert "flat" not in rules(rising)


def test_cv_fold_keeps_the_rules_advice(tmp_path):
    from nntrain.cv.folds import run_fold

    cfg = load_config(
        None, ["device=cpu", "model.channels=[4]", "model.hidden=[16]", "train.epochs=2", "train.optimizer.lr=1e-6"]
    )
    idx = list(range(0, 1797, 3))
    job = {"config": cfg.model_dump(mode="json"), "combo": 0, "fold": 0, "train_idx": idx[:400], "val_idx": idx[400:]}
    result = run_fold(job)
    assert "poor" in [a["rule"] for a in result["advice"]]


# --------------------------------------------------------------------------- overfitting on real runs

# 90 train samples, no reg, constant lr: train accuracy reaches 1.0, val stalls near 0.85
SMALL_TRAIN = [*TINY, "--set", "data.val_fraction=0.5", "--set", "data.test_fraction=0.44"]
SMALL_TRAIN += ["--set", "train.reg=0", "--set", "train.lr_schedule=none"]


def gaps(run_dir):
    """Per epoch: (train acc − best val acc so far, did val improve on its earlier best)."""
    out, best = [], -1.0
    for row in RunDir(run_dir).read_metrics():
        val = float(row["val_acc"])
        out.append((float(row["train_acc"]) - max(best, val), val > best))
        best = max(best, val)
    return out


def test_overfit_quiet_on_a_real_run_whose_val_still_rises(tmp_path):
    res = invoke(["train", *SMALL_TRAIN, "--set", "train.epochs=16"], tmp_path)
    assert res.exit_code == 0, res.output
    (run,) = (tmp_path / "runs").iterdir()
    g = gaps(run)
    # the last 3 epochs: train accuracy > 10 points above every val accuracy so far, val rising each epoch
    assert all(gap > 0.1 and improved for gap, improved in g[-3:]), g
    advice = json.loads((run / "summary.json").read_text())["advice"]
    assert "overfit" not in [a["rule"] for a in advice] and "overfitting" not in res.output


def test_overfit_fires_on_a_real_run_once_val_stops_improving(tmp_path):
    res = invoke(["train", *SMALL_TRAIN, "--set", "train.epochs=22"], tmp_path)
    assert res.exit_code == 0, res.output
    (run,) = (tmp_path / "runs").iterdir()
    g = gaps(run)
    (a,) = [a for a in json.loads((run / "summary.json").read_text())["advice"] if a["rule"] == "overfit"]
    e = a["epoch"]
    # fires at the first epoch where the gap held 2 epochs and val did not improve in them
    first = next(i + 1 for i in range(1, len(g)) if all(gap > 0.1 and not up for gap, up in g[i - 1 : i + 1]))
    assert e == first and "overfitting: raise reg or get more data" in a["message"]
    assert f"advice (epoch {e}): train accuracy" in res.output


# --------------------------------------------------------------------------- resume keeps the reference


class StopAfterSteps:
    """A should_stop that turns true after ``n`` polls (one poll per SGD step)."""

    def __init__(self, n: int):
        self.n = n

    def __call__(self) -> bool:
        self.n -= 1
        return self.n < 0


@pytest.mark.parametrize("stop_after", [3, 25])  # inside epoch 1, inside epoch 3 (13 steps per epoch)
def test_a_resumed_run_judges_against_the_initial_loss_measured_before_its_first_step(tiny_cfg, stop_after):
    from nntrain.pipeline.train import resume_run, train_run
    from nntrain.training.advice import initial_loss

    cfg = tiny_cfg("train.epochs=4", "train.batch_size=100")
    full = Diagnostics(cfg.diagnostics)
    train_run(cfg, callbacks=[full])
    part = Diagnostics(cfg.diagnostics)
    hist, run = train_run(cfg, callbacks=[part], should_stop=StopAfterSteps(stop_after))
    assert hist.interrupted and part.initial_loss == full.initial_loss
    assert load_checkpoint(run.path / "last.pt")["history"]["initial_loss"] == full.initial_loss
    # what re-measuring at the resume point would give: the partly trained net's lower loss
    s = setup(cfg)
    model = s.new_model()
    model.load_state_dict(load_checkpoint(run.path / "last.pt")["model"])
    assert initial_loss(model, s.data.train, batch_size=100, reg=cfg.train.reg) < full.initial_loss - 0.1
    resumed = Diagnostics(cfg.diagnostics)
    resume_run(run.path, callbacks=[resumed])
    assert resumed.initial_loss == full.initial_loss  # not re-measured on the trained net, not the fallback
    assert resumed.losses == full.losses and resumed.initial_lr == full.initial_lr
