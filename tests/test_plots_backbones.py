"""plot-filters and the report page on a resnet18 run started from a torchvision-format state dict (issue 30):
the backbone's first conv drawn as 64 RGB 7×7 tiles, the pretrained start beside the fine-tuned filters."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision
from helpers import cli
from test_plots import png_tiles

from nntrain.plots import filter_tiles, mosaic_rgb, tile_mosaic, tile_scale

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def r18_run(tmp_path_factory):
    """A 2-epoch resnet18 run at 32 px on 90 RGB images, its backbone from a saved state dict."""
    root = tmp_path_factory.mktemp("r18")
    torch.manual_seed(3)
    state = torchvision.models.resnet18().state_dict()
    torch.save(state, root / "resnet18.pth")
    rng = np.random.default_rng(0)
    y = np.arange(90) % 3
    x = (rng.normal(0, 30, (90, 32, 32, 3)) + 60 * y[:, None, None, None] + 40).clip(0, 255).astype(np.uint8)
    np.savez(root / "d.npz", x=x, y=y)
    res = cli(
        "train", "--set", "device=cpu", "--set", "threads=1", "--set", "data.dataset=npz",
        "--set", f"data.root={root / 'd.npz'}", "--set", "data.image_size=32", "--set", "model.name=resnet18",
        "--set", f"model.weights={root / 'resnet18.pth'}", "--set", "train.epochs=2", "--set", "train.batch_size=16",
        "--set", "train.optimizer.lr=0.01", "--set", f"output.runs_dir={root / 'runs'}",
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    (run,) = (root / "runs").glob("run-*")
    return run, state["conv1.weight"]


def test_plot_filters_draws_the_backbones_first_conv_as_64_rgb_tiles(r18_run, tmp_path):
    run, _ = r18_run
    out = tmp_path / "f.png"
    res = cli("plot-filters", run, "--out", out)
    assert res.exit_code == 0, res.output
    assert f"wrote {out}" in res.output
    k = tile_scale(np.zeros((1, 7, 7)))
    tiles = png_tiles(out, 7 * k, 7 * k)
    assert len(tiles) == 64  # resnet18's conv1: 64 filters of 3×7×7
    assert any(not ((t[..., 0] == t[..., 1]).all() and (t[..., 1] == t[..., 2]).all()) for t in tiles)  # colour


def test_compare_init_puts_the_pretrained_filters_beside_the_fine_tuned_ones(r18_run, tmp_path):
    run, pretrained = r18_run
    out = tmp_path / "vs.png"
    res = cli("plot-filters", run, "--compare-init", "--out", out)
    assert res.exit_code == 0, res.output
    k = tile_scale(np.zeros((1, 7, 7)))
    left, right = png_tiles(out, 7 * k, 7 * k, left_of=0.5), png_tiles(out, 7 * k, 7 * k, left_of=-0.5)
    assert len(left) == len(right) == 64
    # the left panel is the file's conv1, drawn as filter_tiles + mosaic draw it (first tile, pixel for pixel)
    expected = mosaic_rgb(tile_mosaic(filter_tiles(pretrained, (3, 32, 32))[:1], pad=0), k)
    assert np.array_equal(left[0], expected)
    assert any(not np.array_equal(a, b) for a, b in zip(left, right))  # fine-tuning moved the filters


def test_the_report_page_of_a_resnet18_run_shows_pretrained_and_fine_tuned_conv_filters(r18_run, tmp_path):
    run, _ = r18_run
    out = tmp_path / "report.html"
    res = cli("report", run, "--out", out)
    assert res.exit_code == 0, res.output
    html = out.read_text()
    assert "64 conv filters, at the start (model.weights: resnet18.pth)" in html
    assert "64 conv filters, trained (best model)" in html
    assert "hidden units" not in html
