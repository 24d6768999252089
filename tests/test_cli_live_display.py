"""The live displays on a terminal: never taller than the terminal (no repeated copies in the
scrollback), progress inside an epoch, and no empty table left behind by cv.

Rendering is deterministic: ``auto_refresh=False`` and a forced-terminal rich Console of fixed
size writing into a buffer, replayed through a minimal terminal emulator (a screen of fixed
height over a scrollback; the cursor cannot move above the screen's top line)."""

from __future__ import annotations

import io
import json
import re

import pytest
from helpers import terminal_console

WIDTH, HEIGHT = 120, 30


def replay(raw: str, height: int = HEIGHT) -> list[str]:
    """The scrollback plus screen after writing ``raw`` to a terminal ``height`` lines tall."""
    lines, row, col = [""], 0, 0
    for tok in re.findall(r"\x1b\[[0-9;?]*[A-Za-z]|\r|\n|[^\x1b\r\n]+", raw):
        if tok == "\n":
            row += 1
            col = 0
            if row == len(lines):
                lines.append("")
        elif tok == "\r":
            col = 0
        elif tok.startswith("\x1b["):
            n = int(re.sub(r"\D", "", tok[2:-1]) or 1) if tok[-1] in "ABG" else 0
            if tok[-1] == "A":  # cursor up: not above the top of the screen
                row = max(row - n, max(0, len(lines) - height))
            elif tok[-1] == "K":
                lines[row] = ""
            elif tok[-1] == "G":
                col = n - 1
        else:
            line = lines[row].ljust(col)
            lines[row] = line[:col] + tok + line[col + len(tok) :]
            col += len(tok)
    return [line.rstrip() for line in lines]


@pytest.fixture
def terminal(monkeypatch):
    import nntrain.cli.render as render

    buf = io.StringIO()
    term = terminal_console(buf, columns=WIDTH, lines=HEIGHT)
    monkeypatch.setattr(render, "console", term)
    return buf


def record(epoch: int, val_acc: float) -> dict:
    return {
        "epoch": epoch,
        "train_loss": 1.0 / epoch,
        "train_acc": 0.5,
        "val_loss": 0.9,
        "val_acc": val_acc,
        "lr": 0.1,
        "seconds": 0.1,
        "best": False,
    }


def test_an_epoch_table_taller_than_the_terminal_leaves_each_row_once_in_the_scrollback(terminal):
    from nntrain.cli.live import EpochReporter

    rep = EpochReporter("train cnn on digits", live=True, auto_refresh=False)
    rep.on_fit_start({"epochs": 80, "device": "cpu", "n_train": 10})
    for e in range(1, 81):
        rep.on_step(3, 7)
        r = record(e, 0.9 if e == 5 else 0.5)
        r["best"] = e == 5
        rep.on_epoch_end(r)
    rep.on_fit_end(None)
    screen = replay(terminal.getvalue())
    assert sum("val acc" in line for line in screen) == 1, "\n".join(screen)  # the header once
    assert sum(line.startswith("train cnn on digits") for line in screen) == 1
    for e in range(1, 81):  # every epoch's row exactly once, in order
        assert sum(line.split()[:1] == [f"{e}/80"] for line in screen) == 1, e
    firsts = [int(line.split()[0].split("/")[0]) for line in screen if re.match(r"\s*\d+/80 ", line)]
    assert firsts == list(range(1, 81))


def test_the_live_region_is_never_taller_than_the_terminal_and_keeps_the_best_epoch(terminal):
    from nntrain.cli import render
    from nntrain.cli.live import EpochReporter

    rep = EpochReporter("t", live=True, auto_refresh=False)
    rep.on_fit_start({"epochs": 80, "device": "cpu", "n_train": 10})
    for e in range(1, 61):
        r = record(e, 0.9 if e == 2 else 0.5)
        r["best"] = e == 2
        rep.on_epoch_end(r)
    rep.on_step(3, 7)
    lines = render.console.render_lines(rep._renderable(), pad=False)
    assert len(lines) <= HEIGHT
    text = ["".join(seg.text for seg in line).rstrip() for line in lines]
    assert any(line.split()[:2] == ["best", "2"] for line in text), text  # the best row stays in view
    assert any("epoch 61/80  step 3/7" in line and "ETA" in line for line in text), text
    rep.close()


def test_progress_inside_the_first_epoch_is_shown_before_any_row(terminal):
    from nntrain.cli import render
    from nntrain.cli.live import EpochReporter

    rep = EpochReporter("t", live=True, auto_refresh=False)
    rep.on_fit_start({"epochs": 3, "device": "cpu", "n_train": 10})
    rep.on_step(40, 100)
    lines = render.console.render_lines(rep._renderable(), pad=False)
    text = "\n".join("".join(seg.text for seg in line) for line in lines)
    assert "epoch 1/3  step 40/100  epoch ETA 0:00" in text
    rep.close()


def test_fit_reports_every_step_with_python_ints(tiny_cfg):
    from nntrain.pipeline.setup import setup
    from nntrain.pipeline.train import train_run

    cfg = tiny_cfg("train.batch_size=512")
    seen: list[tuple[int, int]] = []

    class Steps:
        def on_step(self, step, n_steps):
            assert type(step) is int and type(n_steps) is int
            seen.append((step, n_steps))

    s = setup(cfg)
    n_steps = -(-len(s.data.train) // 512)
    train_run(cfg, callbacks=[Steps()], s=s)
    assert seen == [(k, n_steps) for k in range(1, n_steps + 1)] * 2


def test_cv_progress_leaves_no_empty_running_table(terminal):
    from nntrain.cli.render import CvProgress

    p = CvProgress(1, 2, live=True)
    p({"event": "start", "combo": 0, "fold": 0, "epochs": 2})
    p({"event": "done", "combo": 0, "fold": 0, "best_val_acc": 0.9, "best_epoch": 2, "seconds": 1.0})
    p.close()
    screen = [line for line in replay(terminal.getvalue()) if line.strip()]
    assert not any("running" in line or "folds finished" in line for line in screen), screen


def test_the_result_gives_the_whole_commands_wall_time_beside_the_training_time(tmp_path):
    from helpers import run_cli

    res = run_cli(
        ["train", "--set", "model.channels=[4]", "--set", "model.hidden=[16]", "--set", "train.epochs=1"], cwd=tmp_path
    )
    assert res.returncode == 0, res.stderr
    m = re.search(r"epochs run\s+1\s+in ([\d.]+)s training, ([\d.]+)s in all, on \S+", res.stdout)
    assert m, res.stdout
    training, wall = float(m.group(1)), float(m.group(2))
    (run,) = (tmp_path / "runs").iterdir()
    summary = json.loads((run / "summary.json").read_text())
    assert f"{summary['train_seconds']:.1f}" == m.group(1)
    assert wall > training  # start-up, data loading and the test pass are counted too


def test_on_a_terminal_advice_sits_below_the_rows_of_its_epoch_in_a_real_run(tmp_path, monkeypatch):
    """A real short run on a (forced) 12-line terminal: the advice of epoch 2 follows row 2 and
    precedes row 3; the title, the header and every row appear once."""
    from typer.testing import CliRunner

    import nntrain.cli.render as render
    from nntrain.cli.app import app

    buf = io.StringIO()
    monkeypatch.setattr(render, "console", terminal_console(buf, columns=WIDTH, lines=12, color_system="auto"))
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(
        app,
        ["train", "--set", "model.channels=[4]", "--set", "model.hidden=[16]", "--set", "train.epochs=12"]
        + ["--set", "device=cpu", "--set", "diagnostics.flat_drop=0.99", "--set", "diagnostics.early_epochs=2"],
    )
    assert res.exit_code == 0, res.output
    screen = replay(re.sub(r"\x1b\[[0-9;]*m", "", buf.getvalue()), 12)
    rows = {line.split()[0]: i for i, line in enumerate(screen) if re.match(r"\s*\d+/12 ", line)}
    assert list(rows) == [f"{e}/12" for e in range(1, 13)]
    assert (
        sum("train acc" in line for line in screen) == 1 and sum("train cnn on digits" in line for line in screen) == 1
    )
    (advice,) = [i for i, line in enumerate(screen) if line.startswith("advice (epoch 2)")]
    assert rows["2/12"] < advice < rows["3/12"]
