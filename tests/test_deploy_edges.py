"""nntrain predict / export at their edges: the terminal table, unwritable --out, checkpoints whose model
does not load, pt2 metadata read back, EXIF rotation, an exporter that fails, data that cannot be rebuilt."""

from __future__ import annotations

import io
import json
import os
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from helpers import cli, imagefolder_run, terminal_console
from helpers import one_error_line as _one_error_line


@torch.library.custom_op("nntrain_test::twice", mutates_args=())
def _twice(x: torch.Tensor) -> torch.Tensor:
    """An op with no ONNX translation: what the onnx exporter cannot export."""
    return x * 2


@_twice.register_fake
def _(x):
    return torch.empty_like(x)


@pytest.fixture(scope="module")
def run(tmp_path_factory, one_torch_thread):
    """A finished 2-epoch run on a 3-class folder of 8x8 RGB PNGs (30 per class)."""
    return imagefolder_run(tmp_path_factory.mktemp("edges"), 30)


@pytest.mark.parametrize("term", ["xterm-256color", "dumb"])
def test_terminal_table_shows_the_first_rows_and_the_summary(run, monkeypatch, term):
    from nntrain.cli import render

    monkeypatch.setenv("TERM", term)  # the caller's terminal does not change what the test sees
    images = run.parent.parent / "images"
    rows = json.loads(cli("predict", run, images, "--json").stdout)["rows"]
    assert len(rows) == 90
    buf = io.StringIO()
    monkeypatch.setattr(render, "console", terminal_console(buf, columns=400))
    res = cli("predict", run, images)
    assert res.exit_code == 0, res.output
    table = buf.getvalue()
    assert "predictions (20 of 90 shown; --out FILE for all)" in table
    common = os.path.commonpath([os.path.dirname(r["path"]) for r in rows[:20]])  # here: images/cat
    assert f"paths under {common}{os.sep}\n" in res.stdout  # the common folder, once; rows show the rest
    relative = [os.path.relpath(r["path"], common) for r in rows]
    shown = [ln for ln in table.splitlines() if any(ln.strip("│┃ ").startswith(p) for p in relative)]
    assert len(shown) == 20  # the first 20 rows, in order, with their prediction and probability
    for line, row, path in zip(shown, rows[:20], relative):
        cells = [c.strip() for c in line.strip("│┃ ").split("│")]
        assert cells[:4] == [path, row["predicted"], f"{row['probability']:.4f}", row["label"]]
    assert relative[20] not in table
    assert "per-class accuracy" in table and "┏" in table  # a rich table, not plain text
    acc = sum(r["predicted"] == r["label"] for r in rows) / 90
    assert "90 of 90 inputs predicted, 0 failed" in res.stdout
    assert f"accuracy {acc:.4f} on 90 labelled inputs" in res.stdout


def test_predict_out_that_cannot_be_written_exits_2_one_line(run, tmp_path, monkeypatch):
    from nntrain.runs import files

    images = run.parent.parent / "images"

    def refuse(path, text):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(files, "atomic_write_text", refuse)
    res = cli("predict", run, images, "--out", tmp_path / "p.csv")
    _one_error_line(res, f"--out {tmp_path / 'p.csv'}: cannot write it (Permission denied)")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root writes into a read-only folder anyway")
def test_predict_out_in_a_read_only_folder_exits_2_before_predicting(run, tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        res = cli("predict", run, run.parent.parent / "images", "--out", locked / "p.csv")
        _one_error_line(res, "is not writable")
        assert list(locked.iterdir()) == []
    finally:
        locked.chmod(0o700)


@pytest.mark.parametrize("damage", ["shape", "missing", "no-config"])
def test_a_checkpoint_whose_model_does_not_load_exits_2_one_line(run, tmp_path, damage):
    ckpt = torch.load(run / "best.pt", weights_only=True)
    if damage == "shape":
        ckpt["model"]["out.weight"] = torch.zeros(5, 16)
    elif damage == "missing":
        del ckpt["model"]["out.bias"]
    else:
        del ckpt["config"]
    torch.save(ckpt, tmp_path / "bad.pt")
    needle = "lacks the model config" if damage == "no-config" else "does not match its own model config"
    _one_error_line(cli("predict", tmp_path / "bad.pt", run.parent.parent / "images"), needle)
    _one_error_line(cli("export", tmp_path / "bad.pt", "--out", tmp_path / "m.onnx"), needle)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.pt"]


def test_pt2_metadata_is_read_back_from_the_saved_file(run, tmp_path):
    from nntrain.pipeline.reopen import read_checkpoint
    from nntrain.runs.files import load_checkpoint

    out = tmp_path / "m.pt2"
    res = cli("export", run, "-f", "pt2", "--out", out)
    assert res.exit_code == 0, res.output
    extra = {"nntrain.json": ""}
    program = torch.export.load(str(out), extra_files=extra)
    meta = json.loads(extra["nntrain.json"])
    ckpt = load_checkpoint(run / "best.pt")
    ev = cli("eval", run, "--json")
    ev = json.loads(ev.stdout[ev.stdout.index("{") :])
    assert meta["classes"] == ["cat", "dog", "emu"] and meta["input_shape"] == [3, 8, 8]
    assert meta["mean"] == [v / 255 for v in ckpt["norm_mean"]] and meta["std"] == [v / 255 for v in ckpt["norm_std"]]
    assert meta["nntrain_version"] == ckpt["versions"]["nntrain"]
    assert meta["test_accuracy"] == pytest.approx(ev["accuracy"], abs=1e-12)
    x = torch.randn(3, 3, 8, 8)
    _, _, model = read_checkpoint(run)
    with torch.inference_mode():
        assert torch.allclose(program.module()(x), model(x), atol=1e-6)


@pytest.mark.parametrize("orientation, turns", [(3, 2), (6, -1), (8, 1)])
def test_exif_rotation_same_tensor_in_training_and_predict_rotated_as_tagged(tmp_path, orientation, turns):
    from PIL import Image

    from nntrain.config import DataConfig
    from nntrain.data.formats import imagefolder
    from nntrain.deploy.inputs import expand
    from nntrain.deploy.predict import _pixels

    yy, xx = np.mgrid[0:16, 0:16]
    pattern = np.stack([xx * 16, yy * 16, (xx * yy) % 256], axis=-1).astype(np.uint8)  # no symmetry
    exif = Image.Exif()
    exif[0x0112] = orientation
    files = []
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        files.append(tmp_path / name / "x.jpg")
        Image.fromarray(pattern).save(files[-1], quality=95, exif=exif)
    ds = imagefolder.load(DataConfig(dataset="imagefolder", root=str(tmp_path)), notes=lambda m: None)
    items = expand([str(f) for f in files], ds.classes)
    ok, x = _pixels(items, SimpleNamespace(input_shape=tuple(ds.input_shape)))
    assert ok == [0, 1] and torch.equal(x, ds.x)  # identical raw pixels through both paths
    with Image.open(files[0]) as im:
        stored = np.asarray(im.convert("RGB"))  # the pixels as stored, tag ignored
    assert torch.equal(ds.x[0], torch.from_numpy(np.ascontiguousarray(np.rot90(stored, turns))).permute(2, 0, 1))


class _WithOp(torch.nn.Module):
    """The run's model followed by an op the exporter cannot handle."""

    def __init__(self, model, kind: str):
        super().__init__()
        self.model, self.kind = model, kind

    def forward(self, x):
        y = self.model(x)
        if self.kind == "custom-op":
            return _twice(y) / 2
        return y if y.sum() > 0 else -y  # data-dependent control flow: torch.export cannot capture it


@pytest.mark.parametrize(
    "fmt, kind, needle",
    [
        ("onnx", "custom-op", "No ONNX function found for <OpOverload(op='nntrain_test.twice'"),
        ("pt2", "branch", "data-dependent"),
    ],
)
def test_an_exporter_failure_is_one_line_naming_the_format_and_nothing_is_left(
    run, tmp_path, monkeypatch, fmt, kind, needle
):
    from nntrain.deploy import export
    from nntrain.pipeline.reopen import read_checkpoint

    def broken(source):
        path, ckpt, model = read_checkpoint(source)
        return path, ckpt, _WithOp(model, kind).eval()

    monkeypatch.setattr(export, "read_checkpoint", broken)
    monkeypatch.chdir(tmp_path)
    res = cli("export", run, "-f", fmt, "--out", tmp_path / f"m.{fmt}")
    _one_error_line(res, f"error: {fmt} export failed in {export.EXPORTERS[fmt]}, nothing written: ", needle)
    assert list(tmp_path.iterdir()) == []


def test_export_when_the_runs_data_is_gone_says_so_and_what_to_do(run, tmp_path):
    ckpt = torch.load(run / "best.pt", weights_only=True)
    ckpt["config"]["data"]["root"] = str(tmp_path / "moved-away")
    torch.save(ckpt, tmp_path / "r.pt")
    res = cli("export", tmp_path / "r.pt", "--out", tmp_path / "m.onnx")
    _one_error_line(res, "the run's data cannot be rebuilt", "moved-away", "make the dataset available again")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.pt"]


def test_export_parity_inputs_are_the_test_split_training_evaluated(run):
    """Only the test split is rebuilt for parity, normalized with the checkpoint's statistics: bit-identical
    to the full pipeline's test split (setup normalizes every split with freshly computed train statistics)."""
    from nntrain.config import load_config
    from nntrain.deploy.export import reference_inputs
    from nntrain.pipeline.reopen import read_checkpoint
    from nntrain.pipeline.setup import setup

    _, ckpt, model = read_checkpoint(run)
    x, accuracy, on = reference_inputs(ckpt, model)
    s = setup(load_config(run / "config.yaml"))
    assert on == "test split" and np.array_equal(x, s.data.test.x.cpu().numpy())
    with torch.inference_mode():
        expected = int((model(s.data.test.x).argmax(1) == s.data.test.y).sum()) / len(s.data.test)
    assert accuracy == pytest.approx(expected, abs=1e-12)


def test_one_normalize_serves_memory_streaming_and_predict():
    from nntrain.data import memory, streaming
    from nntrain.data.types import normalize
    from nntrain.deploy import source

    for module in (memory, streaming):
        assert module.normalize is normalize
    x = torch.randint(0, 256, (4, 3, 5, 5), dtype=torch.uint8)
    mean, std = torch.tensor([10.0, 120.5, 250.0]), torch.tensor([3.0, 60.25, 1e-6])
    expected = (x.double() - mean.double()[:, None, None]) / std.double()[:, None, None]
    assert torch.allclose(normalize(x, mean, std).double(), expected, rtol=1e-6)
    src = SimpleNamespace(mean=mean.numpy(), std=std.numpy(), scale=1.0)
    assert torch.equal(source.Source.normalize(src, x), normalize(x, mean, std))


@pytest.mark.parametrize(
    "device, needle",
    [
        ("gpu", "--device gpu: not a device nntrain predicts on; use cpu, cuda, cuda:N or auto"),
        ("cuda:x", "--device cuda:x: not a device"),
        pytest.param(
            "cuda",
            "--device cuda: CUDA is not available here; use --device auto or cpu",
            marks=pytest.mark.skipif(torch.cuda.is_available(), reason="the message on a machine without CUDA"),
        ),
    ],
)
def test_predict_on_a_bad_or_missing_device_exits_2_one_line(run, device, needle):
    _one_error_line(cli("predict", run, run.parent.parent / "images", "--device", device), needle)


def test_predict_on_another_device_gives_the_cpu_result(run):
    images = run.parent.parent / "images"
    cpu = json.loads(cli("predict", run, images, "--json").stdout)["rows"]
    other = "cuda" if torch.cuda.is_available() else "auto"
    rows = json.loads(cli("predict", run, images, "--json", "--device", other).stdout)["rows"]
    assert [r["predicted"] for r in rows] == [r["predicted"] for r in cpu]
    # the same weights on another device: probabilities agree to float32 rounding (exactly on the CPU)
    tol = 1e-5 if other == "cuda" else 0.0
    assert max(abs(a["probability"] - b["probability"]) for a, b in zip(rows, cpu)) <= tol
