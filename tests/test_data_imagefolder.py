"""imagefolder: root/<class>/<image> in PNG/JPEG, loaded through load_dataset as users run it."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from helpers import cli, write_imagefolder

from nntrain.config import load_config
from nntrain.data.registry import load_dataset


def cfg_for(root, *more):
    return load_config(None, ["data.dataset=imagefolder", f"data.root={root}", *more]).data


def test_png_pixels_classes_and_labels_are_exact(tmp_path):
    written = write_imagefolder(tmp_path / "d", {"cat": 3, "dog": 4, "emu": 2})
    ds = load_dataset(cfg_for(tmp_path / "d"))
    assert ds.classes == ("cat", "dog", "emu")
    assert ds.x.dtype == torch.uint8 and tuple(ds.x.shape) == (9, 3, 10, 12)
    assert ds.y.tolist() == [0, 0, 0, 1, 1, 1, 1, 2, 2]
    for i, (path, a) in enumerate(sorted(written.items())):  # sorted by class folder, then file name
        assert torch.equal(ds.x[i], torch.from_numpy(a).permute(2, 0, 1)), path


def test_jpeg_is_decoded_close_to_what_was_written(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(1)
    smooth = {}
    for cls in ("a", "b"):
        (tmp_path / "d" / cls).mkdir(parents=True)
        for i in range(2):
            base = rng.integers(0, 256, (1, 1, 3))
            a = np.broadcast_to(base, (16, 16, 3)).astype(np.uint8)  # flat colour: JPEG keeps it almost exactly
            Image.fromarray(a).save(tmp_path / "d" / cls / f"{i}.jpg", quality=95)
            smooth[(cls, i)] = a
    ds = load_dataset(cfg_for(tmp_path / "d"))
    got = ds.x.permute(0, 2, 3, 1).int().numpy()
    want = np.stack([smooth[k] for k in sorted(smooth)]).astype(int)
    assert np.abs(got - want).max() <= 3


def test_gray_conversion_and_resize(tmp_path):
    written = write_imagefolder(tmp_path / "d", {"a": 2, "b": 2}, size=(8, 8))
    ds = load_dataset(cfg_for(tmp_path / "d", "data.channels=1"))
    a = np.stack([v for _, v in sorted(written.items())]).astype(np.float64)
    luma = a[..., 0] * 0.299 + a[..., 1] * 0.587 + a[..., 2] * 0.114  # ITU-R 601, PIL's convert("L")
    assert tuple(ds.x.shape) == (4, 1, 8, 8)
    assert np.abs(ds.x[:, 0].double().numpy() - luma).max() <= 1.0
    small = load_dataset(cfg_for(tmp_path / "d", "data.image_size=4"))
    assert tuple(small.x.shape) == (4, 3, 4, 4)
    # downscaling by 2 with an antialiased filter ≈ mean of each 2x2 block, well within a few levels for most pixels
    blocks = a.reshape(4, 4, 2, 4, 2, 3).mean(axis=(2, 4))
    assert np.median(np.abs(small.x.permute(0, 2, 3, 1).double().numpy() - blocks)) < 40


def test_mixed_sizes_are_resized_to_the_most_common_with_a_note(tmp_path):
    write_imagefolder(tmp_path / "d", {"a": 3, "b": 2}, size=(8, 8))
    write_imagefolder(tmp_path / "d", {"c": 1}, size=(5, 7), seed=2)
    ds = load_dataset(cfg_for(tmp_path / "d"))
    assert tuple(ds.x.shape) == (6, 3, 8, 8)
    (note,) = [n for n in ds.notes if "different sizes" in n]
    assert "1 resized" in note and "8x8" in note and "000.png" in note


def test_non_image_files_are_skipped_with_a_note(tmp_path):
    write_imagefolder(tmp_path / "d", {"a": 2, "b": 2})
    (tmp_path / "d" / "a" / "readme.txt").write_text("not an image")
    (tmp_path / "d" / "a" / ".DS_Store").write_bytes(b"\0")
    ds = load_dataset(cfg_for(tmp_path / "d"))
    assert len(ds.y) == 4
    assert any("skipped 1 non-image file" in n and "readme.txt" in n for n in ds.notes)


def _bad(tmp_path, root, *more):
    res = cli(
        "data",
        "--set",
        "data.dataset=imagefolder",
        "--set",
        f"data.root={root}",
        "--grid",
        str(tmp_path / "g.png"),
        *more,
    )
    assert res.exit_code == 2, res.output
    assert isinstance(res.exception, SystemExit) and "Traceback" not in res.output
    assert res.output.startswith("error: ") and res.output.count("\n") == 1  # one line, on stderr
    assert res.stdout == ""
    assert not (tmp_path / "g.png").exists()
    return res.output


def test_bad_folders_exit_2_with_one_clear_message(tmp_path):
    out = _bad(tmp_path, tmp_path / "nope")
    assert "error: data.root: folder" in out and "does not exist" in out and "root/<class>/<image>" in out
    write_imagefolder(tmp_path / "one", {"only": 2})
    assert "single class folder ('only')" in _bad(tmp_path, tmp_path / "one")
    write_imagefolder(tmp_path / "e", {"a": 2})
    (tmp_path / "e" / "empty").mkdir()
    assert f"class folder '{tmp_path / 'e' / 'empty'}' holds no images" in _bad(tmp_path, tmp_path / "e")
    out = cli("data", "--set", "data.dataset=imagefolder", "--grid", str(tmp_path / "g.png")).output
    assert "data.root: required for imagefolder" in out


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_corrupt_or_truncated_image_is_named(tmp_path, damage):
    written = write_imagefolder(tmp_path / "d", {"a": 3, "b": 3}, size=(32, 32))
    victim = sorted(written)[4]
    data = victim.read_bytes()
    victim.write_bytes(b"this is not a png" if damage == "garbage" else data[: len(data) // 2])
    out = _bad(tmp_path, tmp_path / "d")
    assert f"image '{victim}' cannot be decoded" in out and "corrupt or truncated" in out


def test_train_records_class_names_and_counts_in_the_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_imagefolder(tmp_path / "d", {"cat": 12, "dog": 8}, size=(8, 8))
    res = cli(
        "train",
        "--set",
        "data.dataset=imagefolder",
        "--set",
        f"data.root={tmp_path / 'd'}",
        "--set",
        "model.channels=[4]",
        "--set",
        "model.hidden=[8]",
        "--set",
        "train.epochs=1",
        "--set",
        "data.val_fraction=0.25",
        "--set",
        "data.test_fraction=0.25",
        "--set",
        "device=cpu",
    )
    assert res.exit_code == 0, res.output
    (run,) = (tmp_path / "runs").iterdir()
    summary = json.loads((run / "summary.json").read_text())
    assert summary["classes"] == ["cat", "dog"]
    counts = summary["class_counts"]
    assert {c: sum(counts[s][c] for s in counts) for c in ("cat", "dog")} == {"cat": 12, "dog": 8}
    assert [sum(counts[s].values()) for s in ("train", "val", "test")] == [10, 5, 5]
    assert "held in memory" in res.output
