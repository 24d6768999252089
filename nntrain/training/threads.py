"""How many CPU threads torch computes with, so that another busy process cannot stall training.

Torch's default is one OpenMP thread per core, each spinning at every barrier. When anything
else runs on the machine (a browser, an IDE, CI jobs, another fold of ``cv --jobs``), one of
those threads is descheduled, the others spin waiting for it, and every operation costs a
scheduler time slice: on a 2-core machine the digits loop went from 4 s to 49-98 s with one
other CPU-bound process. The policy, decided once per run, before training:

- the cores this process may use: its affinity mask, capped by a cgroup CPU quota and by a
  user's ``OMP_NUM_THREADS``;
- the load: cores other processes kept busy while this command started (``other_load``,
  /proc/stat minus the CPU time of this process and of its own helpers over its start-up);
- small work (an SGD step of fewer than ``SMALL_STEP_MACS`` multiply-accumulates, e.g. the
  digits CNN) gets at most ``SMALL_WORK_THREADS`` threads, and only where waiting threads spin
  briefly (below); otherwise one thread;
- larger work gets the cores the other processes leave free;
- load that arrives later: steps (or an epoch) slowed by it send the rest of the run to one
  thread (``training.loadwatch``), which no other process can stall;
- OpenMP threads wait briefly: with torch's libgomp (the Linux wheels) ``GOMP_SPINCOUNT`` is
  set to ``SPIN_COUNT`` before torch is imported, so a waiting thread spins that many rounds and
  then yields its core; with another OpenMP runtime ``OMP_WAIT_POLICY=PASSIVE`` (yield at once).
  A user's own ``OMP_WAIT_POLICY`` or ``GOMP_SPINCOUNT`` is left as it is.

This module imports no torch at module level: the CLI calls ``set_wait_policy()`` before torch
is imported.
"""

from __future__ import annotations

import importlib.util
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

SMALL_STEP_MACS = 2e8
"""Multiply-accumulates of one forward pass over a training batch below which the run computes on at
most ``SMALL_WORK_THREADS`` threads (the digits CNN [32, 64], batch 64: ~2e7; the CIFAR-shaped CNN
[64, 128, 256], batch 128: ~5e9): the barriers of steps this small cost more than more threads gain."""

SMALL_WORK_THREADS = 2
"""Threads for small work on a quiet machine whose waiting threads spin briefly. Measured on 2 cores,
2026-11-27 (digits CNN, 20 epochs): `nntrain train` trains in 1.07-1.3 s on two threads with
``SPIN_COUNT`` vs 1.6-1.8 s on one; with passive waits two threads are slower than one (whole
process 5.78-6.44 s vs 4.67-4.84 s), so they then get one."""

SPIN_COUNT = 30000
"""libgomp's ``GOMP_SPINCOUNT``: how long a waiting OpenMP thread spins before it sleeps. Measured on 2
cores, 2026-11-27, the bare digits script on two threads, quiet: 1000 → 4.8-5.1 s, 3000 → 4.1-4.2 s,
10000 → 4.2-4.3 s, 30000 → 3.8-4.1 s, libgomp's default 300000 → 4.2-4.5 s, passive 5.4-5.5 s
(one thread: 4.5-5.1 s). Beside one busy process every spinning setting collapses (30000: 17.8 s;
passive 6.3 s; one thread 4.5 s): the load seen at start-up gives one thread, and load that
arrives later is met by ``training.loadwatch`` switching to one thread."""

QUIET_FOR_SMALL_WORK = 0.25
"""Small work takes a second thread only when other processes kept less than this many cores busy
during the start-up: a core partly used elsewhere stalls the barriers of small steps."""

_short_spin = False  # set_wait_policy set SPIN_COUNT before torch was imported
_own_sessions: list[int] = []  # sessions of this command's helper processes (not "other load")


def torch_uses_libgomp() -> bool:
    """Whether the installed torch ships GNU libgomp (the Linux wheels: torch/lib or torch.libs), found
    without importing torch."""
    try:
        spec = importlib.util.find_spec("torch")
    except (ImportError, ValueError):
        return False
    if spec is None or not spec.submodule_search_locations:
        return False
    root = Path(list(spec.submodule_search_locations)[0])
    return any(any(d.glob("libgomp*")) for d in (root / "lib", root.parent / "torch.libs") if d.is_dir())


def set_wait_policy(environ: dict[str, str] | None = None, *, libgomp: bool | None = None) -> None:
    """How OpenMP threads wait at a barrier (read once, when torch loads: call before importing it).
    With libgomp they spin ``SPIN_COUNT`` rounds, then sleep; with another runtime they sleep at
    once (``OMP_WAIT_POLICY=PASSIVE``). A user who set either variable has decided."""
    global _short_spin
    env = os.environ if environ is None else environ
    if "OMP_WAIT_POLICY" in env or "GOMP_SPINCOUNT" in env:
        return
    if libgomp if libgomp is not None else torch_uses_libgomp():
        env["GOMP_SPINCOUNT"] = str(SPIN_COUNT)
        if environ is None and "torch" not in sys.modules:  # it takes effect: small work may use threads
            _short_spin = True
    else:
        env["OMP_WAIT_POLICY"] = "PASSIVE"


def short_spin_waits() -> bool:
    """Whether this process's OpenMP threads spin briefly when they wait (``set_wait_policy`` set it)."""
    return _short_spin


def cgroup_cpu_limit(root: str | Path = "/sys/fs/cgroup") -> float | None:
    """CPUs allowed by a cgroup quota (v2 ``cpu.max`` or v1 ``cfs_quota_us / cfs_period_us``), or None."""
    root = Path(root)
    try:
        quota, period = (root / "cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        quota = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period = int((root / "cpu" / "cpu.cfs_period_us").read_text())
        return None if quota <= 0 or period <= 0 else quota / period
    except (OSError, ValueError):
        return None


def usable_cores(cgroup_root: str | Path = "/sys/fs/cgroup", environ: dict[str, str] | None = None) -> int:
    """CPUs this process may run on: its affinity mask, capped by a cgroup CPU quota and by the user's
    own ``OMP_NUM_THREADS`` (a user who set it has decided)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    limit = cgroup_cpu_limit(cgroup_root)
    if limit is not None:
        cores = min(cores, math.ceil(limit))
    env = os.environ if environ is None else environ
    if env.get("OMP_NUM_THREADS", "").strip().isdigit() and int(env["OMP_NUM_THREADS"]) >= 1:
        cores = min(cores, int(env["OMP_NUM_THREADS"]))
    return max(1, cores)


def step_macs(model: Any, input_shape: tuple[int, int, int], batch_size: int) -> float:
    """Multiply-accumulates of one forward pass over a batch: conv and linear layers, counted
    with forward hooks on one zero sample (the model is left as it was)."""
    import torch
    from torch import nn

    total = 0.0

    def count(module: nn.Module, _inputs: Any, out: torch.Tensor) -> None:
        nonlocal total
        if isinstance(module, nn.Conv2d):
            total += module.weight.numel() * out.shape[-1] * out.shape[-2]
        elif isinstance(module, nn.Linear):
            total += module.weight.numel()

    hooks = [m.register_forward_hook(count) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            device = next(model.parameters()).device
            model(torch.zeros(1, *input_shape, device=device))
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    return total * batch_size


_start: tuple[int, float, float] | None = None  # (busy jiffies of the machine, our CPU s, wall s) at mark_start


def _busy_jiffies(proc: str | Path = "/proc") -> int:
    """Jiffies every CPU spent busy since boot (/proc/stat: user nice system idle iowait irq softirq steal)."""
    v = [int(x) for x in Path(proc, "stat").read_text().splitlines()[0].split()[1:9]]
    return sum(v) - v[3] - v[4]


def count_as_own(session: int) -> None:
    """The processes of ``session`` (a helper this command started after ``mark_start``, in its own
    session) are this command's: their CPU time is not other load."""
    _own_sessions.append(session)


def _sessions_cpu(sessions: list[int], proc: str | Path = "/proc") -> float:
    """CPU seconds used so far by the processes in ``sessions`` (/proc/<pid>/stat: session, utime, stime)."""
    total = 0
    for d in Path(proc).iterdir():
        if not d.name.isdigit():
            continue
        try:
            fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # ended meanwhile
        if len(fields) > 12 and int(fields[3]) in sessions:  # state ppid pgrp session ... utime(11) stime(12)
            total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def mark_start(proc: str | Path = "/proc") -> None:
    """Start measuring other processes' CPU use (the CLI calls this first: the window is the start-up)."""
    global _start
    _own_sessions.clear()  # (helpers of an earlier command in this process are gone)
    try:
        _start = (_busy_jiffies(proc), time.process_time(), time.perf_counter())
    except (OSError, ValueError, IndexError):
        _start = None


def other_load(proc: str | Path = "/proc", sample: float = 0.05) -> float | None:
    """Cores kept busy by other processes: the machine's busy CPU time minus this process's own and its
    helpers' (``count_as_own``), per second, since ``mark_start`` (or over a short ``sample`` when it was
    not called); None without /proc."""
    try:
        start = _start or (_busy_jiffies(proc), time.process_time(), time.perf_counter())
        if _start is None:
            time.sleep(sample)
        busy, cpu, wall = _busy_jiffies(proc), time.process_time(), time.perf_counter()
        hz = os.sysconf("SC_CLK_TCK")
        helpers = _sessions_cpu(_own_sessions, proc) if _own_sessions and _start is not None else 0.0
    except (OSError, ValueError, IndexError, AttributeError):
        return None
    if wall - start[2] <= 0:
        return None
    return max(0.0, ((busy - start[0]) / hz - (cpu - start[1]) - helpers) / (wall - start[2]))


def choose_threads(
    setting: int | str,
    *,
    macs: float,
    cores: int,
    jobs: int = 1,
    busy: float | None = 0.0,
    short_spin: bool = False,
) -> int:
    """torch threads for one process: ``setting`` when it is a number, else the policy above. ``busy``:
    cores other processes keep busy (``other_load``; None = unknown, counted as loaded). ``short_spin``:
    waiting threads spin briefly (``short_spin_waits``); without it small work gets one thread."""
    if setting != "auto":
        return int(setting)
    if macs < SMALL_STEP_MACS:  # see SMALL_WORK_THREADS
        if not short_spin or busy is None or busy >= QUIET_FOR_SMALL_WORK:
            return 1
        return max(1, min(cores // max(1, jobs), SMALL_WORK_THREADS))
    free = cores if busy is None else max(1, cores - round(busy))  # the cores the others leave
    return max(1, free // max(1, jobs))


def apply_threads(threads: int) -> int:
    """Set torch's intra-op threads; returns the previous count."""
    import torch

    before = torch.get_num_threads()
    if threads != before:
        torch.set_num_threads(threads)
    return before


def drop_to_one_thread() -> bool:
    """Go on with one thread (an epoch waited for the CPU: other load appeared); True if it was on more."""
    return apply_threads(1) > 1
