"""Pictures are checked for content: filter tiles counted in the decoded PNG, one curve per
run with the run's own numbers, a diverged lr drawn (not a crash), the confusion matrix
agreeing with the run's test accuracy."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import cli
from matplotlib.figure import Figure
from matplotlib.image import imread
from scipy import ndimage

from nntrain.plots import BACKGROUND, curves_figure, filter_tiles, lr_sweep_figure, tile_mosaic, tile_scale

torch.set_num_threads(1)  # tiny models: threads only oversubscribe a shared 2-core machine

TINY = ["--set", "model.channels=[4]", "--set", "model.hidden=[16]", "--set", "train.epochs=2"]


def train(root: Path, name: str, *extra: str) -> Path:
    res = cli("train", *TINY, *extra, "--set", f"output.runs_dir={root}", "--set", f"output.run_name={name}")
    assert res.exit_code == 0, res.output
    (run,) = root.glob(f"{name}-*")
    return run


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    return {
        "cnn": train(root, "cnn"),
        "mlp": train(root, "mlp", "--set", "model.name=mlp", "--set", "train.optimizer.lr=0.01"),
    }


def png_rgb(path: Path) -> np.ndarray:
    img = imread(path)  # PNG → float RGBA in [0, 1]
    return np.round(img[..., :3] * 255).astype(np.uint8)


def png_tiles(path: Path, tile_h: int, tile_w: int, *, left_of: float | None = None) -> list[np.ndarray]:
    """The filter tiles drawn in a plot-filters PNG: connected regions of non-padding pixels
    exactly one enlarged tile in size (titles and the white margin are other sizes).
    ``left_of``: keep only tiles left (True side) of that fraction of the width, or right of it if negative."""
    img = png_rgb(path)
    labels, n = ndimage.label(~(img == BACKGROUND).all(axis=2))
    found = ndimage.find_objects(labels)
    tiles = []
    for i, sl in enumerate(found, start=1):
        if (labels[sl] == i).sum() != tile_h * tile_w or img[sl].shape[:2] != (tile_h, tile_w):
            continue
        x = sl[1].start / img.shape[1]
        if left_of is None or (left_of > 0 and x < left_of) or (left_of < 0 and x >= -left_of):
            tiles.append(img[sl])
    return tiles


# --------------------------------------------------------------------------- filter tiles


def test_conv_tiles_are_each_scaled_to_their_own_range():
    rng = np.random.default_rng(0)
    w = rng.normal(size=(5, 1, 3, 3)) * np.array([1, 10, 100, 0.01, 1])[:, None, None, None]
    w[4] = 7.0  # a constant filter
    tiles = filter_tiles(torch.tensor(w), (1, 8, 8))
    assert tiles.shape == (5, 3, 3)  # grayscale: one tile per filter
    for i in range(4):
        expected = (w[i, 0] - w[i].min()) / (w[i].max() - w[i].min())
        np.testing.assert_allclose(tiles[i], expected)
        assert tiles[i].min() == 0.0 and tiles[i].max() == 1.0
    assert (tiles[4] == 0.5).all()


def test_rgb_tiles_keep_channels_and_share_one_range_per_filter():
    w = np.random.default_rng(1).normal(size=(4, 3, 5, 5))
    tiles = filter_tiles(w, (3, 32, 32))
    assert tiles.shape == (4, 5, 5, 3)
    for i in range(4):
        lo, hi = w[i].min(), w[i].max()
        np.testing.assert_allclose(tiles[i], (w[i].transpose(1, 2, 0) - lo) / (hi - lo))


def test_mlp_units_become_input_shaped_images_and_other_channel_counts_sit_side_by_side():
    w = np.random.default_rng(2).normal(size=(7, 64))  # Linear(1·8·8 → 7)
    tiles = filter_tiles(w, (1, 8, 8))
    assert tiles.shape == (7, 8, 8)
    np.testing.assert_allclose(tiles[3], (w[3].reshape(8, 8) - w[3].min()) / np.ptp(w[3]))
    two = filter_tiles(np.random.default_rng(3).normal(size=(3, 2, 3, 3)), (2, 8, 8))
    assert two.shape == (3, 3, 6)


def test_mosaic_holds_exactly_one_block_per_tile():
    tiles = np.random.default_rng(4).random((10, 3, 3))
    grid = tile_mosaic(tiles)
    assert grid.shape == (3 * 4 + 1, 4 * 4 + 1)  # ceil(sqrt(10)) = 4 columns, 3 rows, 1-px padding
    labels, n = ndimage.label(~np.isnan(grid))
    assert n == 10 and all((labels == i).sum() == 9 for i in range(1, 11))


# --------------------------------------------------------------------------- plot-filters


def test_plot_filters_png_shows_one_tile_per_conv_filter(runs, tmp_path):
    out = tmp_path / "f.png"
    res = cli("plot-filters", runs["cnn"], "--out", out)
    assert res.exit_code == 0, res.output
    assert str(out) in res.output
    k = tile_scale(np.zeros((1, 3, 3)))
    tiles = png_tiles(out, 3 * k, 3 * k)
    assert len(tiles) == 4  # model.channels=[4]: conv1 has 4 filters
    for t in tiles:  # each tile stretched to its own range: black and white in every tile, grays only
        assert t.min() == 0 and t.max() == 255
        assert (t[..., 0] == t[..., 1]).all() and (t[..., 1] == t[..., 2]).all()


def test_plot_filters_compare_init_puts_initial_filters_beside_trained(runs, tmp_path):
    out = tmp_path / "filters-vs-init.png"
    res = cli("plot-filters", runs["cnn"], "--compare-init", "--out", out)
    assert res.exit_code == 0, res.output
    assert out.is_file() and str(out) in res.output
    k = tile_scale(np.zeros((1, 3, 3)))
    assert len(png_tiles(out, 3 * k, 3 * k)) == 8
    init, trained = png_tiles(out, 3 * k, 3 * k, left_of=0.5), png_tiles(out, 3 * k, 3 * k, left_of=-0.5)
    assert len(init) == len(trained) == 4  # left panel: at initialization; right: trained
    assert any(not np.array_equal(a, b) for a, b in zip(init, trained))  # training moved the filters


def test_plot_filters_of_an_mlp_draws_each_hidden_unit_as_an_input_image(runs, tmp_path):
    out = tmp_path / "mlp.png"
    res = cli("plot-filters", runs["mlp"] / "best.pt", "--out", out)
    assert res.exit_code == 0, res.output
    k = tile_scale(np.zeros((1, 8, 8)))
    assert len(png_tiles(out, 8 * k, 8 * k)) == 16  # model.hidden=[16], each unit an 8x8 digit image


@pytest.mark.parametrize(
    "make_target,needle",
    [
        (lambda tmp, runs: tmp / "nope", "does not exist"),
        (lambda tmp, runs: tmp, "holds no best.pt or last.pt"),
    ],
)
def test_plot_filters_bad_source_exits_2(tmp_path, runs, make_target, needle):
    res = cli("plot-filters", make_target(tmp_path, runs), "--out", tmp_path / "f.png")
    assert res.exit_code == 2 and needle in res.output and "Traceback" not in res.output


def test_compare_init_without_init_weights_exits_2(runs, tmp_path):
    lone = tmp_path / "best.pt"
    lone.write_bytes((runs["cnn"] / "best.pt").read_bytes())
    res = cli("plot-filters", lone, "--compare-init", "--out", tmp_path / "f.png")
    assert res.exit_code == 2 and "no init.pt" in res.output


# --------------------------------------------------------------------------- learning curves


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_every_train_run_writes_curves_with_its_own_numbers(runs):
    run = runs["cnn"]
    img = png_rgb(run / "curves.png")
    assert img.shape[:2] == (470, 1500) and len(np.unique(img.reshape(-1, 3), axis=0)) > 20
    steps = read_csv(run / "steps.csv")
    summary = json.loads((run / "summary.json").read_text())
    steps_per_epoch = -(-summary["split_sizes"]["train"] // 64)  # ceil(n_train / batch_size)
    assert len(steps) == 2 * steps_per_epoch
    assert [int(r["epoch"]) for r in steps] == [1] * steps_per_epoch + [2] * steps_per_epoch


def test_plot_curves_draws_one_line_per_run_on_shared_axes(runs, tmp_path):
    from nntrain.pipeline.reopen import read_curves

    curves = [read_curves(runs["cnn"]), read_curves(runs["mlp"])]
    fig = curves_figure(curves)
    assert isinstance(fig, Figure)
    ax_loss, ax_acc, ax_lr = fig.axes[:3]

    def lines(ax, gid):
        return [line for line in ax.get_lines() if line.get_gid() == gid]

    for ax, gid, column in [
        (ax_loss, "train-loss", "train_loss"),
        (ax_acc, "val-acc", "val_acc"),
        (ax_acc, "train-acc", "train_acc"),
        (ax_lr, "lr", "lr"),
    ]:
        drawn = lines(ax, gid)
        assert len(drawn) == 2  # one per run
        for line, run in zip(drawn, (runs["cnn"], runs["mlp"])):
            assert run.name in line.get_label()
            expected = [float(r[column]) for r in read_csv(run / "metrics.csv")]
            np.testing.assert_allclose(line.get_ydata(), expected)
    step_lines = lines(ax_loss, "step-loss")
    assert [len(line.get_xdata()) for line in step_lines] == [len(read_csv(r / "steps.csv")) for r in runs.values()]
    out = tmp_path / "both.png"
    res = cli("plot-curves", runs["cnn"], runs["mlp"], "--out", out)
    assert res.exit_code == 0 and "2 run(s)" in res.output
    assert png_rgb(out).shape[:2] == (470, 1500)


def test_plot_curves_rejects_a_directory_that_is_not_a_run(tmp_path):
    res = cli("plot-curves", tmp_path, "--out", tmp_path / "x.png")
    assert res.exit_code == 2 and "has no metrics.csv" in res.output
    assert not (tmp_path / "x.png").exists()


# --------------------------------------------------------------------------- learning-rate sweep


def test_lr_sweep_shows_a_diverged_lr_as_a_curve_and_a_row(tmp_path):
    from nntrain.config import load_config
    from nntrain.pipeline.lrsweep import lr_sweep, recommendation
    from nntrain.pipeline.setup import setup

    s = setup(load_config(None, ["model.channels=[4]", "model.hidden=[16]", "device=cpu"]))
    result = lr_sweep(s, [0.05, 1e6], epochs=2)
    ok, bad = result
    assert not ok.diverged and ok.verdict == "best"
    assert bad.diverged and bad.verdict == "too high: diverged" and len(bad.curves.records) == 1
    assert "recommended train.optimizer.lr: 0.05" in recommendation(result)
    fig = lr_sweep_figure([(r.lr, r.curves, r.diverged) for r in result])
    loss_lines = [line for line in fig.axes[0].get_lines() if line.get_gid() == "lr-loss"]
    assert [line.get_label() for line in loss_lines] == ["lr=0.05", "lr=1e+06 (diverged)"]
    np.testing.assert_allclose(loss_lines[0].get_ydata(), ok.curves.step_losses, rtol=1e-6)
    assert len([line for line in fig.axes[0].get_lines() if line.get_gid() == "diverged-mark"]) == 1


def test_lr_sweep_cli_prints_table_and_recommendation(tmp_path):
    res = cli(
        "lr-sweep",
        *TINY,
        "--set",
        f"output.runs_dir={tmp_path}",
        "--lrs",
        "0.05,1e6",
        "--epochs",
        "1",
        "--out",
        tmp_path / "sweep.png",
    )
    assert res.exit_code == 0, res.output
    rows = {line.split()[0]: line for line in res.output.splitlines() if line.strip()}
    assert "diverged" in rows["1e+06"] and "best" in rows["0.05"]
    assert "recommended train.optimizer.lr: 0.05" in res.output and "also try smaller ones" in res.output
    assert png_rgb(tmp_path / "sweep.png").shape[:2] == (460, 1200)
    (run,) = tmp_path.glob("run-lr-sweep-*")
    saved = json.loads((run / "lr-sweep.json").read_text())
    assert [r["diverged"] for r in saved["runs"]] == [False, True]


def test_lr_sweep_where_every_lr_diverges_exits_1(tmp_path):
    res = cli("lr-sweep", *TINY, "--set", f"output.runs_dir={tmp_path}", "--lrs", "1e6", "--epochs", "1")
    assert res.exit_code == 1 and "every learning rate diverged" in res.output


@pytest.mark.parametrize("lrs", ["abc", "0.1,-1", ""])
def test_lr_sweep_bad_lrs_exit_2(lrs, tmp_path):
    res = cli("lr-sweep", "--lrs", lrs, "--set", f"output.runs_dir={tmp_path}")
    assert res.exit_code == 2 and "--lrs" in res.output and not any(tmp_path.iterdir())


# --------------------------------------------------------------------------- confusion and eval


def test_confusion_and_per_class_accuracy_agree_with_the_test_accuracy(runs):
    run = runs["cnn"]
    summary = json.loads((run / "summary.json").read_text())
    per_class = summary["per_class_test"]
    assert [r["class"] for r in per_class] == summary["classes"]
    assert sum(r["n"] for r in per_class) == summary["split_sizes"]["test"]
    assert sum(r["correct"] for r in per_class) / summary["split_sizes"]["test"] == pytest.approx(summary["test_acc"])
    assert png_rgb(run / "confusion.png").shape[0] > 300

    res = cli("eval", run, "--json")
    assert res.exit_code == 0, res.output
    ev = json.loads(res.stdout)
    assert ev["accuracy"] == pytest.approx(summary["test_acc"]) and ev["per_class"] == per_class
    cm = np.array(ev["confusion"])
    assert cm.sum() == summary["split_sizes"]["test"] and (cm.sum(axis=1) == [r["n"] for r in per_class]).all()

    res = cli("eval", run, "--split", "val", "--out", run.parent / "confusion-val.png")
    assert res.exit_code == 0 and (run.parent / "confusion-val.png").is_file()
    assert f"val accuracy {summary['best_val_acc']:.4f}" in res.output  # best.pt's val accuracy, recomputed


def test_eval_bad_input_exits_2(runs, tmp_path):
    res = cli("eval", runs["cnn"], "--split", "train")
    assert res.exit_code == 2 and "allowed: test, val" in res.output
    res = cli("eval", tmp_path)
    assert res.exit_code == 2 and "not a run directory" in res.output


# --------------------------------------------------------------------------- TensorBoard


def test_tensorboard_logs_the_metrics_and_the_filter_grid(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = train(tmp_path, "tb", "--set", "output.tensorboard=true")
    acc = EventAccumulator(str(run / "tensorboard"), size_guidance={"images": 0})
    acc.Reload()
    metrics = read_csv(run / "metrics.csv")
    for tag, column in [
        ("loss/train", "train_loss"),
        ("accuracy/val", "val_acc"),
        ("update_ratio/conv1", "update_ratio.conv1"),
    ]:
        events = acc.Scalars(tag)
        assert [e.step for e in events] == [1, 2]
        np.testing.assert_allclose([e.value for e in events], [float(r[column]) for r in metrics], rtol=1e-6)
    images = acc.Images("filters/first_layer")
    assert len(images) == 2 and images[0].width > 0


def test_tensorboard_missing_is_a_clear_config_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # import tensorboard → ImportError
    res = cli("train", *TINY, "--set", f"output.runs_dir={tmp_path}", "--set", "output.tensorboard=true")
    assert res.exit_code == 2
    assert "output.tensorboard: true, but the 'tensorboard' package is not installed" in res.output
    assert "pip install" in res.output and not any(tmp_path.iterdir())


# --------------------------------------------------------------------------- readable pictures (issue 13)


def _labels(ax, axis: str) -> list[str]:
    """The tick labels matplotlib draws inside the view (rendered first, so formatters have run)."""
    ax.figure.canvas.draw() if ax.figure.canvas is not None else None
    get = ax.get_yticklabels if axis == "y" else ax.get_xticklabels
    lo, hi = sorted(ax.get_ylim() if axis == "y" else ax.get_xlim())
    return [t.get_text() for t in get() if t.get_text() and lo <= (t.get_position()[1 if axis == "y" else 0]) <= hi]


def _curves(lrs, losses, test_acc=0.9321):
    from nntrain.plots import Curves

    records = [
        {"epoch": e, "train_loss": lo, "val_loss": lo * 1.1, "train_acc": 0.5, "val_acc": 0.5, "lr": lr}
        for e, (lr, lo) in enumerate(zip(lrs, losses), start=1)
    ]
    return Curves("run-a", records, [], test_acc=test_acc)


def test_curves_label_narrow_lr_and_loss_ranges_use_integer_epochs_and_carry_a_title():
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    n = 10
    lrs = [0.05 * (0.97**e) for e in range(n)]  # less than a decade
    losses = [1.6 - 0.14 * e for e in range(n)]  # 1.6 → 0.34: not two powers of ten
    fig = curves_figure([_curves(lrs, losses)])
    FigureCanvasAgg(fig)
    ax_loss, ax_acc, ax_lr = fig.axes
    assert len(_labels(ax_lr, "y")) >= 2, _labels(ax_lr, "y")
    assert len(_labels(ax_loss, "y")) >= 2, _labels(ax_loss, "y")
    for ax in (ax_loss, ax_acc, ax_lr):
        xs = _labels(ax, "x")
        assert xs and all(float(x.replace("−", "-")).is_integer() for x in xs), xs
    assert fig._suptitle.get_text() == "run-a: test accuracy 0.9321"


def test_curves_keep_a_log_scale_with_decade_labels_for_a_wide_range():
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    fig = curves_figure([_curves([0.1 * 0.5**e for e in range(12)], [2.3 * 0.5**e for e in range(12)], None)])
    FigureCanvasAgg(fig)
    ax_loss, _, ax_lr = fig.axes
    assert ax_lr.get_yscale() == "log" and ax_loss.get_yscale() == "log"
    assert len(_labels(ax_lr, "y")) >= 2 and len(_labels(ax_loss, "y")) >= 2
    assert fig._suptitle.get_text() == "run-a: not tested"


def test_a_runs_curves_png_is_titled_with_its_name_and_test_accuracy(runs):
    from nntrain.pipeline.reopen import read_curves

    run = runs["cnn"]
    summary = json.loads((run / "summary.json").read_text())
    c = read_curves(run)
    assert c.label == run.name and c.test_acc == summary["test_acc"]
    assert curves_figure([c])._suptitle.get_text() == f"{run.name}: test accuracy {summary['test_acc']:.4f}"


def test_plot_filters_has_a_neutral_background_the_layer_and_the_scaling_note(runs, tmp_path):
    from nntrain.plots import filters_figure

    tiles = filter_tiles(torch.randn(4, 1, 3, 3), (1, 8, 8))
    fig = filters_figure([("4 conv filters", tiles)], layer="layer features.0, weight (4, 1, 3, 3)")
    texts = [t.get_text() for t in fig.texts]
    assert (
        "layer features.0, weight (4, 1, 3, 3) · each tile is scaled separately: its own min = black, max = white"
        in (texts)
    )
    assert (max(BACKGROUND) - min(BACKGROUND)) / max(BACKGROUND) < 0.1  # barely tinted: not saturated
    out = tmp_path / "f.png"
    res = cli("plot-filters", runs["cnn"], "--out", out)
    assert res.exit_code == 0, res.output
    img = png_rgb(out)
    gap = (img == BACKGROUND).all(axis=2)
    assert gap.sum() > 100  # the padding between tiles is drawn in the neutral background
    hsv_sat = (img.max(axis=2).astype(int) - img.min(axis=2)) / np.maximum(img.max(axis=2), 1)
    assert hsv_sat.max() < 0.1  # a grayscale model: nothing saturated anywhere in the picture


def test_lr_sweep_classifies_the_four_curves_of_the_lecture():
    # synthetic curves, judged by train's own rules (Diagnostics) then by shape against the best
    from nntrain.pipeline.lrsweep import SweepRun, recommend
    from nntrain.plots import Curves
    from nntrain.training.advice import Diagnostics

    def sweep_run(lr, losses, acc):
        diag = Diagnostics()
        diag.on_fit_start({"epochs": len(losses), "initial_loss": 2.3})
        diverged = False
        for e, loss in enumerate(losses, start=1):
            r = {"epoch": e, "train_loss": loss, "train_acc": acc, "val_acc": acc, "val_loss": loss, "lr": lr}
            try:
                diag.on_epoch_metrics(r)
            except Exception:
                diverged = True
            diag.on_epoch_end(r)
            if diverged:
                break
        recs = [{"train_loss": x, "val_acc": acc} for x in losses[:e]]
        return SweepRun(
            lr,
            Curves(str(lr), recs, []),
            diverged,
            None,
            [a.rule for a in diag.advice],
            rule_verdict=diag.verdict(diverged=diverged),
            initial_loss=2.3,
        )

    runs = [
        sweep_run(1e-4, [2.299, 2.298, 2.297], 0.12),  # low: barely moved
        sweep_run(1e-2, [1.0, 0.4, 0.2], 0.95),  # good
        sweep_run(1e-1, [1.9, 1.9, 1.9], 0.4),  # high: fast drop, then a plateau far above the best
        sweep_run(10.0, [90.0], 0.1),  # very high: diverged in epoch 1
    ]
    recommend(runs)
    verdicts = [r.verdict.split(":")[0] for r in runs]
    assert verdicts == ["too low", "best", "too high", "too high"]
    assert runs[3].rule_verdict == "diverged" and runs[3].verdict == "too high: diverged"


def test_lr_sweep_classifies_the_four_cases_on_real_short_runs_as_train_does(tmp_path):
    # digits, 3 epochs: lr 10 explodes in epoch 1, lr 1 ends epochs above the initial loss,
    # lr 1e-5 barely moves the loss, lr 0.05 trains (the lecture's four curves, real this time)
    res = cli("lr-sweep", *TINY, "--set", f"output.runs_dir={tmp_path}", "--lrs", "10,1,1e-5,0.05", "--epochs", "3")
    assert res.exit_code == 0, res.output
    (run,) = tmp_path.glob("run-lr-sweep-*")
    rows = {r["lr"]: r for r in json.loads((run / "lr-sweep.json").read_text())["runs"]}
    assert rows[10]["verdict"] == "too high: diverged" and rows[10]["diverged"] and rows[10]["epochs_run"] == 1
    assert rows[1]["verdict"] == "too high: loss went above its initial value"
    assert rows[1e-5]["verdict"] == "too low: loss barely moved"
    assert rows[0.05]["verdict"] == "best" and rows[0.05]["val_acc"] > 0.8
    assert "recommended train.optimizer.lr: 0.05" in res.output
    # one implementation: `train` at the same lr and epochs gives the same advice the sweep judged by
    for lr in (1, 1e-5):
        out = tmp_path / f"train-{lr:g}"
        t = cli("train", *TINY, "--set", f"output.runs_dir={out}", "--set", f"train.optimizer.lr={lr}",
                "--set", "train.epochs=3")  # fmt: skip
        assert t.exit_code == 0, t.output
        (train_run,) = out.iterdir()
        advice = json.loads((train_run / "summary.json").read_text())["advice"]
        assert [a["rule"] for a in advice] == rows[lr]["advice"]


def test_lr_sweep_never_rates_best_an_lr_the_rules_called_too_high_while_a_good_one_exists():
    """One verdict in every verb: train's advice (here "updates too large") is never overruled by "best"."""
    from nntrain.pipeline.lrsweep import SweepRun, recommend
    from nntrain.plots import Curves

    def run(lr, acc, rule_verdict, advice):
        recs = [{"train_loss": 1.0, "val_acc": acc}, {"train_loss": 0.5, "val_acc": acc}]
        return SweepRun(lr, Curves(str(lr), recs, []), False, None, advice, rule_verdict=rule_verdict, initial_loss=2.3)

    runs = [run(0.5, 0.97, "too high", ["update_ratio.out.high"]), run(0.05, 0.95, "good", [])]
    best = recommend(runs)
    assert best is runs[1] and runs[0].verdict == "too high: updates too large"


def test_lr_sweep_figure_shows_each_verdict_integer_epochs_and_every_diverged_mark(tmp_path):
    """Issue 32: two runs that diverge at the same step drew one 'x' on the other, a 3-epoch sweep got
    ticks like 1.25, and the verdicts printed in the terminal were nowhere on the figure."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from nntrain.config import load_config
    from nntrain.pipeline.lrsweep import lr_sweep
    from nntrain.pipeline.setup import setup

    s = setup(load_config(None, ["model.channels=[4]", "model.hidden=[16]", "device=cpu"]))
    result = lr_sweep(s, [0.05, 1e5, 1e6], epochs=3)
    assert [r.diverged for r in result] == [False, True, True]
    fig = lr_sweep_figure([(r.lr, r.curves, r.diverged) for r in result], [r.verdict for r in result])
    FigureCanvasAgg(fig).draw()  # tick labels exist once drawn
    ax_loss, ax_acc = fig.axes
    legend = [t.get_text() for t in ax_loss.get_legend().get_texts()]
    assert legend == ["lr=0.05: best", "lr=100000: too high: diverged", "lr=1e+06: too high: diverged"]
    assert [t.get_text() for t in ax_acc.get_legend().get_texts()] == legend
    for ax in (ax_loss, ax_acc):
        shown = [t.get_text().replace("\u2212", "-") for t in ax.get_xticklabels() if t.get_text()]
        assert shown and all(t.lstrip("-").isdigit() for t in shown), shown
    marks = [line for line in ax_loss.get_lines() if line.get_gid() == "diverged-mark"]
    spots = {(float(m.get_xdata()[0]), float(m.get_ydata()[0])) for m in marks}
    assert len(marks) == 2 and len(spots) == 2
    assert len({x for x, _ in spots}) == 1  # both diverged at the same step: only the offset keeps them apart
    labels = [t.get_text() for t in ax_loss.texts if t.get_gid() == "diverged-label"]
    assert labels == ["lr=100000 diverged", "lr=1e+06 diverged"]
