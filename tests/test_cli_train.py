"""`nntrain train` and `nntrain config` end to end: exit codes, messages, run directory."""

from __future__ import annotations

import csv
import json
import os

import pytest
import yaml
from helpers import cli, run_cli, terminal_console

from nntrain.config import Config, load_config

TINY = ["--set", "model.channels=[8]", "--set", "model.hidden=[16]", "--set", "train.epochs=3", "--set", "device=cpu"]


def test_default_train_reaches_98_percent_and_writes_the_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    res = cli("train", "--set", "device=cpu")
    assert res.exit_code == 0, res.output
    assert "\x1b[" not in res.output  # not a TTY: plain lines, no escape codes
    epoch_lines = [line for line in res.output.splitlines() if line.startswith("epoch ")]
    assert len(epoch_lines) == 20 and epoch_lines[0].startswith("epoch  1/20  loss ")
    (run,) = (tmp_path / "runs").iterdir()
    assert run.name.startswith("run-")
    assert {"config.yaml", "metrics.csv", "summary.json", "best.pt", "last.pt"} <= {p.name for p in run.iterdir()}
    summary = json.loads((run / "summary.json").read_text())
    assert summary["test_acc"] >= 0.98, summary
    assert summary["epochs_run"] == 20 and summary["seed"] == 0 and summary["device"] == "cpu"
    assert {"torch", "python", "nntrain", "train_seconds", "best_val_acc", "best_epoch"} <= set(summary)
    assert f"test accuracy  {summary['test_acc']:.4f}" in res.output and str(run.relative_to(tmp_path)) in res.output
    rows = list(csv.DictReader(open(run / "metrics.csv")))
    assert [int(r["epoch"]) for r in rows] == list(range(1, 21))
    assert max(float(r["val_acc"]) for r in rows) == summary["best_val_acc"]
    assert load_config(run / "config.yaml") == load_config(None, ["device=cpu"])


def test_default_train_on_a_photo_folder_reaches_90_percent_at_32_px_without_false_advice(tmp_path, photo_folder):
    # the user: a folder of real 100-300 px photos, defaults otherwise
    runs = tmp_path / "runs"
    res = cli("train", "--set", "data.dataset=imagefolder", "--set", f"data.root={photo_folder}",
              "--set", "device=cpu", "--set", f"output.runs_dir={runs}")  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "resized to 32x32" in res.output  # the default working size for photo folders
    (run,) = runs.iterdir()
    summary = json.loads((run / "summary.json").read_text())
    assert summary["test_acc"] >= 0.9 and not summary["diverged"], summary
    # val accuracy reached its best: neither "overfitting" nor "learned little" may be said
    assert not {"overfit", "poor", "diverged"} & {a["rule"] for a in summary["advice"]}, summary["advice"]


def test_resolved_config_reproduces_the_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert cli("train", *TINY, "--set", "output.run_name=a").exit_code == 0
    (first,) = (tmp_path / "runs").glob("a-*")
    res = cli("train", "--config", str(first / "config.yaml"))
    assert res.exit_code == 0, res.output
    (second,) = [p for p in (tmp_path / "runs").glob("a-*") if p != first]

    def rows(p):
        return [{k: v for k, v in r.items() if k != "seconds"} for r in csv.DictReader(open(p / "metrics.csv"))]

    assert rows(first) == rows(second) and len(rows(first)) == 3


def test_runs_are_never_overwritten(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for _ in range(2):
        assert cli("train", *TINY, "--set", "train.epochs=1").exit_code == 0
    assert len(list((tmp_path / "runs").iterdir())) == 2


def test_json_output(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    res = cli("train", *TINY, "--json")
    assert res.exit_code == 0
    out = json.loads(res.stdout)
    assert out["epochs_run"] == 3 and 0 <= out["test_acc"] <= 1 and out["run_dir"].startswith("runs")


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--set", "model.dropot=0.1"], "model.dropot: unknown key; did you mean 'dropout'?"),
        (["--set", "train.epochs=ten"], "train.epochs: Input should be a valid integer"),
        (["--set", "train.optimizer.lr=-0.1"], "train.optimizer.lr: Input should be greater than 0 (got -0.1)"),
        (["--set", "data.val_fraction=0.5", "--set", "data.test_fraction=0.5"], "leaves no real train set"),
        (["--set", "data.dataset=cifar1000"], "data.dataset: unknown dataset 'cifar1000'"),
        (["--set", "model.name=vgg"], "model.name: Input should be 'cnn', 'mlp', 'resnet', 'resnet18'"),
        (["--config", "missing.yaml"], "config file 'missing.yaml' cannot be read: no such file"),
        (["--config", "."], "cannot be read: it is a directory"),
        (["--set", "model.channels=[8,8,8,8]"], "model.channels: 4 conv stages"),
        (["--set", "device=cuda:7"], "device: 'cuda:7'"),
    ],
)
def test_bad_input_exits_2_with_one_message_and_no_run(tmp_path, monkeypatch, args, needle):
    monkeypatch.chdir(tmp_path)
    if needle.startswith("device"):
        import torch

        if torch.cuda.device_count() > 7:
            pytest.skip("this machine has 8 GPUs")
    res = cli("train", *args)
    assert res.exit_code == 2, res.output
    assert needle in res.stderr and res.stderr.startswith("error: ")
    assert "Traceback" not in res.output
    assert not (tmp_path / "runs").exists()


def test_yaml_syntax_error_cli(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bad.yaml").write_text("train:\n  epochs: [3\n")
    res = cli("train", "--config", "bad.yaml")
    assert res.exit_code == 2 and "bad.yaml:3:" in res.stderr and "YAML syntax error" in res.stderr


def test_config_show_and_validate(tmp_path):
    res = cli("config", "show", "--set", "train.epochs=5")
    assert res.exit_code == 0
    shown = yaml.safe_load(res.stdout)
    assert Config.model_validate(shown) == load_config(None, ["train.epochs=5"])
    good, bad = tmp_path / "good.yaml", tmp_path / "bad.yaml"
    good.write_text("train: {epochs: 2}\n")
    bad.write_text("train: {epoch: 2}\n")
    res = cli("config", "validate", str(good), str(bad))
    assert res.exit_code == 2
    assert (
        f"ok       {good}" in res.stdout and f"invalid  {bad}" in res.stdout and "did you mean 'epochs'" in res.stdout
    )
    assert cli("config", "validate", str(good)).exit_code == 0


def test_help_does_not_import_torch(tmp_path):
    code = (
        "import sys; from typer.testing import CliRunner; from nntrain.cli.app import app;"
        "r = CliRunner().invoke(app, ['train', '--help']); assert r.exit_code == 0, r.output;"
        "assert '--config' in r.output; r = CliRunner().invoke(app, ['--help']); assert 'train' in r.output;"
        "print('torch' in sys.modules)"
    )
    import subprocess
    import sys

    from helpers import REPO

    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_training_on_digits_imports_only_what_it_uses(tmp_path):
    """No torchvision (only the MNIST/CIFAR loaders need it), no pyplot, TensorBoard or Ray."""
    code = (
        "import sys; from typer.testing import CliRunner; from nntrain.cli.app import app;"
        f"r = CliRunner().invoke(app, ['train', *{TINY!r}, '--set', 'train.epochs=1']);"
        "assert r.exit_code == 0, r.output;"
        "print(sorted(m for m in ('torchvision', 'matplotlib.pyplot', 'tensorboard', 'torch.utils.tensorboard', 'ray')"
        " if m in sys.modules))"
    )
    import subprocess
    import sys

    from helpers import REPO

    env = dict(os.environ, PYTHONPATH=str(REPO))
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_python_dash_m_works(tmp_path):
    res = run_cli(["--help"], cwd=tmp_path)
    assert res.returncode == 0 and "train" in res.stdout and "Usage" in res.stdout
    res = run_cli(["train", "--set", "train.epochs=0"], cwd=tmp_path)
    assert res.returncode == 2 and "train.epochs: Input should be greater than 0" in res.stderr
    assert "Traceback" not in res.stderr


def test_live_table_on_a_terminal_highlights_the_best_values():
    """On a TTY the epoch table is a rich Live table; the best val accuracy is bold green."""
    import io

    import nntrain.cli.render as con
    from nntrain.cli.live import EpochReporter

    buf = io.StringIO()
    term = terminal_console(buf, columns=120, color_system="truecolor")
    rep = EpochReporter("train", live=True, auto_refresh=False)
    old = con.console
    con.console = term
    try:
        rep.on_fit_start({"epochs": 2, "device": "cpu", "n_train": 10})
        rows = [
            {
                "epoch": 1,
                "train_loss": 1.0,
                "train_acc": 0.5,
                "val_loss": 0.9,
                "val_acc": 0.8125,
                "lr": 0.1,
                "seconds": 0.1,
            },
            {
                "epoch": 2,
                "train_loss": 0.5,
                "train_acc": 0.75,
                "val_loss": 1.1,
                "val_acc": 0.6875,
                "lr": 0.1,
                "seconds": 0.1,
            },
        ]
        for r in rows:
            rep.on_epoch_end(r)
        table = rep._table()
    finally:
        rep.close()
        con.console = old
    out = buf.getvalue()
    assert "\x1b[" in out and "0.8125" in out and "0.6875" in out  # rendered with escape codes
    val_cells = table.columns[3]._cells
    assert val_cells == ["[bold green]0.8125[/]", "0.6875"]  # the best val accuracy is highlighted
    assert table.columns[1]._cells == ["1.0000", "[bold green]0.5000[/]"]  # so is the lowest loss


def test_collector_paused_during_start_up_and_on_while_training(tmp_path, monkeypatch):
    """train pauses Python's cyclic collector while it imports and loads, freezes the
    start-up heap when training starts and runs the collector during training; afterwards
    it is on and nothing stays frozen (the process may go on, as this test's does)."""
    import gc

    import nntrain.pipeline.train as pipeline

    seen: dict[str, object] = {}
    real_fit = pipeline.fit

    class Probe:
        def on_epoch_end(self, record):
            seen.setdefault("training", (gc.isenabled(), gc.get_freeze_count()))

    def fit(*args, callbacks=(), **kwargs):
        seen["before fit"] = gc.isenabled()
        return real_fit(*args, callbacks=list(callbacks) + [Probe()], **kwargs)

    monkeypatch.setattr(pipeline, "fit", fit)
    monkeypatch.chdir(tmp_path)
    assert gc.isenabled()
    assert cli("train", *TINY, "--set", "train.epochs=1").exit_code == 0
    assert seen["before fit"] is False
    enabled, frozen = seen["training"]
    assert enabled and frozen > 10_000  # torch alone is far more objects
    assert gc.isenabled() and gc.get_freeze_count() == 0
    # bad input (rejected before training): the collector is back on too
    assert cli("train", "--set", "train.epochs=ten").exit_code == 2
    assert gc.isenabled() and gc.get_freeze_count() == 0


def test_torchrun_rank_above_0_trains_with_the_collector_on(monkeypatch, tiny_cfg):
    """Ranks > 0 run no callbacks (no FreezeHeap): the collector must still be back on."""
    import gc

    import nntrain.cli.train as cli
    import nntrain.pipeline.train as pipeline
    from nntrain.cli.startup import collector_paused
    from nntrain.training.engine import History

    seen = []

    def train_run(cfg, *, s=None, should_stop=None, **kwargs):
        seen.append((gc.isenabled(), gc.get_freeze_count()))
        return History(), None

    class Rank1:
        is_main = False

    monkeypatch.setattr(pipeline, "train_run", train_run)
    with collector_paused():
        assert not gc.isenabled()
        cli._train(tiny_cfg(), None, False, Rank1())
    assert len(seen) == 1 and seen[0][0] and seen[0][1] > 10_000
    assert gc.isenabled() and gc.get_freeze_count() == 0
