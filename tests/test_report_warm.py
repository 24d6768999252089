"""nntrain train gets its pictures' and report's imports ready on a background thread while it trains
(nntrain/report/warm.py): it runs off the main thread during fit, is joined before the pictures are
drawn, its failure changes nothing, and an error while drawing still surfaces."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time

import pytest
from helpers import REPO, cli


def test_warm_up_in_a_fresh_process_imports_and_compiles_what_the_end_of_a_run_needs():
    code = (
        "import sys\n"
        "from nntrain.report.warm import warm_up\n"
        "before = {m: m in sys.modules for m in ('matplotlib.backends.backend_agg', 'jinja2', 'sklearn.metrics')}\n"
        "warm_up()\n"
        "from nntrain.report.html import environment\n"
        "names = sorted(key[1] for key in environment().cache.keys())\n"
        "after = {m: m in sys.modules for m in before}\n"
        "print(before, after, names)\n"
    )
    env = {"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == (
        "{'matplotlib.backends.backend_agg': False, 'jinja2': False, 'sklearn.metrics': False} "
        "{'matplotlib.backends.backend_agg': True, 'jinja2': True, 'sklearn.metrics': True} "
        "['base.html.j2', 'run.html.j2']"
    )


def test_fit_end_waits_for_the_warm_up_thread(monkeypatch):
    import nntrain.report.warm as warm

    done = []
    monkeypatch.setattr(warm, "warm_up", lambda: (time.sleep(0.3), done.append(threading.current_thread().name)))
    w = warm.WarmUp()
    w.on_fit_start({})
    assert done == []  # started, not finished: it runs beside the caller
    w.on_fit_end(None)
    assert done == ["nntrain-warm-up"]


def test_a_failing_warm_up_is_ignored(monkeypatch):
    import nntrain.report.warm as warm

    calls = []

    def broken():
        calls.append(1)
        raise ImportError("no matplotlib here")

    monkeypatch.setattr(warm, "warm_up", broken)
    w = warm.WarmUp()
    w.on_fit_start({})
    w.on_fit_end(None)  # no exception: the real drawing after training reports any error
    assert calls == [1]


@pytest.mark.usefixtures("one_torch_thread")
def test_train_warms_up_once_off_the_main_thread(tmp_path, monkeypatch):
    import nntrain.report.warm as warm

    seen = []
    real_warm_up = warm.warm_up

    def recording_warm_up():
        seen.append(threading.current_thread() is threading.main_thread())
        real_warm_up()

    monkeypatch.setattr(warm, "warm_up", recording_warm_up)
    r = cli(
        "train", "--json", "--set", f"output.runs_dir={tmp_path}", "--set", "model.channels=[4]",
        "--set", "model.hidden=[16]", "--set", "train.epochs=2",
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    assert seen == [False]  # once, on another thread
    out = json.loads(r.stdout)
    run = tmp_path / out["run_dir"].split("/")[-1]
    assert (run / "report.html").is_file() and (run / "curves.png").is_file() and (run / "confusion.png").is_file()


@pytest.mark.usefixtures("one_torch_thread")
def test_an_error_while_drawing_still_surfaces(tmp_path, monkeypatch):
    import nntrain.pipeline.artifacts as artifacts

    def broken(*a, **k):
        raise RuntimeError("the confusion matrix cannot be drawn")

    monkeypatch.setattr(artifacts, "confusion_figure", broken)
    r = cli(
        "train", "--set", f"output.runs_dir={tmp_path}", "--set", "model.channels=[4]",
        "--set", "model.hidden=[16]", "--set", "train.epochs=2",
    )  # fmt: skip
    assert r.exit_code != 0
    assert "the confusion matrix cannot be drawn" in (str(r.exception) + r.output)
    (run,) = tmp_path.iterdir()
    assert not (run / "summary.json").exists() and not (run / "report.html").exists()
