"""One JSON policy (docs/json.md): every ``--json`` output and JSON file is strict JSON, with
NaN and ±inf written as ``null`` — checked per command on a case that produces a NaN."""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace

from typer.testing import CliRunner

from nntrain.cli.app import app
from nntrain.runs.files import json_text

runner = CliRunner()
TINY = ["--set", "device=cpu", "--set", "model.channels=[4]", "--set", "model.hidden=[16]", "--set", "train.epochs=1"]
NO_VAL = ["--set", "data.val_fraction=0"]  # no val split: NaN val loss and accuracy


def strict(text: str):
    """Parse as strict JSON: NaN, Infinity and -Infinity tokens fail the test."""

    def refuse(token: str):
        raise AssertionError(f"non-standard JSON token {token} in {text[:200]!r}")

    return json.loads(text, parse_constant=refuse)


def test_json_text_writes_non_finite_floats_as_null_at_any_depth():
    obj = {"a": math.nan, "b": [1.5, math.inf, (-math.inf, 2)], "c": {"d": math.nan, "e": "nan"}, "p": Path("x/y")}
    assert strict(json_text(obj)) == {"a": None, "b": [1.5, None, [None, 2]], "c": {"d": None, "e": "nan"}, "p": "x/y"}
    assert json_text({"n": 1}) == '{\n  "n": 1\n}\n'


def test_train_json_and_summary_json(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    res = runner.invoke(app, ["train", *TINY, *NO_VAL, "--json"])
    assert res.exit_code == 0, res.output
    out = strict(res.stdout)
    assert out["best_val_acc"] is None and 0 <= out["test_acc"] <= 1
    summary = strict((tmp_path / out["run_dir"] / "summary.json").read_text())
    assert summary["best_val_acc"] is None and summary["split_sizes"]["val"] == 0


def test_sanity_json(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    res = runner.invoke(app, ["sanity", *TINY, "--set", "train.optimizer.lr=1e6", "--json"])
    assert res.exit_code == 1, res.output  # the lr probe fails: its loss blew up
    by = {c["name"]: c for c in strict(res.stdout)["checks"]}
    assert by["lr_probe"]["passed"] is False and None in by["lr_probe"]["values"].values()


def test_data_json(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    res = runner.invoke(app, ["data", *TINY, *NO_VAL, "--grid", str(tmp_path / "g.png"), "--json"])
    assert res.exit_code == 0, res.output
    assert "null" in res.stdout and strict(res.stdout)


def test_eval_json(tmp_path, monkeypatch):
    import numpy as np

    import nntrain.pipeline.reopen as reopen

    monkeypatch.chdir(tmp_path)
    res = runner.invoke(app, ["train", *TINY, "--json"])
    assert res.exit_code == 0, res.output
    run = strict(res.stdout)["run_dir"]
    nan_result = SimpleNamespace(
        n=3,
        accuracy=math.nan,
        classes=["a", "b"],
        confusion=np.eye(2, dtype=int),
        per_class=lambda: [{"acc": math.inf}],
    )
    monkeypatch.setattr(reopen, "eval_run", lambda run_dir, split: nan_result)
    res = runner.invoke(app, ["eval", run, "--json"])
    assert res.exit_code == 0, res.output
    out = strict(res.stdout)
    assert out["accuracy"] is None and out["per_class"] == [{"acc": None}] and out["n"] == 3


def test_lr_sweep_json_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    res = runner.invoke(app, ["lr-sweep", *TINY, *NO_VAL, "--lrs", "0.05", "--epochs", "1"])
    assert res.exit_code == 0, res.output
    (sweep,) = (tmp_path / "runs").glob("*/lr-sweep.json")
    (row,) = strict(sweep.read_text())["runs"]
    assert row["lr"] == 0.05 and row["val_acc"] is None and math.isfinite(row["final_loss"])


def test_cv_json(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text("device: cpu\nmodel: {name: mlp, hidden: [8]}\ntrain: {epochs: 1}\n")
    res = runner.invoke(app, ["cv", "--config", str(cfg), "--folds", "2", "--grid", "train.optimizer.lr=1e9", "--json"])
    assert res.exit_code == 1, res.output  # every fold diverged
    (combo,) = strict(res.stdout)["combos"]
    assert combo["params"] == {"train.optimizer.lr": 1e9} and combo["mean_val_acc"] is None
