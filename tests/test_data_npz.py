"""npz: x (N×H×W, N×H×W×C, N×C×H×W; uint8 or float), y, optional classes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import cli

from nntrain.config import load_config
from nntrain.data.registry import load_dataset

rng = np.random.default_rng(0)
NCHW = rng.integers(0, 256, (20, 3, 6, 5), dtype=np.uint8)
Y = np.arange(20) % 4


def save(tmp_path, **arrays):
    p = tmp_path / "d.npz"
    np.savez(p, **arrays)
    return p


def load(path, *more):
    return load_dataset(load_config(None, ["data.dataset=npz", f"data.root={path}", *more]).data)


@pytest.mark.parametrize("layout", ["nchw", "nhwc"])
def test_channel_layouts_give_the_same_nchw_tensor(tmp_path, layout):
    x = NCHW if layout == "nchw" else NCHW.transpose(0, 2, 3, 1)
    ds = load(save(tmp_path, x=x, y=Y))
    assert ds.x.dtype == torch.uint8 and torch.equal(ds.x, torch.from_numpy(NCHW))
    assert ds.y.tolist() == Y.tolist() and ds.classes == ("0", "1", "2", "3")


def test_gray_float_images_and_class_names(tmp_path):
    x = rng.random((12, 7, 7)).astype(np.float64)
    ds = load(save(tmp_path, x=x, y=np.arange(12) % 3, classes=np.array(["cat", "dog", "emu"])))
    assert ds.x.dtype == torch.float32 and tuple(ds.x.shape) == (12, 1, 7, 7)
    assert torch.allclose(ds.x[:, 0], torch.from_numpy(x).float())
    assert ds.classes == ("cat", "dog", "emu")
    rgb = load(tmp_path / "d.npz", "data.channels=3", "data.image_size=14")
    assert tuple(rgb.x.shape) == (12, 3, 14, 14) and torch.equal(rgb.x[:, 0], rgb.x[:, 2])


BAD = {
    "missing y": (dict(x=NCHW), "lacks the array(s) y (it has: x)"),
    "wrong rank": (dict(x=NCHW.reshape(20, -1), y=Y), "x has 2 dimensions (20, 90)"),
    "no channel axis": (dict(x=rng.integers(0, 9, (20, 5, 6, 7), dtype=np.uint8), y=Y), "no axis of size 1 or 3"),
    "N mismatch": (dict(x=NCHW, y=Y[:19]), "x has 20 images but y has 19 labels"),
    "label out of range": (
        dict(x=NCHW, y=np.where(Y == 3, 7, Y), classes=np.array(list("abcd"))),
        "label 7 in y is out of range; allowed: 0..3",
    ),
    "negative label": (dict(x=NCHW, y=Y - 1), "label -1 in y is out of range"),
    "float labels": (dict(x=NCHW, y=Y.astype(float)), "y must be a 1-D array of integer labels"),
    "int32 pixels": (dict(x=NCHW.astype(np.int32), y=Y), "x has dtype int32; expected uint8"),
    "nan pixels": (dict(x=np.full((20, 4, 4), np.nan), y=Y), "NaN or infinite"),
    "one class": (dict(x=NCHW, y=np.zeros(20, dtype=int)), "only 1 class"),
    "python objects": (dict(x=NCHW, y=Y, classes=np.array([{"a": 1}], dtype=object)), "holds Python objects"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_npz_exits_2_with_one_clear_message(tmp_path, case):
    arrays, message = BAD[case]
    path = save(tmp_path, **arrays)
    res = cli("data", "--set", "data.dataset=npz", "--set", f"data.root={path}", "--grid", str(tmp_path / "g.png"))
    assert res.exit_code == 2 and isinstance(res.exception, SystemExit), res.output
    assert res.output.startswith("error: ") and res.output.count("\n") == 1, res.output
    assert message in res.output and str(path) in res.output
    assert not (tmp_path / "g.png").exists()


def test_missing_or_non_npz_file(tmp_path):
    for root, message in ((tmp_path / "none.npz", "does not exist"), (tmp_path, "is a folder")):
        res = cli("data", "--set", "data.dataset=npz", "--set", f"data.root={root}")
        assert res.exit_code == 2 and message in res.output and "np.savez" in res.output
    (tmp_path / "t.npz").write_text("hello")
    res = cli("data", "--set", "data.dataset=npz", "--set", f"data.root={tmp_path / 't.npz'}")
    assert res.exit_code == 2 and "is not a readable .npz file" in res.output
