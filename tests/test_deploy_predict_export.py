"""nntrain predict and nntrain export on a tiny image-folder run: the same preprocessing as
training, eval's numbers reproduced from PNG files, per-row errors, parity-checked exports."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import REPO, cli, imagefolder_run


@pytest.fixture(scope="module")
def run(tmp_path_factory, one_torch_thread):
    """A finished 2-epoch run on a 3-class folder of 8x8 RGB PNGs (random pixels, 20 per class)."""
    return imagefolder_run(tmp_path_factory.mktemp("pe"), 20)


def _test_split(run_dir: Path):
    from nntrain.config import load_config
    from nntrain.data.splits import make_splits
    from nntrain.pipeline.setup import setup

    s = setup(load_config(run_dir / "config.yaml"))
    idx = make_splits(s.dataset, s.cfg).test
    return s, [Path(s.dataset.sources[i]) for i in idx]


def _rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def test_an_image_gets_the_identical_tensor_through_training_and_predict(run):
    import torch

    from nntrain.deploy.inputs import expand
    from nntrain.deploy.predict import _pixels
    from nntrain.deploy.source import open_source

    s, paths = _test_split(run)
    src = open_source(run)
    items = expand([str(p) for p in paths], src.classes)
    ok, x = _pixels(items, src)
    assert ok == list(range(len(paths)))
    assert torch.equal(src.normalize(x), s.data.test.x.cpu())  # bit for bit


def test_predicting_the_test_images_as_png_reproduces_eval(run, tmp_path):
    _, paths = _test_split(run)
    for p in paths:  # the run's own test images, re-written as PNG files under their class folder
        (tmp_path / "t" / p.parent.name).mkdir(parents=True, exist_ok=True)
        shutil.copy(p, tmp_path / "t" / p.parent.name / p.name)
    ev = cli(*["eval", str(run), "--json"])
    assert ev.exit_code == 0, ev.output
    ev = json.loads(ev.stdout[ev.stdout.index("{") :])
    res = cli(*["predict", str(run), str(tmp_path / "t"), "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["summary"]["labelled"] == ev["n"] == len(paths)
    assert out["summary"]["accuracy"] == pytest.approx(ev["accuracy"], abs=0)
    assert out["summary"]["per_class"] == ev["per_class"]
    assert out["columns"][:5] == ["path", "predicted", "probability", "label", "error"]
    assert out["columns"][5:] == ["top2", "top2_probability", "top3", "top3_probability"]
    for r in out["rows"]:
        assert r["probability"] >= r["top2_probability"] >= r["top3_probability"]
        assert {r["predicted"], r["top2"], r["top3"]} == {"cat", "dog", "emu"}


def test_bad_inputs_get_an_error_row_and_exit_2_the_others_are_written(run, tmp_path):
    _, paths = _test_split(run)
    good = tmp_path / "good.png"
    shutil.copy(paths[0], good)
    (tmp_path / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (tmp_path / "notes.jpg").write_text("text, not an image")
    out = tmp_path / "p.csv"
    args = ["predict", str(run), str(good), str(tmp_path / "corrupt.png"), str(tmp_path / "notes.jpg")]
    res = cli(*[*args, str(tmp_path / "missing.png"), "--out", str(out), "--top-k", "1"])
    assert res.exit_code == 2
    assert "error: 3 of 4 inputs could not be predicted" in res.stderr
    rows = _rows(out.read_text())
    assert list(rows[0]) == ["path", "predicted", "probability", "label", "error"]
    assert [bool(r["error"]) for r in rows] == [False, True, True, True]
    assert rows[0]["predicted"] in ("cat", "dog", "emu") and rows[1]["predicted"] == ""
    assert "cannot be decoded" in rows[1]["error"] and "does not exist" in rows[3]["error"]
    assert "1 of 4 inputs predicted, 3 failed" in res.stdout


def test_npz_glob_and_stdin_inputs(run, tmp_path):
    from PIL import Image

    _, paths = _test_split(run)
    arrays = np.stack([np.asarray(Image.open(p)) for p in paths[:3]])  # (3, 8, 8, 3)
    np.savez(tmp_path / "x.npz", x=arrays)
    for p in paths[:3]:
        shutil.copy(p, tmp_path / f"{p.parent.name}-{p.name}")
    by_glob = _rows(cli(*["predict", str(run), str(tmp_path / "*.png")]).stdout)
    by_npz = _rows(cli(*["predict", str(run), str(tmp_path / "x.npz")]).stdout)
    stdin = "".join(f"{tmp_path / f'{p.parent.name}-{p.name}'}\n" for p in paths[:3])
    by_stdin = _rows(cli(*["predict", str(run), "-"], input=stdin).stdout)
    assert [r["path"] for r in by_npz] == [f"{tmp_path / 'x.npz'}[{i}]" for i in range(3)]
    assert len(by_glob) == 3 and [r["path"] for r in by_stdin] == [r["path"] for r in by_glob]
    order = sorted(range(3), key=lambda i: f"{paths[i].parent.name}-{paths[i].name}")
    assert [by_npz[i]["probability"] for i in order] == [r["probability"] for r in by_glob]


def test_not_a_checkpoint_and_hostile_pickle_exit_2_one_line(run, tmp_path):
    import pickle

    (tmp_path / "x.pt").write_bytes(b"not a checkpoint")
    (tmp_path / "evil.pt").write_bytes(pickle.dumps({"model": os.system}))
    for bad in ("x.pt", "evil.pt"):
        res = cli(*["predict", str(tmp_path / bad), str(tmp_path)])
        assert res.exit_code == 2 and res.stderr.count("\n") == 1 and res.stderr.startswith("error: "), res.stderr


@pytest.mark.parametrize("fmt", ["onnx", "pt2", "safetensors"])
def test_export_writes_after_a_parity_check(run, tmp_path, fmt):
    out = tmp_path / f"m.{fmt}"
    mask = os.umask(0o022)
    try:
        res = cli(*["export", str(run), "--format", fmt, "--out", str(out)])
    finally:
        os.umask(mask)
    assert res.exit_code == 0, res.output
    written = [out] + ([out.with_suffix(".json")] if fmt == "safetensors" else [])
    assert [oct(p.stat().st_mode & 0o777) for p in written] == ["0o644"] * len(written)  # 0666 & ~umask, as open()
    m = re.search(
        r"parity on (\d+) test split inputs: max \|Δprobability\| (\S+) .*top-1 agreement 100\.00%", res.stdout
    )
    assert m and int(m[1]) == len(_test_split(run)[1]) and float(m[2]) <= 1e-5, res.stdout
    assert out.is_file() and not [p for p in tmp_path.iterdir() if ".tmp" in p.name]
    if fmt == "safetensors":
        side = json.loads(out.with_suffix(".json").read_text())
        assert side["classes"] == ["cat", "dog", "emu"] and side["model"]["channels"] == [4]


def test_onnx_metadata_and_predict_through_onnx_match_the_run(run, tmp_path):
    import onnx

    from nntrain.runs.files import load_checkpoint

    out = tmp_path / "m.onnx"
    assert cli(*["export", str(run), "--out", str(out)]).exit_code == 0
    props = {p.key: json.loads(p.value) for p in onnx.load(str(out)).metadata_props}
    ckpt = load_checkpoint(run / "best.pt")
    assert props["classes"] == ["cat", "dog", "emu"] and props["input_shape"] == [3, 8, 8]
    assert props["mean"] == [v / 255 for v in ckpt["norm_mean"]] and props["std"] == [v / 255 for v in ckpt["norm_std"]]
    assert props["nntrain_version"] and 0 <= props["test_accuracy"] <= 1
    ev = json.loads((r := cli(*["eval", str(run), "--json"])).stdout[r.stdout.index("{") :])
    assert props["test_accuracy"] == pytest.approx(ev["accuracy"])
    images = str(run.parent.parent / "images")
    a = _rows(cli(*["predict", str(run), images]).stdout)
    b = _rows(cli(*["predict", str(out), images]).stdout)
    assert len(a) == 60 and [(r["path"], r["predicted"]) for r in a] == [(r["path"], r["predicted"]) for r in b]
    assert max(abs(float(x["probability"]) - float(y["probability"])) for x, y in zip(a, b)) < 1e-5


def test_parity_failure_exits_1_with_the_figures_and_writes_nothing(run, tmp_path, monkeypatch):
    from nntrain.deploy import export

    real = export.RUNNERS["onnx"]
    monkeypatch.setitem(export.RUNNERS, "onnx", lambda files, x: real(files, x) + np.float32(1e-3) * np.arange(3))
    res = cli(*["export", str(run), "--out", str(tmp_path / "m.onnx")])
    assert res.exit_code == 1
    assert re.search(r"error: onnx export disagrees .*max \|Δprobability\| \d\.\d\de-0[34]", res.stderr), res.stderr
    assert list(tmp_path.iterdir()) == []


def test_without_the_export_extra_exit_2_with_the_install_command(run, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    res = cli(*["export", str(run), "--out", str(tmp_path / "m.onnx")])
    assert res.exit_code == 2 and "pip install 'nntrain[export]'" in res.stderr
    (tmp_path / "m.onnx").write_bytes(b"x")
    res = cli(*["predict", str(tmp_path / "m.onnx"), str(tmp_path)])
    assert res.exit_code == 2 and "pip install 'nntrain[export]'" in res.stderr


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--format", "tflite"], "--format 'tflite': allowed: onnx, pt2, safetensors"),
        (["--out", "/nonexistent-dir/m.onnx"], "does not exist"),
    ],
)
def test_export_bad_arguments_exit_2(run, args, needle):
    res = cli(*["export", str(run), *args])
    assert res.exit_code == 2 and needle in res.stderr, res.stderr


def test_export_of_a_folder_without_best_pt_exits_2(tmp_path):
    res = cli(*["export", str(tmp_path)])
    assert res.exit_code == 2 and "holds no best.pt or last.pt" in res.stderr


def test_predict_imports_no_matplotlib_sklearn_or_torchvision(run, tmp_path):
    code = (
        "import sys; from typer.testing import CliRunner; from nntrain.cli.app import app;"
        f"r = CliRunner().invoke(app, ['predict', {str(run)!r}, {str(run.parent.parent / 'images')!r}]);"
        "assert r.exit_code == 0, r.output;"
        "print(sorted(m for m in ('torchvision', 'matplotlib', 'sklearn') if m in sys.modules))"
    )
    env = dict(os.environ, PYTHONPATH=str(REPO))
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def _snippet(name: str) -> str:
    text = (REPO / "docs" / "use-your-model.md").read_text()
    code = re.search(rf"<!-- snippet: {name} -->\n```python\n(.*?)```", text, re.S)[1]
    assert len(code.splitlines()) <= 24
    return code


def test_docs_onnx_snippet_classifies_an_image_like_predict(run, tmp_path, monkeypatch):
    _, paths = _test_split(run)
    assert cli(*["export", str(run), "--out", str(tmp_path / "model.onnx")]).exit_code == 0
    monkeypatch.chdir(tmp_path)
    for p in paths[:4]:
        shutil.copy(p, tmp_path / "image.png")
        res = subprocess.run([sys.executable, "-c", _snippet("onnx")], capture_output=True, text=True)
        assert res.returncode == 0, res.stderr
        name, prob = res.stdout.split()
        (row,) = _rows(cli(*["predict", str(run), str(p)]).stdout)
        assert name == row["predicted"] and abs(float(prob) - float(row["probability"])) < 1e-5


def test_docs_safetensors_snippet_rebuilds_the_model(run, tmp_path, monkeypatch):
    import torch

    from nntrain.pipeline.reopen import read_checkpoint

    res = cli(*["export", str(run), "-f", "safetensors", "--out", str(tmp_path / "model.safetensors")])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "model.json").is_file()
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(_snippet("safetensors"), scope)
    _, _, original = read_checkpoint(run)
    x = torch.randn(5, 3, 8, 8)
    with torch.inference_mode():
        assert torch.equal(scope["model"](x), original(x))


def test_flip_tta_run_predicts_and_exports_the_averaged_probabilities(tmp_path_factory, tmp_path, one_torch_thread):
    """eval.tta: flip holds at predict time too: predict averages the image and its mirror, and the
    exported ONNX graph does the same (so `predict model.onnx` agrees with `predict RUN`)."""
    import torch

    from nntrain.deploy.source import open_source
    from nntrain.pipeline.reopen import read_checkpoint

    run_dir = imagefolder_run(tmp_path_factory.mktemp("tta"), 10, "--set", "eval.tta=flip")
    _, ckpt, plain = read_checkpoint(run_dir)
    x = torch.randn(5, *ckpt["input_shape"])
    with torch.inference_mode():
        p = torch.softmax(plain(x), 1) + torch.softmax(plain(x.flip(-1)), 1)
    expected = (p / 2).numpy()
    src = open_source(run_dir)
    assert np.allclose(src.probabilities(x), expected, atol=1e-6)
    with torch.inference_mode():
        assert not np.allclose(torch.softmax(plain(x), 1).numpy(), expected, atol=1e-4)  # the flip mattered
    onnx = tmp_path / "m.onnx"
    res = cli("export", run_dir, "--out", onnx)
    assert res.exit_code == 0, res.output
    exported = open_source(onnx)
    assert json_tta(onnx) == "flip"  # the metadata says so
    assert np.allclose(exported.probabilities(x.numpy()), expected, atol=1e-5)


def json_tta(path: Path) -> str:
    import onnx

    props = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    return json.loads(props["tta"])
