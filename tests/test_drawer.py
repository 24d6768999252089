"""nntrain train draws its pictures in a helper process (nntrain/pipeline/drawer.py): the same bytes
as drawn in the main process; whatever goes wrong with the helper, the pictures are drawn in the
main process (and its error is the one reported); the helper never outlives nntrain, ignores the
terminal's Ctrl-C, and the main process of a run never imports matplotlib."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from helpers import REPO, cli, train_main_probe

from nntrain.errors import NntrainError
from nntrain.pipeline import drawer
from nntrain.pipeline.drawer import PictureWorker, draw
from nntrain.plots import Curves

PNG = b"\x89PNG\r\n\x1a\n"


def jobs(d):
    records = [
        {"epoch": e, "train_loss": 2.3 / e, "val_loss": 2.4 / e, "train_acc": 1 - 0.5 / e, "val_acc": 1 - 0.6 / e,
         "lr": 0.05 * (1 - e / 6), "seconds": 0.1}
        for e in range(1, 6)
    ]  # fmt: skip
    records[2]["val_loss"] = math.nan  # NaN crosses the pipe as in memory
    steps = [2.3 * 0.8**i for i in range(40)]
    cm = np.array([[5, 1, 0], [0, 6, 1], [2, 0, 4]])
    return [
        ("curves", str(d / "curves.png"), Curves("run-x", records, steps, test_acc=0.75)),
        ("confusion", str(d / "confusion.png"), cm, ["cat", "dog", "bird"], "test confusion"),
    ]


def in_process(d):
    d.mkdir()
    for job in jobs(d):
        draw(job)
    return {p.name: p.read_bytes() for p in d.iterdir()}


def children(pid: int) -> list[int]:
    return [int(c) for c in open(f"/proc/{pid}/task/{pid}/children").read().split()]


def twin_of(pid: int) -> int:
    """The helper's forked twin, once matplotlib is set up (polled)."""
    for _ in range(600):
        if kids := children(pid):
            return kids[0]
        time.sleep(0.05)
    pytest.fail("the helper forked no twin")


def test_the_helpers_draw_the_same_bytes_as_the_main_process(tmp_path, monkeypatch):
    expected = in_process(tmp_path / "here")
    (tmp_path / "helper").mkdir()
    monkeypatch.setattr(drawer, "draw", lambda job: pytest.fail(f"drawn in the main process: {job[0]}"))
    with PictureWorker() as w:
        w.start()
        twin = twin_of(w.pid)  # two drawing processes: one picture each
        assert os.getpgid(twin) == w.pid
        for job in jobs(tmp_path / "helper"):
            w.submit(job)
        assert w.finish() == 2  # both drawn by the helpers
    got = {p.name: p.read_bytes() for p in (tmp_path / "helper").iterdir()}
    assert got == expected and all(b.startswith(PNG) for b in got.values())


def test_a_dead_helper_is_replaced_by_the_main_process(tmp_path):
    expected = in_process(tmp_path / "here")
    (tmp_path / "helper").mkdir()
    with PictureWorker() as w:
        w.start()
        os.killpg(w.pid, signal.SIGKILL)  # the helper (and its twin, had it forked one yet)
        for job in jobs(tmp_path / "helper"):
            w.submit(job)
        assert w.finish() == 0
    assert {p.name: p.read_bytes() for p in (tmp_path / "helper").iterdir()} == expected


def test_when_one_helper_dies_its_twin_still_draws_its_picture(tmp_path):
    expected = in_process(tmp_path / "here")
    (tmp_path / "helper").mkdir()
    with PictureWorker() as w:
        w.start()
        twin = twin_of(w.pid)
        os.kill(w.pid, signal.SIGKILL)  # the first helper only: the curves go to it, the confusion matrix to the twin
        for job in jobs(tmp_path / "helper"):
            w.submit(job)
        assert w.finish() == 1  # (the twin keeps none of the dead helper's pipes open: no wait for a timeout)
        assert not gone(twin)
    assert {p.name: p.read_bytes() for p in (tmp_path / "helper").iterdir()} == expected


def test_a_helper_that_cannot_start_is_replaced_by_the_main_process(tmp_path, monkeypatch):
    def no_processes(*a, **k):
        raise OSError(11, "Resource temporarily unavailable")

    monkeypatch.setattr(drawer.subprocess, "Popen", no_processes)
    with PictureWorker() as w:
        w.start()
        assert w.pid is None
        for job in jobs(tmp_path):
            w.submit(job)
        assert w.finish() == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["confusion.png", "curves.png"]


def test_a_picture_that_fails_in_the_helper_fails_in_the_main_process_with_its_message(tmp_path):
    missing = tmp_path / "gone"  # its folder does not exist: the write fails in both processes
    with PictureWorker() as w:
        w.start()
        w.submit(jobs(missing)[1])
        with pytest.raises(NntrainError, match=r"cannot write '.*gone/confusion\.png'.*free disk space"):
            w.finish()
    assert list(tmp_path.iterdir()) == []  # no temporary file left behind


def ignores_sigint(pid: int) -> bool:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("SigIgn:"):
            return bool(int(line.split()[1], 16) & (1 << (signal.SIGINT - 1)))
    return False


def test_the_helpers_ignore_ctrl_c_and_run_in_their_own_session(tmp_path):
    with PictureWorker() as w:
        w.start()
        twin = twin_of(w.pid)
        assert os.getsid(w.pid) == os.getsid(twin) != os.getsid(0)  # the terminal's Ctrl-C does not reach them
        assert ignores_sigint(w.pid) and ignores_sigint(twin)
        os.killpg(w.pid, signal.SIGINT)  # nor does one sent to them directly
        for job in jobs(tmp_path):
            w.submit(job)
        assert w.finish() == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["confusion.png", "curves.png"]


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return open(f"/proc/{pid}/stat").read().split(") ")[1].startswith("Z")  # a zombie: ended


def ends(pid: int) -> bool:
    """``pid`` ends within 10 s (a SIGKILL to a process group is delivered asynchronously)."""
    for _ in range(200):
        if gone(pid):
            return True
        time.sleep(0.05)
    return False


def test_closing_ends_the_helpers(tmp_path):
    w = PictureWorker().start()
    proc = w._proc
    w.close()  # still importing matplotlib, nothing sent: ended at once
    assert proc.returncode == -signal.SIGKILL
    w = PictureWorker().start()
    proc, twin = w._proc, twin_of(w.pid)
    for job in jobs(tmp_path):
        w.submit(job)
    w.close()  # pictures sent and not waited for: they are written before the helpers end
    assert proc.returncode == 0 and gone(twin)  # (the helper waited for its twin)
    assert all((tmp_path / n).read_bytes().startswith(PNG) for n in ("curves.png", "confusion.png"))
    w = PictureWorker().start()
    proc, twin = w._proc, twin_of(w.pid)
    w.close()  # set up and idle: both ended at once
    assert proc.returncode == -signal.SIGKILL and ends(twin)


def test_the_helpers_end_when_nntrain_is_killed(tmp_path):
    code = (
        "import sys, time\n"
        "from nntrain.pipeline.drawer import PictureWorker\n"
        "w = PictureWorker().start()\n"
        "print(w.pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    env = dict(os.environ, PYTHONPATH=str(REPO))
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=env)
    helper = int(parent.stdout.readline())
    twin = twin_of(helper)
    parent.kill()
    parent.wait()
    if not (ends(helper) and ends(twin)):  # their input pipes closed with nntrain: they exit once they read the end
        os.killpg(helper, signal.SIGKILL)
        pytest.fail("the helpers outlived the nntrain process that started them")


def test_a_train_run_draws_in_the_helper_and_never_imports_matplotlib(tmp_path):
    summary, probe = train_main_probe(tmp_path, "'matplotlib' in sys.modules")
    assert probe == "False"
    run = tmp_path / summary["run_dir"].split("/")[-1]
    for name in ("curves.png", "confusion.png"):
        assert (run / name).read_bytes().startswith(PNG)
    assert "data:image/png;base64" in (run / "report.html").read_text()


@pytest.mark.usefixtures("one_torch_thread")
def test_an_error_while_drawing_surfaces_and_keeps_the_result(tmp_path, monkeypatch):
    import nntrain.plots as plots

    def broken(*a, **k):
        raise RuntimeError("the confusion matrix cannot be drawn")

    monkeypatch.setattr(drawer.PictureWorker, "start", lambda self: self)  # no helper: drawn in this process
    monkeypatch.setattr(plots, "confusion_figure", broken)
    r = cli(
        "train", "--set", f"output.runs_dir={tmp_path}", "--set", "model.channels=[4]",
        "--set", "model.hidden=[16]", "--set", "train.epochs=2",
    )  # fmt: skip
    assert r.exit_code != 0
    assert "the confusion matrix cannot be drawn" in (str(r.exception) + r.output)
    (run,) = tmp_path.iterdir()
    assert json.loads((run / "summary.json").read_text())["epochs_run"] == 2  # the training's result is kept
    assert (run / "curves.png").is_file() and not (run / "report.html").exists()


def test_the_helpers_cpu_time_is_not_counted_as_other_load(tmp_path, monkeypatch):
    """The helper's start-up (matplotlib, the warm-up pictures) runs while nntrain measures the load
    that decides its threads: its session is registered as nntrain's own, and its CPU time is found there."""
    import nntrain.training.threads as threads

    monkeypatch.setattr(threads, "_own_sessions", [])
    with PictureWorker() as pictures:
        pictures.start()
        assert threads._own_sessions == [pictures.pid]
        for job in jobs(tmp_path):
            pictures.submit(job)
        assert pictures.finish() == 2  # drawn there: its imports and warm-up are done
        assert threads._sessions_cpu(threads._own_sessions) > 0.2  # matplotlib's import alone takes more
