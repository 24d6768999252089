"""The CPU thread policy (decisions, not timings) and the slowed-by-load note."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from nntrain.training.loadwatch import LoadWatch
from nntrain.training.threads import (
    SMALL_STEP_MACS,
    SPIN_COUNT,
    cgroup_cpu_limit,
    choose_threads,
    set_wait_policy,
    step_macs,
    torch_uses_libgomp,
    usable_cores,
)


def test_small_work_gets_one_thread_where_waiting_threads_do_not_spin_briefly():
    for cores in (1, 2, 16):
        for jobs in (1, 2, 5):
            for busy in (0.0, 0.5, 7.0, None):
                assert choose_threads("auto", macs=SMALL_STEP_MACS / 10, cores=cores, jobs=jobs, busy=busy) == 1


def test_small_work_gets_two_threads_on_a_quiet_machine_whose_threads_spin_briefly():
    def small(cores: int, busy: float | None, jobs: int = 1) -> int:
        return choose_threads("auto", macs=SMALL_STEP_MACS / 10, cores=cores, jobs=jobs, busy=busy, short_spin=True)

    assert small(2, 0.0) == 2 and small(2, 0.2) == 2
    assert small(16, 0.0) == 2  # more threads than two cost small steps more in barriers than they gain
    assert small(1, 0.0) == 1  # one core
    assert small(2, 0.3) == 1 and small(16, 0.3) == 1  # a core partly busy elsewhere would stall the barriers
    assert small(2, None) == 1  # load unknown: counted as loaded
    assert small(2, 0.0, jobs=2) == 1 and small(4, 0.0, jobs=2) == 2  # torchrun ranks share the cores
    big = SMALL_STEP_MACS * 50
    assert choose_threads("auto", macs=big, cores=16, busy=3.2, short_spin=True) == 13  # large work: as before


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


def test_wait_policy_spins_briefly_with_libgomp_and_yields_at_once_otherwise_and_respects_a_users_choice():
    env: dict[str, str] = {}
    set_wait_policy(env, libgomp=True)
    assert env == {"GOMP_SPINCOUNT": str(SPIN_COUNT)}
    env = {}
    set_wait_policy(env, libgomp=False)  # (GOMP_SPINCOUNT means nothing to another OpenMP runtime)
    assert env == {"OMP_WAIT_POLICY": "PASSIVE"}
    for users in ({"OMP_WAIT_POLICY": "ACTIVE"}, {"GOMP_SPINCOUNT": "5"}):
        env = dict(users)
        set_wait_policy(env, libgomp=True)
        assert env == users


def test_torch_uses_libgomp_says_whether_torch_loaded_gnu_openmp():
    """Found from torch's files before it is imported; the oracle: the libraries torch did load."""
    import torch  # noqa: F401

    maps = Path("/proc/self/maps")
    if not maps.is_file():
        pytest.skip("needs /proc/self/maps")
    assert torch_uses_libgomp() == ("libgomp" in maps.read_text())


def test_the_cli_sets_the_wait_policy_before_torch_is_imported():
    code = (
        "import os, sys\n"
        "sys.argv = ['nntrain', '--version']\n"
        "import nntrain.cli.app as app, nntrain.training.threads as t\n"
        "try:\n    app.main()\nexcept SystemExit:\n    pass\n"
        "print(os.environ.get('GOMP_SPINCOUNT'), os.environ.get('OMP_WAIT_POLICY'), t.short_spin_waits(),"
        " 'torch' in sys.modules)\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    spin, policy, short, torch_loaded = out.split()[-4:]
    assert torch_loaded == "False"
    if torch_uses_libgomp():
        assert (spin, policy, short) == (str(SPIN_COUNT), "None", "True")
    else:
        assert (spin, policy, short) == ("None", "PASSIVE", "False")
    env["OMP_WAIT_POLICY"] = "PASSIVE"  # the user's choice: kept, and small work stays on one thread
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert out.split()[-4:] == ["None", "PASSIVE", "False", "False"]


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


def _proc_stat(root, pid: int, session: int, utime: int, stime: int) -> None:
    (root / str(pid)).mkdir()
    # pid (comm) state ppid pgrp session tty_nr tpgid flags minflt cminflt majflt cmajflt utime stime ...
    fields = f"S 1 {session} {session} 0 -1 0 0 0 0 0 {utime} {stime} 0 0"
    (root / str(pid) / "stat").write_text(f"{pid} (py thon) {fields}\n")


def test_other_load_leaves_out_this_commands_helper_processes(tmp_path, monkeypatch):
    import time

    import nntrain.training.threads as threads

    hz = os.sysconf("SC_CLK_TCK")
    clock = {"wall": 100.0, "cpu": 10.0}
    monkeypatch.setattr(time, "perf_counter", lambda: clock["wall"])
    monkeypatch.setattr(time, "process_time", lambda: clock["cpu"])
    monkeypatch.setattr(threads, "_own_sessions", [])
    _stat(tmp_path, 0)
    threads.mark_start(tmp_path)
    # 2 s later the machine was busy 3 core-seconds: 1 this process, 1.5 its helper and the helper's twin
    # (session 500), 0.5 somebody else (session 77)
    clock["wall"], clock["cpu"] = 102.0, 11.0
    _stat(tmp_path, 3 * hz)
    _proc_stat(tmp_path, 500, 500, hz, hz // 4)
    _proc_stat(tmp_path, 501, 500, hz // 4, 0)
    _proc_stat(tmp_path, 77, 77, hz // 2, 0)
    assert threads.other_load(tmp_path) == pytest.approx(1.0)  # 2 core-seconds of others in 2 s
    threads.count_as_own(500)
    assert threads.other_load(tmp_path) == pytest.approx(0.25)  # only session 77's 0.5 core-seconds


def test_helpers_cpu_time_is_what_the_helper_and_its_child_used():
    """A helper in its own session forks a child; both burn CPU and report their own process_time."""
    import time

    from nntrain.training.threads import _sessions_cpu

    if not Path("/proc/self/stat").is_file():
        pytest.skip("needs /proc")
    code = (
        "import os, sys, time\n"
        "r, w = os.pipe()\n"
        "pid = os.fork()\n"
        "t = time.process_time()\n"
        "while time.process_time() - t < 0.3: pass\n"
        "if pid == 0:\n    os.write(w, f'{time.process_time()}\\n'.encode())\n    time.sleep(60)\n"
        "print(time.process_time(), os.read(r, 100).decode().strip(), flush=True)\n"
        "time.sleep(60)\n"
    )
    helper = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        own, child = map(float, helper.stdout.readline().split())
        time.sleep(0.05)  # (the kernel's counters are per tick)
        assert _sessions_cpu([helper.pid]) == pytest.approx(own + child, abs=0.1)
        assert _sessions_cpu([helper.pid + 10**7]) == 0.0  # no such session
    finally:
        os.killpg(helper.pid, 9)
        helper.wait()


def test_loadwatch_sends_a_threaded_run_to_one_thread_when_its_steps_slow_down():
    calls = []
    c = Clock()

    def watch(threaded: bool) -> LoadWatch:
        switch = lambda: calls.append(1) or True  # noqa: E731
        w = LoadWatch(wall=lambda: c.wall, cpu=lambda: c.cpu, one_thread=switch, threaded=threaded)
        w.on_fit_start({})
        return w

    def epoch(w: LoadWatch, step_seconds: list[float], number: int) -> None:
        for i, dt in enumerate(step_seconds, start=1):
            c.wall += dt
            c.cpu += 2 * dt  # two spinning threads: CPU time grows with the wall time
            w.on_step(i, len(step_seconds))
        w.on_epoch_end({"epoch": number})

    steady = [0.01] * 20
    w = watch(threaded=True)
    epoch(w, steady, 1)
    epoch(w, steady, 2)
    assert calls == [] and w.verdict() is None  # quiet: no switch, no note
    epoch(w, [0.01] * 8 + [0.03] + [0.01] * 11, 3)  # one slow step: a hiccup, not load
    epoch(w, [0.01] * 9 + [0.03] * 11, 4)  # a lone slowed window (steps 10-17) neither: it may be a hiccup
    assert calls == [] and w.verdict() is None
    epoch(w, [0.03] * 20, 5)  # load goes on: the second slowed window in a row (steps 2-9) switches
    assert calls == [1] and (w.switched_at, w.switched_step) == (5, 9)
    assert "from step 9 of epoch 5" in w.verdict() and "3.0x" in w.verdict()
    epoch(w, [0.03] * 20, 6)
    assert calls == [1]  # once
    calls.clear()
    w = watch(threaded=False)  # one thread: steps are not watched (the epoch test stays)
    for n, steps in enumerate([steady, steady, [0.03] * 20], start=1):
        epoch(w, steps, n)
    assert calls == [] and w.switched_at is None
    w = watch(threaded=True)  # epochs too short for a window: two slowed epochs in a row switch it
    for n, steps in enumerate([[0.01] * 4, [0.01] * 4, [0.03] * 4, [0.01] * 4, [0.03] * 4], start=1):
        epoch(w, steps, n)
    assert calls == []  # lone slowed epochs: hiccups
    epoch(w, [0.03] * 4, 6)
    assert calls == [1] and w.switched_at == 6 and "after epoch 6" in w.verdict()


def test_setup_gives_small_work_two_threads_only_on_a_quiet_machine_with_short_spins(tiny_cfg, monkeypatch):
    import nntrain.pipeline.setup as setup_module
    import nntrain.training.threads as threads

    monkeypatch.setattr(setup_module, "usable_cores", lambda: 2)
    cfg = tiny_cfg()
    for short, busy, expected in [(True, 0.0, 2), (True, 1.0, 1), (False, 0.0, 1)]:
        monkeypatch.setattr(threads, "_short_spin", short)
        monkeypatch.setattr(setup_module, "other_load", lambda busy=busy: busy)
        assert setup_module.setup(cfg).threads == expected, (short, busy)
    monkeypatch.setattr(threads, "_short_spin", True)
    assert setup_module.setup(tiny_cfg("threads=1")).threads == 1  # the config's number, as is


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="needs Linux CPU affinity")
@pytest.mark.parametrize("loaded", [False, True])
def test_a_real_two_thread_run_goes_on_one_thread_when_load_arrives_and_not_on_a_quiet_core_pair(
    tiny_cfg, loaded, monkeypatch
):
    """``train_run`` on two threads pinned to two cores; from epoch 3 on (loaded), two busy processes
    share those cores: its steps slow down and it goes on with one thread within epoch 3 (its waiting
    threads may spin: the CPU time alone would not tell), and summary.json says so."""
    import dataclasses
    import json

    import torch

    from nntrain.pipeline.setup import setup
    from nntrain.pipeline.train import train_run

    before = os.sched_getaffinity(0)
    if len(before) < 2:
        pytest.skip("needs two cores")
    cores = sorted(before)[:2]
    busy: list[subprocess.Popen] = []

    class Load:
        def on_epoch_end(self, record):
            if loaded and record["epoch"] == 2:
                for core in cores:
                    spin = f"import os; os.sched_setaffinity(0, {{{core}}})\nwhile True: pass"
                    busy.append(subprocess.Popen([sys.executable, "-c", spin]))

    cfg = tiny_cfg("train.epochs=5", "model.channels=[16, 32]", "model.hidden=[64]", "train.batch_size=32")
    s = dataclasses.replace(setup(cfg), threads=2)  # what the policy gives this small work on a quiet machine
    threads_before = torch.get_num_threads()
    import nntrain.training.threads as threads

    monkeypatch.setattr(threads, "_start", None)
    threads.mark_start()  # to tell whether the machine stayed quiet (the quiet case's premise)
    os.sched_setaffinity(0, set(cores))
    try:
        _, run = train_run(cfg, s=s, callbacks=[Load()])
        after = torch.get_num_threads()
        others = threads.other_load()
    finally:
        os.sched_setaffinity(0, before)
        torch.set_num_threads(threads_before)
        for p in busy:
            p.kill()
            p.wait()
    summary = json.loads((run.path / "summary.json").read_text())
    if loaded:
        assert after == 1 and summary["threads"] == 1, summary
        assert "training went on with one thread from step" in summary["load_note"], summary  # within epoch 3
        assert "of epoch 3" in summary["load_note"]
    else:
        if others is None or others > 0.3:  # e.g. processes of earlier tests still winding down
            pytest.skip(f"the machine was not quiet during the run: other processes kept {others} cores busy")
        assert after == 2 and summary["threads"] == 2 and summary["load_note"] is None, (summary, others)


@pytest.mark.parametrize("stream", [False, True])
def test_steps_are_watched_only_for_in_memory_data_on_several_cpu_threads(tiny_cfg, monkeypatch, stream):
    """A streamed step can wait for its data: only the epoch test (wall and CPU time) watches it."""
    import dataclasses

    import torch

    import nntrain.pipeline.train as pipeline
    from nntrain.pipeline.setup import setup

    made = []
    real = pipeline.LoadWatch
    monkeypatch.setattr(pipeline, "LoadWatch", lambda **kw: made.append(kw) or real(**kw))
    extra = ["data.memory_limit_mb=0.001", "data.workers=0"] if stream else []
    cfg = tiny_cfg("train.epochs=1", *extra)
    s = dataclasses.replace(setup(cfg), threads=2)
    assert s.dataset.stream == stream
    before = torch.get_num_threads()
    try:
        pipeline.train_run(cfg, s=s)
    finally:
        torch.set_num_threads(before)
    assert made[0]["threaded"] is (not stream)
