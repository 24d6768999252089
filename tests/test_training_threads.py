"""The CPU thread policy (decisions, not timings) and the slowed-by-load note."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from nntrain.training.loadwatch import LoadWatch
from nntrain.training.threads import (
    SMALL_STEP_MACS,
    cgroup_cpu_limit,
    choose_threads,
    passive_waits,
    step_macs,
    usable_cores,
)


def test_small_work_gets_one_thread_whatever_the_cores_jobs_and_load():
    for cores in (1, 2, 16):
        for jobs in (1, 2, 5):
            for busy in (0.0, 0.5, 7.0, None):
                assert choose_threads("auto", macs=SMALL_STEP_MACS / 10, cores=cores, jobs=jobs, busy=busy) == 1


def test_large_work_gets_the_cores_the_other_processes_leave():
    big = SMALL_STEP_MACS * 50
    assert choose_threads("auto", macs=big, cores=16, jobs=1) == 16
    assert choose_threads("auto", macs=big, cores=16, jobs=3) == 5
    assert choose_threads("auto", macs=big, cores=2, jobs=4) == 1
    assert choose_threads("auto", macs=big, cores=16, busy=3.2) == 13
    assert choose_threads("auto", macs=big, cores=2, busy=1.0) == 1


def _stat(root, busy_jiffies: int, idle: int = 1000) -> None:
    # cpu  user nice system idle iowait irq softirq steal guest guest_nice
    (root / "stat").write_text(f"cpu  {busy_jiffies} 0 0 {idle} 0 0 0 0 0 0\ncpu0 0 0 0 0 0 0 0 0 0 0\n")


def test_other_load_is_the_machines_busy_time_minus_this_process(tmp_path, monkeypatch):
    import time

    import nntrain.training.threads as threads

    hz = os.sysconf("SC_CLK_TCK")
    clock = {"wall": 100.0, "cpu": 10.0}
    monkeypatch.setattr(time, "perf_counter", lambda: clock["wall"])
    monkeypatch.setattr(time, "process_time", lambda: clock["cpu"])
    _stat(tmp_path, 0)
    threads.mark_start(tmp_path)
    # 2 s later: the machine was busy 3 core-seconds, of which this process used 1 → 1 core of others
    clock["wall"], clock["cpu"] = 102.0, 11.0
    _stat(tmp_path, 3 * hz)
    assert threads.other_load(tmp_path) == pytest.approx(1.0)
    clock["cpu"] = 13.0  # all of it was this process: nobody else
    assert threads.other_load(tmp_path) == 0.0
    monkeypatch.setattr(threads, "_start", None)
    assert threads.other_load(tmp_path / "missing", sample=0) is None  # no /proc: unknown


def test_loadwatch_sends_the_rest_of_a_slowed_run_to_one_thread():
    calls = []
    c = Clock()
    w = LoadWatch(wall=lambda: c.wall, cpu=lambda: c.cpu, one_thread=lambda: calls.append(1) or True)
    w.on_fit_start({})
    for i, (wall, cpu) in enumerate([(1.0, 1.0), (1.0, 1.0), (4.0, 1.0), (4.0, 1.0)], start=1):
        c.wall += wall
        c.cpu += cpu
        w.on_epoch_end({"epoch": i})
        assert len(calls) == (0 if i < 3 else 1)  # once, at the first slowed epoch
    assert w.switched_at == 3 and "one thread after epoch 3" in w.verdict()
    quiet = LoadWatch(wall=lambda: c.wall, cpu=lambda: c.cpu, one_thread=lambda: calls.append(2) or True)
    quiet.on_fit_start({})
    for i in (1, 2, 3):
        c.wall += 1.0
        c.cpu += 1.0
        quiet.on_epoch_end({"epoch": i})
    assert 2 not in calls and quiet.switched_at is None


def test_a_number_is_taken_as_is():
    assert choose_threads(3, macs=1.0, cores=2) == 3


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


def test_passive_waits_respects_a_users_choice():
    env: dict[str, str] = {}
    passive_waits(env)
    assert env == {"OMP_WAIT_POLICY": "PASSIVE"}
    env = {"OMP_WAIT_POLICY": "ACTIVE"}
    passive_waits(env)
    assert env == {"OMP_WAIT_POLICY": "ACTIVE"}


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
