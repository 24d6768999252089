"""SIGTERM (and Ctrl-C) to a real `nntrain cv` process: it stops, keeps the finished folds, exits 130
and prints the command that resumes it; that command finishes the cv."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
TINY = {"device": "cpu", "model": {"name": "mlp", "hidden": [16]}, "train": {"epochs": 3, "batch_size": 128}}


def start(args: list[str], cwd: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "COLUMNS": "200"}
    cmd = [sys.executable, "-m", "nntrain", *args]
    return subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.parametrize(
    ("sig", "jobs"), [(signal.SIGTERM, 1), (signal.SIGINT, 1), (signal.SIGTERM, 2)], ids=["SIGTERM", "SIGINT", "jobs2"]
)
def test_a_signal_stops_cv_with_exit_130_and_the_hinted_command_finishes_it(tmp_path, sig, jobs):
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(yaml.safe_dump({**TINY, "output": {"runs_dir": "runs"}}))
    grid = ["--folds", "4", "--grid", "train.optimizer.lr=0.05,0.1"]
    p = start(["cv", "-c", str(cfg), *grid, "--jobs", str(jobs)], tmp_path)
    seen = []
    deadline = time.monotonic() + 300
    for line in p.stdout:  # plain lines (not a terminal): one per epoch, one per finished fold
        seen.append(line)
        if re.match(r"cv trial \d+ fold 1/4: best val", line):
            break
        assert time.monotonic() < deadline, "".join(seen)
    else:
        pytest.fail("cv ended before its first fold finished:\n" + "".join(seen) + p.stderr.read())
    p.send_signal(sig)
    out, err = p.communicate(timeout=120)
    assert p.returncode == 130, (out, err)
    assert "Traceback" not in err, err
    (cv_dir,) = (tmp_path / "runs").glob("cv-*")
    done = len(list(cv_dir.glob("combo-*/fold-*/result.json")))
    assert 1 <= done < 8 and not (cv_dir / "summary.json").exists()
    name = "SIGTERM" if sig == signal.SIGTERM else "SIGINT"
    assert f"{name}: cv stopped; {done} finished folds are saved in runs/{cv_dir.name}" in err, err
    from nntrain.report import build_report

    page = build_report(cv_dir, out=tmp_path / "interrupted.html").read_text()  # the report says the same
    assert f"{done} finished fold" in page and f"<code>nntrain cv --resume {cv_dir}</code>" in page
    hint = re.search(r"Resume with: (nntrain cv .*)$", err, re.M)
    assert hint and hint.group(1) == f"nntrain cv --resume runs/{cv_dir.name}" + (" --jobs 2" if jobs == 2 else ""), err
    r = start(shlex.split(hint.group(1))[1:], tmp_path)  # the hinted command, as typed
    out, err = r.communicate(timeout=600)
    assert r.returncode == 0, (out, err)
    assert f"resumed: {done} finished folds were skipped" in out
    summary = json.loads((cv_dir / "summary.json").read_text())
    assert len(summary["combos"]) == 2 and all(c["folds_run"] == 4 for c in summary["combos"])
    assert len(list(cv_dir.glob("combo-*/fold-*/result.json"))) >= 8


def test_the_resume_command_repeats_the_options_that_are_not_in_the_plan(tmp_path):
    from nntrain.cli.cv import resume_command
    from nntrain.cv.run import CvOptions

    d = tmp_path / "runs" / "cv-1 2"
    assert resume_command(d, CvOptions()) == f"nntrain cv --resume '{d}'"
    o = CvOptions(jobs=2, threads=3, refit=True, storage="sqlite:///x.db")  # no password: plan.json has the URL
    assert resume_command(d, o) == f"nntrain cv --resume '{d}' --jobs 2 --threads 3 --refit"
    o = CvOptions(executor="ray", address="10.0.0.1:6379", cpus_per_job=2.0, storage="postgresql://u:pw@h/db")
    assert resume_command(d, o) == (
        f"nntrain cv --resume '{d}' --storage 'postgresql://u:***@h/db' (its password in place of ***) "
        "--executor ray --address 10.0.0.1:6379 --cpus-per-job 2"
    )


@pytest.mark.parametrize("command", [["sanity"], ["lr-sweep", "--epochs", "2"]], ids=["sanity", "lr-sweep"])
def test_sigterm_stops_sanity_and_lr_sweep_with_exit_130_and_a_message(tmp_path, command):
    """Killed by the default action, they used to end with -15 and not a word; lr-sweep writes nothing before
    every rate has run, so an interrupted one leaves no directory."""
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({"device": "cpu", "output": {"runs_dir": "runs"}}))
    p = start([*command, "-c", str(cfg)], tmp_path)
    first = p.stdout.readline()  # sanity: the first check has started; lr-sweep: the first rate is done
    assert first, p.stderr.read()
    p.send_signal(signal.SIGTERM)
    out, err = p.communicate(timeout=120)
    assert p.returncode == 130, (first, out, err)
    assert err.strip() == "error: SIGTERM: interrupted", err
    assert not (tmp_path / "runs").exists() or not list((tmp_path / "runs").glob("*lr-sweep*"))
