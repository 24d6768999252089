"""The default path is one plain process: `train`, `sanity`, `eval` and `predict` start no other process
(an audit hook sees every process creation Python makes) and never import scikit-learn.

Two libraries run a short command while they import, whoever imports them, and the hook sees those too:
torch's CUDA build looks up libdl with ``ldconfig -p`` (``ctypes.util.find_library``), and matplotlib
lists the system fonts with ``fc-list`` when it builds its font cache (a fresh cache here). They are
allowed by name, and only when the call came from a library's own code, not from nntrain's."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from helpers import REPO, TINY_TRAIN

# every way Python starts a process (https://docs.python.org/3/library/audit_events.html)
PROBE = """
import atexit, json, site, sys, sysconfig, traceback
started = []
STDLIB = sysconfig.get_paths()["stdlib"]
# an interpreter without a venv keeps its site-packages inside the standard library's folder
SITE = tuple({sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"], *site.getsitepackages()})
EVENTS = {"fork_exec", "subprocess.Popen", "os.fork", "os.forkpty", "os.posix_spawn", "os.spawn", "os.exec",
          "os.system", "pty.spawn", "os.startfile"}
LIBRARY_LOOKUPS = {"/sbin/ldconfig", "fc-list"}
import nntrain, os
PACKAGE = os.path.dirname(nntrain.__file__) + os.sep  # the clone's own path may contain "nntrain" too

def hook(event, args):
    if event not in EVENTS:
        return
    # the innermost frame outside the standard library made the call (import machinery is "<frozen ...>")
    caller = next(f.filename for f in reversed(traceback.extract_stack()[:-1])
                  if f.filename.startswith(SITE) or not f.filename.startswith((STDLIB, "<")))
    command = str(args[0]) if event == "subprocess.Popen" else str(args[1][0]) if event == "fork_exec" else ""
    if caller.startswith(PACKAGE) or command not in LIBRARY_LOOKUPS:
        started.append([event, repr(args)[:200]])

sys.addaudithook(hook)
# multiprocessing starts its processes through _posixsubprocess.fork_exec, which raises no audit event
import _posixsubprocess
_fork_exec = _posixsubprocess.fork_exec
def fork_exec(*args, **kwargs):
    hook("fork_exec", ("_posixsubprocess",) + tuple(args[:1]))
    return _fork_exec(*args, **kwargs)
_posixsubprocess.fork_exec = fork_exec
atexit.register(lambda: print("PROBE " + json.dumps({"started": started, "sklearn": "sklearn" in sys.modules})))
sys.argv = ["nntrain"] + sys.argv[1:]
from nntrain.cli.app import main
main()
"""


def probe(tmp_path, *args: str) -> tuple[subprocess.CompletedProcess, dict]:
    env = dict(os.environ, PYTHONPATH=str(REPO), MPLCONFIGDIR=str(tmp_path / "mpl"))  # a fresh font cache too
    out = subprocess.run(
        [sys.executable, "-c", PROBE, *args], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600
    )
    line = [x for x in out.stdout.splitlines() if x.startswith("PROBE ")]
    assert line, out.stdout + out.stderr
    return out, json.loads(line[-1][len("PROBE ") :])


@pytest.mark.slow
def test_train_sanity_eval_and_predict_start_no_process_and_import_no_scikit_learn(tmp_path):
    runs = tmp_path / "runs"
    out, seen = probe(tmp_path, "train", "--json", "--set", f"output.runs_dir={runs}", *TINY_TRAIN)
    assert out.returncode == 0, out.stderr
    assert seen == {"started": [], "sklearn": False}
    run_dir = json.loads(out.stdout.split("\nPROBE ")[0])["run_dir"]
    assert os.path.isfile(os.path.join(run_dir, "curves.png")) and os.path.isfile(os.path.join(run_dir, "report.html"))

    out, seen = probe(tmp_path, "sanity", *TINY_TRAIN)
    assert out.returncode in (0, 1), out.stderr  # a verdict either way; the process rule is what is tested
    assert seen == {"started": [], "sklearn": False}

    out, seen = probe(tmp_path, "eval", run_dir)
    assert out.returncode == 0, out.stderr
    assert seen == {"started": [], "sklearn": False}

    import numpy as np

    np.savez(tmp_path / "x.npz", x=np.zeros((3, 8, 8), dtype=np.float32))
    out, seen = probe(tmp_path, "predict", run_dir, str(tmp_path / "x.npz"))
    assert out.returncode == 0, out.stderr
    assert seen == {"started": [], "sklearn": False}


def test_the_probe_sees_a_process_start(tmp_path):
    """The audit hook is not blind: a command that does start a process is seen (cv --jobs 2's workers)."""
    out, seen = probe(
        tmp_path, "cv", "--folds", "2", "--jobs", "2", "--set", f"output.runs_dir={tmp_path / 'runs'}", *TINY_TRAIN
    )
    assert out.returncode == 0, out.stderr
    assert seen["started"], "cv --jobs 2 starts worker processes"
