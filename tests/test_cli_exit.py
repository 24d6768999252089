"""The quick exit after a command: the same status, output and cleanups as a normal exit, without the
interpreter's teardown once torch is loaded."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from helpers import REPO


def run(body: str, *args: str) -> subprocess.CompletedProcess:
    """``body`` in a fresh interpreter, after a probe that says on stderr whether the interpreter's
    teardown ran (a module-level object's finalizer prints "teardown")."""
    code = (
        "import atexit, os, sys, threading, time\n"
        "class Probe:\n"
        "    def __del__(self, write=os.write):\n"
        "        write(2, b'teardown\\n')\n"
        "probe = Probe()\n"
        "from nntrain.cli.startup import quick_exit\n" + body
    )
    env = dict(os.environ, PYTHONPATH=str(REPO))
    env.pop("PYTHONUNBUFFERED", None)  # standard output block-buffered, as into a file or a pipe
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, timeout=120)


@pytest.mark.parametrize("code, status, stderr", [(0, 0, ""), (None, 0, ""), (3, 3, ""), ("bad input", 1, "bad input")])
def test_quick_exit_gives_the_status_output_and_atexit_handlers_of_a_normal_exit(tmp_path, code, status, stderr):
    marker = tmp_path / "atexit.txt"
    out = run(
        "import torch\n"
        f"atexit.register(lambda: open({str(marker)!r}, 'w').write('ran'))\n"
        "sys.stdout.write('no newline, still buffered')\n"
        f"quick_exit({code!r})\n"
        "print('not reached')\n"
    )
    assert out.returncode == status
    assert out.stdout == "no newline, still buffered"  # flushed
    assert marker.read_text() == "ran"
    assert out.stderr.strip() == stderr  # no "teardown": the interpreter's shutdown was skipped


def test_quick_exit_falls_back_to_a_normal_exit_without_torch_or_with_a_running_thread(tmp_path):
    out = run("quick_exit(4)\n")  # torch never loaded: nothing to gain
    assert out.returncode == 4 and "teardown" in out.stderr
    marker = tmp_path / "thread.txt"
    out = run(
        "import torch\n"
        f"def work():\n    time.sleep(0.5)\n    open({str(marker)!r}, 'w').write('finished')\n"
        "threading.Thread(target=work).start()\n"
        "quick_exit(5)\n"
    )
    assert out.returncode == 5 and "teardown" in out.stderr
    assert marker.read_text() == "finished"  # a normal exit waits for it


def test_nntrain_commands_exit_quickly_with_their_status_and_output(tmp_path):
    """A train run leaves no thread behind (the checkpoint writer ends with fit), so it exits quickly;
    a bad config still gives its message and status 2."""
    out = run(
        "sys.argv = ['nntrain'] + sys.argv[1:]\n"
        "from nntrain.cli.app import main\n"
        "main()\n",
        "train", "--set", f"output.runs_dir={tmp_path}", "--set", "model.channels=[4]",
        "--set", "model.hidden=[8]", "--set", "train.epochs=1", "--set", "threads=1",
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "teardown" not in out.stderr and "report " in out.stdout
    bad = "sys.argv = ['nntrain', 'train', '--set', 'train.epochs=ten']\nfrom nntrain.cli.app import main\nmain()\n"
    out = run(bad)
    assert out.returncode == 2 and "train.epochs" in out.stderr
