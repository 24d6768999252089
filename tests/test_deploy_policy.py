"""What a new user hits around predict/export/eval and every command that writes a named file: nothing to
predict, a run without best.pt, unreadable inputs named by their real cause, a file name that contradicts
the format, one overwrite policy (--force), the run's data found from any folder, the predict table on a
120-column terminal whatever TERM says."""

from __future__ import annotations

import io
import json
import os
import shutil

import pytest
from helpers import cli, imagefolder_run, terminal_console, write_imagefolder
from helpers import one_error_line as _one_error_line


@pytest.fixture(scope="module")
def run(tmp_path_factory, one_torch_thread):
    """A finished 2-epoch run on a 3-class folder of 8x8 RGB PNGs (12 per class)."""
    return imagefolder_run(tmp_path_factory.mktemp("policy"), 12)


def test_predict_on_an_empty_folder_or_empty_stdin_exits_2_saying_so(run, tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no pictures here")
    res = cli("predict", run, tmp_path / "empty")
    _one_error_line(res, f"nothing to predict: folder '{tmp_path / 'empty'}' holds no image files")
    assert res.stdout == ""
    res = cli("predict", run, "-", input="\n  \n")
    _one_error_line(res, "nothing to predict: stdin ('-') gave no paths")
    res = cli("predict", run, tmp_path / "empty", "--out", tmp_path / "p.csv")
    _one_error_line(res, "nothing to predict")
    assert not (tmp_path / "p.csv").exists()


def test_failure_counts_are_worded_as_counted(run, tmp_path):
    good = sorted((run.parent.parent / "images" / "cat").iterdir())[0]
    (tmp_path / "bad.png").write_bytes(b"not a png")

    def last_line(*inputs) -> str:  # piped: the rows on stdout, the summary note, then the error line
        res = cli("predict", run, *inputs)
        assert res.exit_code == 2 and "Traceback" not in res.output
        return res.stderr.splitlines()[-1]

    one = last_line(tmp_path / "bad.png")
    assert one.startswith(f"error: the input could not be predicted: image '{tmp_path / 'bad.png'}'")
    two = last_line(good, tmp_path / "bad.png")
    assert "1 of 2 inputs could not be predicted (1 was); first: " in two and "the others" not in two
    assert "none of the 2 inputs could be predicted" in last_line(tmp_path / "bad.png", tmp_path / "bad.png")


def test_a_run_without_best_pt_is_refused_by_export_eval_and_predict_with_what_to_do(run, tmp_path):
    cut = tmp_path / "cut"
    shutil.copytree(run, cut)
    (cut / "best.pt").unlink()
    image = sorted((run.parent.parent / "images" / "cat").iterdir())[0]
    for args in (["export", cut, "--out", tmp_path / "m.onnx"], ["eval", cut], ["predict", cut, image]):
        _one_error_line(cli(*args), f"'{cut}' holds no best.pt, only last.pt", "--resume", str(cut / "last.pt"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cut"]
    res = cli("predict", cut / "last.pt", image, "--json")  # asked for by name: used
    assert res.exit_code == 0, res.output


def test_unreadable_inputs_are_named_by_their_real_cause_never_called_corrupt(run, tmp_path):
    (tmp_path / "folder.png").mkdir()
    (tmp_path / "link.png").symlink_to(tmp_path / "gone.png")
    names = [tmp_path / "missing.png", tmp_path / "folder.png", tmp_path / "link.png"]
    res = cli("predict", run, "-", "--json", input="".join(f"{p}\n" for p in names))
    assert res.exit_code == 2
    errors = [r["error"] for r in json.loads(res.stdout)["rows"]]
    assert "does not exist" in errors[0]
    assert "is a folder, not an image file" in errors[1]
    assert "is a broken symbolic link" in errors[2] and str(tmp_path / "gone.png") in errors[2]
    assert not any("corrupt" in e or "delete" in e for e in errors)


def test_a_broken_link_in_a_class_folder_is_named_as_one(tmp_path):
    write_imagefolder(tmp_path / "d", {"a": 3, "b": 3}, size=(8, 8))
    (tmp_path / "d" / "a" / "zz.png").symlink_to(tmp_path / "elsewhere.png")
    res = cli("data", "--set", "data.dataset=imagefolder", "--set", f"data.root={tmp_path / 'd'}")
    msg = _one_error_line(res, f"image '{tmp_path / 'd' / 'a' / 'zz.png'}' is a broken symbolic link")
    assert "corrupt" not in msg and "delete" not in msg


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root reads a chmod 000 file anyway")
def test_a_file_without_read_permission_is_named_as_such(run, tmp_path):
    write_imagefolder(tmp_path / "d", {"a": 3, "b": 3}, size=(8, 8))
    victim = tmp_path / "d" / "a" / "001.png"
    victim.chmod(0)
    try:
        res = cli("data", "--set", "data.dataset=imagefolder", "--set", f"data.root={tmp_path / 'd'}")
        msg = _one_error_line(res, f"image '{victim}' cannot be read: permission denied")
        assert "corrupt" not in msg and "delete" not in msg
        res = cli("predict", run, victim, "--json")
        assert "permission denied" in json.loads(res.stdout)["rows"][0]["error"]
    finally:
        victim.chmod(0o644)


@pytest.mark.parametrize(
    "args, needle",
    [
        (
            ["--out", "x.pt2", "--format", "onnx"],
            "--out x.pt2: a --format onnx file must end in .onnx; name it 'x.onnx'",
        ),
        (["--out", "x.onnx", "--format", "safetensors"], "or pass --format onnx"),
        (["--out", "x.bin"], "--out x.bin: the extension '.bin' names no export format"),
    ],
)
def test_an_export_file_name_that_contradicts_the_format_is_refused(run, tmp_path, monkeypatch, args, needle):
    monkeypatch.chdir(tmp_path)
    _one_error_line(cli("export", run, *args), needle)
    assert list(tmp_path.iterdir()) == []


def test_without_format_the_out_extension_decides(run, tmp_path):
    import torch

    res = cli("export", run, "--out", tmp_path / "m.pt2")
    assert res.exit_code == 0, res.output
    assert "pt2 export and parity check" in res.stdout
    torch.export.load(str(tmp_path / "m.pt2"))  # a torch.export program, not ONNX under a .pt2 name


def _refused(res, option: str, path) -> None:
    _one_error_line(res, f"{option} {path}: the file already exists; pass --force to overwrite it")


def test_one_overwrite_policy_for_every_named_output(run, tmp_path):
    images = run.parent.parent / "images"
    cases = {
        "p.csv": ["predict", run, images, "--out"],
        "f.png": ["plot-filters", run, "--out"],
        "c.png": ["plot-curves", run, "--out"],
        "r.html": ["report", run, "--out"],
        "e.png": ["eval", run, "--out"],
        "m.onnx": ["export", run, "--out"],
        "s.png": ["lr-sweep", "--set", "device=cpu", "--epochs", "1", "--out"],
    }
    for name, args in cases.items():
        target = tmp_path / name
        target.write_bytes(b"mine")
        _refused(cli(*args, target), "--out", target)
        assert target.read_bytes() == b"mine", name
    grid = tmp_path / "g.png"
    grid.write_bytes(b"mine")
    _refused(cli("data", "--grid", grid), "--grid", grid)
    assert grid.read_bytes() == b"mine"
    for name in ("p.csv", "f.png", "c.png", "r.html", "e.png"):  # --force writes (export: below)
        res = cli(*cases[name], tmp_path / name, "--force")
        assert res.exit_code == 0, res.output
        assert (tmp_path / name).read_bytes() != b"mine", name
    res = cli("data", "--grid", grid, "--force")
    assert res.exit_code == 0 and grid.read_bytes()[:4] == b"\x89PNG"


def test_export_force_replaces_an_existing_file(run, tmp_path):
    (tmp_path / "m.safetensors").write_bytes(b"mine")
    assert cli("export", run, "--out", tmp_path / "m.safetensors", "--force").exit_code == 0
    assert (tmp_path / "m.safetensors").read_bytes() != b"mine" and (tmp_path / "m.json").is_file()


def test_a_relative_data_root_is_stored_absolute_so_eval_works_from_elsewhere(tmp_path, monkeypatch):
    write_imagefolder(tmp_path / "proj" / "pets", {"cat": 12, "dog": 12}, size=(8, 8))
    monkeypatch.chdir(tmp_path / "proj")
    shown = cli("config", "show", "--set", "data.dataset=imagefolder", "--set", "data.root=pets")
    assert "root: pets\n" in shown.stdout  # config show prints what was typed
    res = cli(
        "train", "--set", "device=cpu", "--set", "data.dataset=imagefolder", "--set", "data.root=pets",
        "--set", "model.channels=[4]", "--set", "model.hidden=[8]", "--set", "train.epochs=1",
        "--set", "output.runs_dir=runs", "--json",
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    (run,) = (tmp_path / "proj" / "runs").iterdir()
    assert f"root: {tmp_path / 'proj' / 'pets'}\n" in (run / "config.yaml").read_text()
    monkeypatch.chdir(tmp_path)
    res = cli("eval", run.resolve(), "--json")
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["n"] > 0


@pytest.mark.parametrize("term", ["xterm-256color", "dumb"])
def test_the_predict_table_shows_whole_file_names_on_120_columns(tmp_path, monkeypatch, one_torch_thread, term):
    from nntrain.cli import render

    monkeypatch.setenv("TERM", term)  # the caller's terminal must not matter
    root = tmp_path / "newlab"
    written = write_imagefolder(root, {"cat": 2, "dog": 2, "emu": 2}, size=(8, 8))
    for p in list(written):
        p.rename(p.with_name(f"chelsea_the_cat_photo_session_{p.stem}.png"))
    run = imagefolder_run(tmp_path / "r", 6)
    buf = io.StringIO()
    monkeypatch.setattr(render, "console", terminal_console(buf, columns=120))
    res = cli("predict", run, root)
    assert res.exit_code == 0, res.output
    table = buf.getvalue()
    for p in sorted(root.rglob("*.png")):  # every file name whole, in exactly one row
        assert sum(f"{p.parent.name}/{p.name}" in line for line in table.splitlines()) == 1, (p, table)
    assert max(len(line) for line in table.splitlines()) <= 120
    assert f"paths under {root}{os.sep}" in res.stdout


def test_a_path_too_long_for_the_terminal_is_cut_in_the_middle_keeping_the_file_name():
    from nntrain.cli.predict import shorten

    path = "a/" * 40 + "chelsea_the_cat_0001.jpg"
    cut = shorten(path, 40)
    assert len(cut) == 40 and "…" in cut and cut.endswith("chelsea_the_cat_0001.jpg") and cut.startswith("a/")
    assert shorten("cat/1.png", 40) == "cat/1.png"
