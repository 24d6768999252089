"""How many CPU threads torch computes with: decided once per run from the configuration, the work
and the cores this process may use — never from what else is running, so the same config and seed
give the same numbers on a quiet and on a busy machine.

- ``threads: N`` is used as given, capped at the usable cores (more threads than cores only wait
  for each other);
- ``threads: auto``: small work (an SGD step of fewer than ``SMALL_STEP_MACS`` multiply-accumulates,
  e.g. the digits CNN) gets one thread — its barriers cost more than a second thread gains, and a
  single thread cannot be stalled by another process — and larger work gets the usable cores
  (divided among the processes sharing them: torchrun's ranks, ``cv --jobs``);
- waiting OpenMP threads sleep instead of spinning (``OMP_WAIT_POLICY=PASSIVE``, OpenMP's standard
  setting, which PyTorch's CPU performance guide names for shared machines): a thread that spins
  while its partner waits for a core would take that core from the other process. A user's own
  ``OMP_WAIT_POLICY`` or ``GOMP_SPINCOUNT`` wins.

This module imports no torch at module level: the CLI calls ``set_wait_policy()`` before torch is
imported (OpenMP reads the variable once, when it starts).
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

SMALL_STEP_MACS = 2e8
"""Multiply-accumulates of one forward pass over a training batch below which ``auto`` computes on one
thread (the digits CNN [32, 64], batch 64: ~2e7; the CIFAR-shaped CNN [64, 128, 256], batch 128: ~5e9)."""


def set_wait_policy(environ: dict[str, str] | None = None) -> None:
    """``OMP_WAIT_POLICY=PASSIVE`` unless the user chose how OpenMP threads wait (call before torch loads)."""
    env = os.environ if environ is None else environ
    if "OMP_WAIT_POLICY" not in env and "GOMP_SPINCOUNT" not in env:
        env["OMP_WAIT_POLICY"] = "PASSIVE"


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


def choose_threads(setting: int | str, *, macs: float, cores: int, jobs: int = 1) -> tuple[int, str | None]:
    """(torch threads for one process, a note when a requested count was capped). ``cores``: ``usable_cores()``;
    ``jobs``: processes sharing them."""
    if setting != "auto":
        n = int(setting)
        if n > cores:
            return cores, f"threads={n} > the {cores} usable core(s) of this process: training on {cores}"
        return n, None
    if macs < SMALL_STEP_MACS:
        return 1, None
    return max(1, cores // max(1, jobs)), None


def apply_threads(threads: int) -> int:
    """Set torch's intra-op threads; returns the previous count."""
    import torch

    before = torch.get_num_threads()
    if threads != before:
        torch.set_num_threads(threads)
    return before
