"""Folders of real photos of mixed sizes, modes and formats: training sees exactly the pixels `predict`
feeds (one decode, straight to the working size), the docs' onnxruntime recipe reproduces nntrain's
probabilities on JPEGs and PNGs, a huge JPEG does not cost memory per small crop, and `nntrain data`
counts and names what resizing does."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import REPO, cli

from nntrain.config import load_config
from nntrain.data.registry import load_dataset


def _photos():
    from matplotlib import cbook
    from PIL import Image
    from sklearn.datasets import load_sample_images

    china, flower = (Image.fromarray(a) for a in load_sample_images().images)  # 640x427 each
    with cbook.get_sample_data("grace_hopper.jpg") as f:
        hopper = Image.open(f).convert("RGB")  # 512x600
    return {"china": china, "flower": flower, "hopper": hopper}


def write_mixed_folder(root: Path, big: tuple[int, int] = (3000, 2000), common=(32, 32)) -> list[Path]:
    """3 classes of real photo crops: JPEG (colour, grayscale, EXIF-rotated), PNG (RGB, RGBA, grayscale),
    GIF, BMP, WebP; squares and non-squares from 24 px to 300 px, ``common`` (W, H) the most common size, and
    one large JPEG (``big``) per class."""
    from PIL import Image

    rng = np.random.default_rng(0)
    files = []
    for k, (name, im) in enumerate(_photos().items()):
        d = root / name
        d.mkdir(parents=True)
        w, h = im.size
        shapes = [common] * 4 + [(24, 24), (40, 30), (300, 200), (64, 64), (150, 90), (120, 160), (33, 31)]
        for i, (cw, ch) in enumerate(shapes):
            x0, y0 = int(rng.integers(0, w - cw)), int(rng.integers(0, h - ch))
            crop = im.crop((x0, y0, x0 + cw, y0 + ch))
            kind = (i + k) % 9
            if kind == 0:
                crop.save(d / f"{i:02d}.jpg", quality=90)
            elif kind == 1:
                crop.convert("L").save(d / f"{i:02d}.jpg", quality=85)
            elif kind == 2:
                rgba = crop.convert("RGBA")
                rgba.putalpha(Image.fromarray(rng.integers(0, 256, (ch, cw), dtype=np.uint8)))
                rgba.save(d / f"{i:02d}.png")
            elif kind == 3:
                crop.convert("L").save(d / f"{i:02d}.png")
            elif kind == 4:
                crop.convert("P", palette=Image.Palette.ADAPTIVE).save(d / f"{i:02d}.gif")
            elif kind == 5:
                crop.save(d / f"{i:02d}.bmp")
            elif kind == 6:
                crop.save(d / f"{i:02d}.webp", quality=80)
            elif kind == 7:
                exif = Image.Exif()
                exif[0x0112] = 6  # "rotate 90 degrees on display"
                crop.save(d / f"{i:02d}.jpg", quality=90, exif=exif)
            else:
                crop.save(d / f"{i:02d}.png")
        im.resize(big, Image.Resampling.BICUBIC).save(d / "big.jpg", quality=92)
        files += sorted(d.iterdir())
    return files


@pytest.fixture(scope="module")
def mixed(tmp_path_factory, one_torch_thread):
    """(the folder, a finished 1-epoch run trained on it with data.image_size null)."""
    root = tmp_path_factory.mktemp("mixed")
    write_mixed_folder(root / "photos")
    res = cli(
        "train", "--set", "device=cpu", "--set", "data.dataset=imagefolder", "--set", f"data.root={root / 'photos'}",
        "--set", "model.channels=[4]", "--set", "model.hidden=[8]", "--set", "train.epochs=1",
        "--set", "data.val_fraction=0.25", "--set", "data.test_fraction=0.25",
        "--set", f"output.runs_dir={root / 'runs'}", "--set", "output.run_name=m", "--json",
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    (run,) = (root / "runs").iterdir()
    return root / "photos", run


def test_training_tensors_equal_what_predict_feeds_on_a_mixed_photo_folder(mixed):
    from nntrain.data.splits import make_splits
    from nntrain.deploy.inputs import expand
    from nntrain.deploy.predict import _pixels
    from nntrain.deploy.source import open_source
    from nntrain.pipeline.setup import setup

    _, run = mixed
    s = setup(load_config(run / "config.yaml"))
    assert tuple(s.data.input_shape) == (3, 32, 32)
    src = open_source(run)
    idx = make_splits(s.dataset, s.cfg)
    for name in ("train", "val", "test"):
        paths = [s.dataset.sources[i] for i in getattr(idx, name)]
        assert paths, name
        ok, x = _pixels(expand(paths, src.classes), src)
        assert ok == list(range(len(paths)))
        assert torch.equal(src.normalize(x), getattr(s.data, name).x.cpu()), name  # bit for bit, every split


def test_each_image_is_resized_once_straight_to_the_working_size(tmp_path):
    """The oracle: Pillow's own open → EXIF transpose → convert → one bilinear resize to 32x32, per file; the
    most common size, 48x36, is above 32 px (so before, every other image was resized to it first)."""
    from PIL import Image, ImageOps

    files = write_mixed_folder(tmp_path / "p", common=(48, 36))
    ds = load_dataset(load_config(None, ["data.dataset=imagefolder", f"data.root={tmp_path / 'p'}"]).data)
    assert [Path(p) for p in ds.sources] == files
    for i, f in enumerate(files):
        im = ImageOps.exif_transpose(Image.open(f)).convert("RGB")
        want = np.asarray(im if im.size == (32, 32) else im.resize((32, 32), Image.Resampling.BILINEAR))
        assert np.array_equal(ds.x[i].permute(1, 2, 0).numpy(), want), f


def test_the_size_notes_count_what_was_resized_and_squashed(tmp_path):
    from PIL import Image

    files = write_mixed_folder(tmp_path / "p")
    ds = load_dataset(load_config(None, ["data.dataset=imagefolder", f"data.root={tmp_path / 'p'}"]).data)
    sizes = []
    for f in files:
        with Image.open(f) as im:
            w, h = im.size
            sizes.append((h, w) if im.getexif().get(0x0112, 1) in (5, 6, 7, 8) else (w, h))
    moved = sum(s != (32, 32) for s in sizes)
    squashed = sum(abs(w - h) > 0.02 * h for w, h in sizes)
    (note,) = [n for n in ds.notes if "different sizes" in n]
    assert f"the most common, 32x32, is shared by {sizes.count((32, 32))} of {len(files)}" in note
    assert f": {moved} resized to 32x32" in note
    (shape,) = [n for n in ds.notes if "squashed" in n]
    assert shape.startswith(f"{squashed} of {len(files)} images have another shape than 32x32")
    assert not any("grayscale" in n for n in ds.notes)  # colour photos among them


def test_a_tie_in_the_most_common_size_is_decided_by_size_not_file_order():
    import itertools

    from nntrain.data.formats.imagefolder import working_size

    sizes = [(8, 8), (12, 10), (10, 12), (12, 10), (8, 8), (5, 5)]
    assert {working_size(list(p)) for p in itertools.permutations(sizes)} == {(12, 10)}
    assert working_size([(400, 300), (20, 20), (20, 20)]) == (20, 20)  # the most common wins
    assert working_size([(400, 300), (600, 600)]) == (32, 32)  # a tie among photos: capped at 32x32


def test_a_grayscale_only_folder_gets_a_note_and_a_colour_one_does_not(tmp_path):
    from helpers import write_imagefolder
    from PIL import Image

    write_imagefolder(tmp_path / "g", {"a": 3, "b": 3}, size=(8, 8))
    for f in (tmp_path / "g").rglob("*.png"):
        Image.open(f).convert("L").save(f)
    ds = load_dataset(load_config(None, ["data.dataset=imagefolder", f"data.root={tmp_path / 'g'}"]).data)
    assert tuple(ds.x.shape[1:]) == (3, 8, 8)
    assert any("all 6 images are grayscale" in n and "data.channels=1" in n for n in ds.notes)
    one = load_dataset(
        load_config(None, ["data.dataset=imagefolder", f"data.root={tmp_path / 'g'}", "data.channels=1"]).data
    )
    assert not any("grayscale" in n for n in one.notes) and tuple(one.x.shape[1:]) == (1, 8, 8)


_PEAK = """
import resource, sys
from nntrain.config import load_config
from nntrain.data.registry import load_dataset
cfg = load_config(None, ["data.dataset=imagefolder", "data.root=" + sys.argv[1]]).data
import PIL.Image, torch  # noqa: F401  (their import costs are not the loader's)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
ds = load_dataset(cfg)
print(tuple(ds.x.shape), (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024)
"""


def test_a_huge_jpeg_among_small_crops_costs_one_decode_not_one_per_image(tmp_path):
    """A 6000x4000 JPEG as the first file among 20 crops of different sizes: before, every crop was stretched
    to 6000x4000 (72 MB each); now each image is decoded, resized to 32x32 and only that is kept."""
    from PIL import Image

    photos = _photos()
    rng = np.random.default_rng(3)
    for name in ("china", "flower"):
        (tmp_path / "p" / name).mkdir(parents=True)
        for i in range(10):
            side = 40 + 7 * i + (3 if name == "flower" else 0)
            x0, y0 = int(rng.integers(0, 300)), int(rng.integers(0, 200))
            photos[name].crop((x0, y0, x0 + side, y0 + side)).save(tmp_path / "p" / name / f"{i + 1:02d}.jpg")
    photos["china"].resize((6000, 4000), Image.Resampling.BILINEAR).save(tmp_path / "p" / "china" / "00.jpg")
    env = dict(os.environ, PYTHONPATH=str(REPO))
    out = subprocess.run([sys.executable, "-c", _PEAK, str(tmp_path / "p")], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    shape, mb = out.stdout.rsplit(" ", 1)
    assert shape == "(21, 3, 32, 32)"
    assert int(mb) < 72 * 6, out.stdout  # a few full-size decodes at most, never 21 of them (1.5 GB)


def _snippet(name: str) -> str:
    text = (REPO / "docs" / "use-your-model.md").read_text()
    return re.search(rf"<!-- snippet: {name} -->\n```python\n(.*?)```", text, re.S)[1]


@pytest.mark.parametrize("suffix", [".jpg", ".png", ".webp", ".gif"])
def test_the_docs_onnx_recipe_reproduces_predict_on_jpeg_and_png(mixed, tmp_path, suffix):
    """The snippet of docs/use-your-model.md, executed as written, on a 32 px photo model: the same top class
    and probability within 1e-5 as `nntrain predict` (JPEGs included: no DCT draft scaling anywhere)."""
    import csv
    import io
    import shutil

    folder, run = mixed
    pytest.importorskip("onnxruntime")
    assert cli("export", run, "--out", tmp_path / "model.onnx").exit_code == 0
    files = [f for f in sorted(folder.rglob(f"*{suffix}"))][:6]
    assert files
    env = dict(os.environ, PYTHONPATH=str(REPO))
    for f in files:
        image = tmp_path / f"image{suffix}"
        shutil.copy(f, image)
        code = _snippet("onnx").replace('"image.png"', repr(image.name))
        res = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, env=env)
        assert res.returncode == 0, res.stderr
        name, prob = res.stdout.split()
        (row,) = list(csv.DictReader(io.StringIO(cli("predict", run, f).stdout)))
        assert name == row["predicted"] and abs(float(prob) - float(row["probability"])) < 1e-5, f


def test_every_docs_snippet_runs_on_a_32_px_photo_model(mixed, tmp_path):
    """Each ``<!-- snippet: NAME -->`` block of docs/use-your-model.md, executed as written on a 32 px model
    (its conv maps are average-pooled to 4x4): the onnx recipe labels a photo like predict, the safetensors
    rebuild computes the checkpoint's logits."""
    import csv
    import io
    import shutil

    from nntrain.pipeline.reopen import read_checkpoint

    pytest.importorskip("onnxruntime")
    folder, run = mixed
    names = re.findall(r"<!-- snippet: (\w+) -->", (REPO / "docs" / "use-your-model.md").read_text())
    assert sorted(names) == ["onnx", "safetensors"]  # a new snippet needs its case here
    _, ckpt, original = read_checkpoint(run)
    assert "avgpool" in dict(original.named_children())  # the 32 px case the docs once missed
    assert cli("export", run, "--out", tmp_path / "model.onnx").exit_code == 0
    assert cli("export", run, "--out", tmp_path / "model.safetensors").exit_code == 0
    photo = sorted(folder.rglob("*.jpg"))[0]
    shutil.copy(photo, tmp_path / "image.png")  # the snippet's file name; Pillow reads the JPEG by its content
    env = dict(os.environ, PYTHONPATH=str(REPO))
    res = subprocess.run(
        [sys.executable, "-c", _snippet("onnx")], cwd=tmp_path, capture_output=True, text=True, env=env
    )
    assert res.returncode == 0, res.stderr
    name, prob = res.stdout.split()
    (row,) = list(csv.DictReader(io.StringIO(cli("predict", run, photo).stdout)))
    assert name == row["predicted"] and abs(float(prob) - float(row["probability"])) < 1e-5
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        scope: dict = {}
        exec(_snippet("safetensors"), scope)
    finally:
        os.chdir(cwd)
    x = torch.randn(5, *ckpt["input_shape"])
    with torch.inference_mode():
        assert torch.equal(scope["model"](x), original(x))


_BOMB = """
import sys
from PIL import Image
Image.MAX_IMAGE_PIXELS = int(sys.argv[1])  # a small limit stands in for a 90-megapixel file
from nntrain.cli.app import main
sys.argv = ["nntrain", *sys.argv[2:]]
main()
"""


def test_a_decompression_bomb_warning_becomes_a_note_naming_the_file(mixed, tmp_path):
    from helpers import write_imagefolder

    folder, run = mixed
    from PIL import Image

    write_imagefolder(tmp_path / "d", {"a": 10, "b": 10}, size=(10, 12))
    Image.new("RGB", (120, 100), "red").save(tmp_path / "d" / "a" / "000.png")  # 12,000 pixels
    env = dict(os.environ, PYTHONPATH=str(REPO))

    def nntrain(limit: int, *args):
        cmd = [sys.executable, "-c", _BOMB, str(limit), *map(str, args)]
        return subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path)

    res = nntrain(10_000, "data", "--set", "data.dataset=imagefolder", "--set", f"data.root={tmp_path / 'd'}")
    assert res.returncode == 0, res.stderr
    assert "DecompressionBombWarning" not in res.stderr and "Image size" not in res.stderr  # Pillow's raw text
    victim = tmp_path / "d" / "a" / "000.png"
    assert f"note: image '{victim}' is 120x100 (0 megapixels), above Pillow's decompression-bomb" in res.stderr
    res = nntrain(10_000, "predict", run, victim)
    assert res.returncode == 0, res.stderr
    assert f"note: image '{victim}' is 120x100" in res.stderr and "DecompressionBombWarning" not in res.stderr
    res = nntrain(5_000, "data", "--set", "data.dataset=imagefolder", "--set", f"data.root={tmp_path / 'd'}")
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert "refused by Pillow's decompression-bomb guard" in res.stderr and "corrupt" not in res.stderr


def test_duplicates_are_identical_files_not_pictures_that_resize_alike(tmp_path):
    """A 1x1 white PNG and a 130x130 white GIF become the same 1x1 tensor but are different files; a byte copy
    of a file is a duplicate."""
    from PIL import Image

    from nntrain.data.report import describe
    from nntrain.pipeline.setup import setup

    for cls in ("a", "b"):
        (tmp_path / "d" / cls).mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(12):
        for cls in ("a", "b"):
            Image.fromarray(rng.integers(0, 256, (1, 1, 3), dtype=np.uint8)).save(tmp_path / "d" / cls / f"{i}.png")
    Image.new("RGB", (1, 1), "white").save(tmp_path / "d" / "a" / "white.png")
    Image.new("RGB", (130, 130), "white").save(tmp_path / "d" / "b" / "white.gif")
    more = ["data.val_fraction=0.5", "model.name=mlp", "model.hidden=[4]", "device=cpu"]
    cfg = load_config(None, ["data.dataset=imagefolder", f"data.root={tmp_path / 'd'}", *more])
    s = setup(cfg)
    r = describe(s)
    assert sum(d["count"] for d in r["duplicates"].values()) == 0  # before: the white pair was "identical bytes"
    assert r["duplicates_are"] == "identical files"
    src = s.dataset.sources
    first, second = s.data.splits.train[0], s.data.splits.val[0]
    Path(src[second]).write_bytes(Path(src[first]).read_bytes())  # now a real copy across train/val
    r = describe(setup(cfg))
    assert r["duplicates"]["train/val"]["count"] == 1
    assert r["duplicates"]["train/val"]["files"] == [(src[first], src[second])]
