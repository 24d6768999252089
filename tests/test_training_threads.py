"""The CPU thread policy (decisions, not timings): it depends on the config, the work and the usable cores,
never on other processes' load; the slowed-by-load note; the same numbers on a quiet and a busy machine."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import REPO

from nntrain.training.loadwatch import LoadWatch
from nntrain.training.threads import (
    SMALL_STEP_MACS,
    cgroup_cpu_limit,
    choose_threads,
    set_wait_policy,
    step_macs,
    usable_cores,
)


def test_small_work_gets_one_thread_and_larger_work_the_usable_cores_divided_among_jobs():
    assert choose_threads("auto", macs=SMALL_STEP_MACS / 10, cores=16) == (1, None)
    assert choose_threads("auto", macs=SMALL_STEP_MACS * 10, cores=2) == (2, None)
    assert choose_threads("auto", macs=SMALL_STEP_MACS * 10, cores=8, jobs=4) == (2, None)
    assert choose_threads("auto", macs=SMALL_STEP_MACS * 10, cores=2, jobs=4) == (1, None)


def test_a_number_is_taken_as_is_up_to_the_usable_cores_and_capped_above_with_a_note():
    assert choose_threads(2, macs=1.0, cores=4) == (2, None)
    n, note = choose_threads(1000, macs=1.0, cores=2)
    assert n == 2 and "threads=1000" in note and "2 usable core" in note


def test_the_policy_reads_no_load():
    """Nothing in the module measures other processes (no /proc/stat, no load average)."""
    import nntrain.training.threads as t

    text = Path(t.__file__).read_text()
    assert "/proc" not in text and "getloadavg" not in text


def test_wait_policy_is_passive_unless_the_user_chose_one():
    env: dict[str, str] = {}
    set_wait_policy(env)
    assert env == {"OMP_WAIT_POLICY": "PASSIVE"}
    for mine in ({"OMP_WAIT_POLICY": "ACTIVE"}, {"GOMP_SPINCOUNT": "1000"}):
        env = dict(mine)
        set_wait_policy(env)
        assert env == mine  # the user's setting wins


def test_the_cli_sets_the_wait_policy_before_torch_is_imported():
    code = (
        "import os, sys\n"
        "sys.argv = ['nntrain', '--version']\n"
        "import nntrain.cli.app as app\n"
        "try:\n    app.main()\nexcept SystemExit:\n    pass\n"
        "print(os.environ.get('OMP_WAIT_POLICY'), 'torch' in sys.modules)\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")}
    env["PYTHONPATH"] = str(REPO)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert out.split()[-2:] == ["PASSIVE", "False"]
    env["OMP_WAIT_POLICY"] = "ACTIVE"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert out.split()[-2:] == ["ACTIVE", "False"]


def _metrics_without_seconds(run: Path) -> list[list[str]]:
    import csv

    with open(run / "metrics.csv", newline="") as f:
        rows = list(csv.reader(f))
    col = rows[0].index("seconds")
    return [r[:col] + r[col + 1 :] for r in rows]


@pytest.mark.slow
@pytest.mark.parametrize("model", [[], ["--set", "model.channels=[64,128]", "--set", "data.image_size=32"]])
def test_the_same_config_gives_the_same_metrics_quiet_and_beside_a_busy_process(tmp_path, model):
    """``threads: auto``, through the CLI: one run on a quiet machine, one beside a busy process on every core.
    Small work (digits: one thread) and larger work (the usable cores) alike."""
    from helpers import run_cli

    args = ["train", "--json", "--set", "train.epochs=3", "--set", f"output.runs_dir={tmp_path}", *model]
    if model:
        args += ["--set", "train.epochs=1", "--set", "data.test_fraction=0.5"]
    quiet = run_cli(args, cwd=tmp_path)
    assert quiet.returncode == 0, quiet.stderr
    spin = "while True: pass"
    busy = [subprocess.Popen([sys.executable, "-c", spin]) for _ in range(max(1, usable_cores()))]
    try:
        loaded = run_cli(args, cwd=tmp_path)
    finally:
        for p in busy:
            p.kill()
            p.wait()
    assert loaded.returncode == 0, loaded.stderr
    import json

    a, b = (json.loads(r.stdout) for r in (quiet, loaded))
    assert a["threads"] == b["threads"] == (1 if not model else usable_cores())
    assert _metrics_without_seconds(Path(a["run_dir"])) == _metrics_without_seconds(Path(b["run_dir"]))
    assert a["test_acc"] == b["test_acc"] and a["test_loss"] == b["test_loss"]


def test_digits_cnn_is_small_and_the_cifar_shaped_cnn_is_large():
    from nntrain.config import ModelConfig, load_config
    from nntrain.models import build_model

    cfg = load_config()
    digits = build_model(cfg.model, (1, 8, 8), 10)
    c1, c2 = cfg.model.channels  # 3x3 convs: c1·1·9 MACs per pixel over 8x8, c2·c1·9 over 4x4 after pooling
    per_sample = c1 * 9 * 64 + c2 * c1 * 9 * 16 + sum(m.weight.numel() for m in digits if hasattr(m, "in_features"))
    assert step_macs(digits, (1, 8, 8), 64) == 64 * per_sample
    assert step_macs(digits, (1, 8, 8), 64) < SMALL_STEP_MACS
    cifar = build_model(ModelConfig(channels=[64, 128, 256], hidden=[256]), (3, 32, 32), 10)
    assert step_macs(cifar, (3, 32, 32), 128) > 10 * SMALL_STEP_MACS
    assert cifar.training  # left as it was


def test_cgroup_quota_caps_the_cores(tmp_path):
    (tmp_path / "cpu.max").write_text("150000 100000\n")
    assert cgroup_cpu_limit(tmp_path) == 1.5
    assert usable_cores(tmp_path, environ={}) == min(2, len(os.sched_getaffinity(0)))
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert cgroup_cpu_limit(tmp_path) is None
    (tmp_path / "cpu.max").unlink()
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("50000")
    (tmp_path / "cpu" / "cpu.cfs_period_us").write_text("100000")
    assert cgroup_cpu_limit(tmp_path) == 0.5 and usable_cores(tmp_path, environ={}) == 1


def test_a_users_omp_num_threads_caps_the_cores(tmp_path):
    cores = usable_cores(tmp_path, environ={})
    assert usable_cores(tmp_path, environ={"OMP_NUM_THREADS": "1"}) == 1
    assert usable_cores(tmp_path, environ={"OMP_NUM_THREADS": "64"}) == cores  # a cap, never more cores
    assert usable_cores(tmp_path, environ={"OMP_NUM_THREADS": "x"}) == cores


class Clock:
    def __init__(self):
        self.wall = self.cpu = 0.0


def watched(epochs: list[tuple[float, float]]) -> LoadWatch:
    """A LoadWatch fed epochs of (wall seconds, CPU seconds)."""
    c = Clock()
    w = LoadWatch(wall=lambda: c.wall, cpu=lambda: c.cpu)
    w.on_fit_start({})
    for i, (wall, cpu) in enumerate(epochs, start=1):
        c.wall += wall
        c.cpu += cpu
        w.on_epoch_end({"epoch": i})
    return w


def test_loadwatch_fires_when_wall_time_grows_without_cpu_time():
    w = watched([(1.0, 1.0), (1.0, 1.0), (4.0, 1.05), (3.0, 1.0)])
    assert [e.epoch for e in w.slowed()] == [3, 4]
    assert "epoch(s) 3, 4" in w.verdict() and "4.0x" in w.verdict()


def test_loadwatch_is_quiet_on_steady_epochs_and_on_epochs_that_do_more_work():
    assert watched([(1.0, 1.0), (1.1, 1.1), (0.9, 0.9)]).verdict() is None
    assert watched([(1.0, 1.0), (3.0, 3.0)]).verdict() is None  # more work: more CPU time too
    assert watched([(1.0, 1.0)]).verdict() is None  # one epoch: nothing to compare with


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="needs Linux CPU affinity")
def test_loadwatch_fires_on_a_real_run_slowed_by_busy_processes_on_its_core(tiny_cfg, one_torch_thread):
    """A real short run pinned to one core; from epoch 3 on, two busy processes share that core."""
    from nntrain.pipeline.setup import setup
    from nntrain.training.engine import fit

    core = min(os.sched_getaffinity(0))
    before = os.sched_getaffinity(0)
    busy: list[subprocess.Popen] = []
    spin = f"import os; os.sched_setaffinity(0, {{{core}}})\nwhile True: pass"

    class Load:
        def on_epoch_end(self, record):
            if record["epoch"] == 2:
                busy.extend(subprocess.Popen([sys.executable, "-c", spin]) for _ in range(2))

    cfg = tiny_cfg("train.epochs=4", "model.channels=[16]", "model.hidden=[64]", "train.batch_size=32")
    s = setup(cfg)
    watch = LoadWatch()
    os.sched_setaffinity(0, {core})
    try:
        fit(s.new_model(), s.data, cfg.train, seed=0, device=s.device, callbacks=[watch, Load()])
    finally:
        os.sched_setaffinity(0, before)
        for p in busy:
            p.kill()
            p.wait()
    assert {3, 4} <= {e.epoch for e in watch.slowed()}, watch.epochs
    assert watch.verdict() is not None


@pytest.mark.parametrize("setting, expected", [("auto", 1), ("2", 2)])
def test_cv_fold_jobs_run_with_the_configured_threads(tiny_cfg, tmp_path, monkeypatch, setting, expected):
    """cv: one thread per fold job by default (the same numbers whatever --jobs is); `threads: N`
    in the config sizes every fold job alike."""
    import torch
    from helpers import cli

    import nntrain.cv.search as search

    seen = []
    real = search.run_fold

    def probe(job, report=None):
        seen.append(torch.get_num_threads())
        return real(job, report)

    monkeypatch.setattr(search, "run_fold", probe)
    res = cli(
        "cv", "--folds", "2", "--set", "device=cpu", "--set", "model.channels=[4]", "--set", "model.hidden=[8]",
        "--set", "train.epochs=1", "--set", f"output.runs_dir={tmp_path / 'runs'}", "--set", f"threads={setting}",
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    assert seen == [expected, expected]
