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
from helpers import REPO, cli

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


def test_the_helper_draws_the_same_bytes_as_the_main_process(tmp_path, monkeypatch):
    expected = in_process(tmp_path / "here")
    (tmp_path / "helper").mkdir()
    monkeypatch.setattr(drawer, "draw", lambda job: pytest.fail(f"drawn in the main process: {job[0]}"))
    with PictureWorker() as w:
        w.start()
        assert w.pid is not None
        for job in jobs(tmp_path / "helper"):
            w.submit(job)
        assert w.finish() == 2  # both drawn by the helper
    got = {p.name: p.read_bytes() for p in (tmp_path / "helper").iterdir()}
    assert got == expected and all(b.startswith(PNG) for b in got.values())


def test_a_dead_helper_is_replaced_by_the_main_process(tmp_path):
    expected = in_process(tmp_path / "here")
    (tmp_path / "helper").mkdir()
    with PictureWorker() as w:
        w.start()
        os.kill(w.pid, signal.SIGKILL)
        for job in jobs(tmp_path / "helper"):
            w.submit(job)
        assert w.finish() == 0
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


def test_the_helper_ignores_ctrl_c_and_runs_in_its_own_session(tmp_path):
    with PictureWorker() as w:
        w.start()
        assert os.getsid(w.pid) != os.getsid(0)  # the terminal's Ctrl-C does not reach it
        for _ in range(300):
            if ignores_sigint(w.pid):
                break
            time.sleep(0.05)
        os.kill(w.pid, signal.SIGINT)  # nor does one sent to it directly
        for job in jobs(tmp_path):
            w.submit(job)
        assert w.finish() == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["confusion.png", "curves.png"]


def test_closing_ends_the_helper(tmp_path):
    w = PictureWorker().start()
    proc = w._proc
    w.close()  # still importing matplotlib, nothing sent: ended at once
    assert proc.returncode is not None
    w = PictureWorker().start()
    proc = w._proc
    w.submit(jobs(tmp_path)[0])
    w.close()  # a picture sent and not waited for: it is written before the helper ends
    assert proc.returncode == 0 and (tmp_path / "curves.png").read_bytes().startswith(PNG)


def test_the_helper_ends_when_nntrain_is_killed(tmp_path):
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
    parent.kill()
    parent.wait()
    for _ in range(600):  # its input pipe closed with nntrain: it exits once it reads the end
        try:
            os.kill(helper, 0)
        except ProcessLookupError:
            break
        try:
            if os.waitpid(helper, os.WNOHANG)[0]:  # (our zombie child, when the test runs as pid 1's heir)
                break
        except ChildProcessError:
            pass
        time.sleep(0.1)
    else:
        os.kill(helper, signal.SIGKILL)
        pytest.fail("the helper outlived the nntrain process that started it")


def test_a_train_run_draws_in_the_helper_and_never_imports_matplotlib(tmp_path):
    code = (
        "import sys\n"
        "from nntrain.cli.app import main\n"
        "sys.argv = ['nntrain'] + sys.argv[1:]\n"
        "try:\n"
        "    main()\n"
        "except SystemExit as e:\n"
        "    print('exit', e.code, sorted(m for m in ('matplotlib', 'nntrain.report.warm') if m in sys.modules))\n"
    )
    args = ["train", "--json", "--set", f"output.runs_dir={tmp_path}", "--set", "model.channels=[4]",
            "--set", "model.hidden=[16]", "--set", "train.epochs=2", "--set", "threads=1"]  # fmt: skip
    env = dict(os.environ, PYTHONPATH=str(REPO))
    out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    summary, last = out.stdout.rsplit("\n", 2)[0], out.stdout.strip().splitlines()[-1]
    assert last == "exit 0 []"
    run = tmp_path / json.loads(summary)["run_dir"].split("/")[-1]
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
