"""How many CPU threads torch computes with, so that another busy process cannot stall training.

Torch's default is one OpenMP thread per core, each spinning at every barrier. When anything
else runs on the machine (a browser, an IDE, CI jobs, another fold of ``cv --jobs``), one of
those threads is descheduled, the others spin waiting for it, and every operation costs a
scheduler time slice: on a 2-core machine the digits loop went from 4 s to 49-98 s with one
other CPU-bound process. The policy, decided once per run, before training:

- the cores this process may use: its affinity mask, capped by a cgroup CPU quota and by a
  user's ``OMP_NUM_THREADS``;
- the load: cores other processes kept busy while this command started (``other_load``,
  /proc/stat minus this process's own CPU time over its start-up);
- small work (an SGD step of fewer than ``SMALL_STEP_MACS`` multiply-accumulates, e.g. the
  digits CNN) gets one thread: it cannot be stalled then, and on a quiet machine the second
  core serves the run's other threads (warm-up, file writes);
- larger work gets the cores the other processes leave free, and an epoch slowed by load
  that arrives later sends the rest of the run to one thread;
- OpenMP threads wait passively (``OMP_WAIT_POLICY=PASSIVE``, set before torch is imported
  unless the user set it), so a waiting thread yields its core instead of spinning.

This module imports no torch at module level: the CLI calls ``passive_waits()`` before torch
is imported.
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path
from typing import Any

SMALL_STEP_MACS = 2e8
"""Multiply-accumulates of one forward pass over a training batch below which the run computes on one
thread, quiet machine or not (the digits CNN [32, 64], batch 64: ~2e7; the CIFAR-shaped CNN
[64, 128, 256], batch 128: ~5e9). Measured on 2 cores, 2026-11-27: `nntrain train` on digits took
6.2 s on one thread and 6.8 s on two on a quiet machine — the second core is better spent on the
pictures' and report's warm-up and the run's file writes — and one thread cannot be stalled by load."""


def passive_waits(environ: dict[str, str] | None = None) -> None:
    """OpenMP threads sleep instead of spinning while they wait (read once, when torch loads)."""
    env = os.environ if environ is None else environ
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")


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


def mark_start(proc: str | Path = "/proc") -> None:
    """Start measuring other processes' CPU use (the CLI calls this first: the window is the start-up)."""
    global _start
    try:
        _start = (_busy_jiffies(proc), time.process_time(), time.perf_counter())
    except (OSError, ValueError, IndexError):
        _start = None


def other_load(proc: str | Path = "/proc", sample: float = 0.05) -> float | None:
    """Cores kept busy by other processes: the machine's busy CPU time minus this process's own, per
    second, since ``mark_start`` (or over a short ``sample`` when it was not called); None without /proc."""
    try:
        start = _start or (_busy_jiffies(proc), time.process_time(), time.perf_counter())
        if _start is None:
            time.sleep(sample)
        busy, cpu, wall = _busy_jiffies(proc), time.process_time(), time.perf_counter()
        hz = os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, AttributeError):
        return None
    if wall - start[2] <= 0:
        return None
    return max(0.0, ((busy - start[0]) / hz - (cpu - start[1])) / (wall - start[2]))


def choose_threads(setting: int | str, *, macs: float, cores: int, jobs: int = 1, busy: float | None = 0.0) -> int:
    """torch threads for one process: ``setting`` when it is a number, else the policy above. ``busy``:
    cores other processes keep busy (``other_load``; None = unknown, counted as loaded)."""
    if setting != "auto":
        return int(setting)
    if macs < SMALL_STEP_MACS:
        return 1  # loaded or not: see SMALL_STEP_MACS
    free = cores if busy is None else max(1, cores - round(busy))  # large work: the cores the others leave
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
