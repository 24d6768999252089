"""`nntrain data`: class counts, shape, normalized range, duplicates across splits, the grid."""

from __future__ import annotations

import json

import numpy as np
import torch
from helpers import cli

from nntrain.config import DATASETS, load_config
from nntrain.data.registry import LOADERS, load_dataset
from nntrain.data.splits import make_splits


def dup_npz(tmp_path):
    """200 distinct random images + copies of images 0..19 as 200..219."""
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (200, 6, 6), dtype=np.uint8)
    y = np.arange(200) % 4
    x, y = np.concatenate([x, x[:20]]), np.concatenate([y, y[:20]])
    p = tmp_path / "d.npz"
    np.savez(p, x=x, y=y, classes=np.array(["w", "x", "y", "z"]))
    return p, x, y


def test_report_counts_range_and_duplicates_against_an_independent_oracle(tmp_path):
    p, x, y = dup_npz(tmp_path)
    args = ["--set", "data.dataset=npz", "--set", f"data.root={p}"]
    res = cli("data", *args, "--grid", str(tmp_path / "g.png"), "--json")
    assert res.exit_code == 0, res.output
    r = json.loads(res.stdout)
    cfg = load_config(None, [a for a in args if a != "--set"])
    sp = make_splits(load_dataset(cfg.data), cfg)
    assert r["image_shape"] == [1, 6, 6] and r["sizes"] == sp.sizes()
    for name in ("train", "val", "test"):
        want = np.bincount(y[getattr(sp, name)], minlength=4).tolist()
        assert [r["class_counts"][name][c] for c in "wxyz"] == want
    # oracle: pairwise pixel equality, no hashing
    flat = x.reshape(len(x), -1)
    for a, b in (("train", "val"), ("train", "test"), ("val", "test")):
        ia, ib = getattr(sp, a), getattr(sp, b)
        eq = (flat[ib][:, None, :] == flat[ia][None, :, :]).all(-1).any(1)
        assert r["duplicates"][f"{a}/{b}"]["count"] == int(eq.sum())
        for i, j in r["duplicates"][f"{a}/{b}"]["examples"]:
            assert i in ia and j in ib and (flat[i] == flat[j]).all()
    assert sum(d["count"] for d in r["duplicates"].values()) > 0  # 20 copies: some cross a split
    tr = x[sp.train].astype(np.float64)
    mean, std = tr.mean(), tr.std(ddof=1)
    v = r["value_range"]["train"]
    assert abs(v["mean"]) < 1e-5 and abs(v["std"] - 1) < 1e-2
    assert abs(v["min"] - (tr.min() - mean) / std) < 1e-4 and abs(v["max"] - (tr.max() - mean) / std) < 1e-4
    from PIL import Image

    with Image.open(tmp_path / "g.png") as im:
        assert im.format == "PNG" and im.size[0] > 400


def test_plain_report_warns_about_duplicates_and_train_test_only(tmp_path):
    p, _, _ = dup_npz(tmp_path)
    res = cli(
        "data",
        "--set",
        "data.dataset=npz",
        "--set",
        f"data.root={p}",
        "--set",
        "data.val_fraction=0",
        "--grid",
        str(tmp_path / "g.png"),
    )
    assert res.exit_code == 0, res.output
    assert "class counts per split:" in res.stdout and "image shape  1x6x6" in res.stdout
    assert "train 187  val 0  test 33" in res.stdout  # test_fraction 0.15 of 220
    assert "warning: data.val_fraction is 0: train/test only (the lecture's last resort)" in res.stderr
    assert "have an exact copy in an earlier split" in res.stderr


def test_grid_shows_exactly_the_normalized_augmented_batch(tmp_path):
    from nntrain.data.augment import make_augment
    from nntrain.data.report import network_view
    from nntrain.pipeline.setup import setup

    cfg = load_config(None, ["device=cpu", "data.augment.crop_padding=2", "data.augment.hflip=true", "seed=3"])
    s = setup(cfg)
    x, y = network_view(s, 9)
    g = torch.Generator().manual_seed(3)
    idx = torch.randperm(len(s.data.train), generator=g)[:9]
    raw = s.dataset.x[torch.as_tensor(s.data.splits.train)[idx]]
    want = make_augment(cfg.data.augment)((raw - s.data.mean.view(1, -1, 1, 1)) / s.data.std.view(1, -1, 1, 1), g)
    assert torch.allclose(x, want, atol=1e-5) and torch.equal(y, s.dataset.y[torch.as_tensor(s.data.splits.train)[idx]])


def test_bad_grid_path_exits_2(tmp_path):
    res = cli("data", "--grid", str(tmp_path / "missing" / "g.png"))
    assert res.exit_code == 2 and "--grid" in res.output and "existing folder" in res.output


def test_every_allowed_dataset_has_a_loader():
    assert set(DATASETS) == set(LOADERS)


def test_one_list_of_dataset_names():
    """config.DATASETS / TORCHVISION_SETS are the only lists: the loaders, the torchvision table and
    the Ray executor's data-root rule all follow them."""
    from nntrain.config import TORCHVISION_SETS
    from nntrain.cv import ray_cluster
    from nntrain.data.formats.torchvision_sets import SETS

    assert set(TORCHVISION_SETS) <= set(DATASETS) and set(SETS) == set(TORCHVISION_SETS)
    assert [n for n in DATASETS if LOADERS[n] is LOADERS["mnist"]] == list(TORCHVISION_SETS)
    assert ray_cluster.TORCHVISION_SETS is TORCHVISION_SETS and not hasattr(ray_cluster, "_TORCHVISION_SETS")


def test_data_config_errors_name_the_dotted_key(tmp_path):
    for setting, message in (
        ("data.channels=2", "data.channels: "),
        ("data.augment.crop_pading=2", "data.augment.crop_pading: unknown key; did you mean 'crop_padding'?"),
        ("data.dataset=imagenet", "unknown dataset 'imagenet'; allowed: digits, imagefolder, npz, mnist"),
        ("data.image_size=0", "data.image_size: "),
        ("data.memory_limit_mb=-1", "data.memory_limit_mb: "),
    ):
        res = cli("data", "--set", setting, "--grid", str(tmp_path / "g.png"))
        assert res.exit_code == 2 and message in res.output, (setting, res.output)
        assert not (tmp_path / "g.png").exists()


def test_imagefolder_duplicates_are_reported_by_file_name(tmp_path):
    import shutil

    from helpers import write_imagefolder

    written = sorted(write_imagefolder(tmp_path / "d", {"a": 15, "b": 15}, size=(6, 6)))
    for k in range(8):  # 8 byte-identical copies of a/000.png in class b
        shutil.copy(written[0], tmp_path / "d" / "b" / f"copy{k}.png")
    res = cli(
        "data",
        "--set",
        "data.dataset=imagefolder",
        "--set",
        f"data.root={tmp_path / 'd'}",
        "--grid",
        str(tmp_path / "g.png"),
        "--json",
    )
    assert res.exit_code == 0, res.output
    dups = json.loads(res.stdout)["duplicates"]
    assert sum(d["count"] for d in dups.values()) >= 1  # 9 identical files over 3 splits must cross one
    for d in dups.values():
        assert len(d["files"]) == min(d["count"], 5)
        for f1, f2 in d["files"]:
            assert open(f1, "rb").read() == open(f2, "rb").read() == written[0].read_bytes()
