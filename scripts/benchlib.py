"""The benchmarks' common preamble: import paths, arguments, whole-process timing, and the
median / ratio lines they print.

    from benchlib import arguments, median_ratio   # scripts/ is on sys.path when a script in it runs

Importing this module puts this checkout (``REPO``) first on ``sys.path``, so the scripts
measure this checkout's nntrain; it imports neither torch nor nntrain itself.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
for p in (str(REPO), str(HERE)):
    if p not in sys.path:
        sys.path.insert(0, p)


class EpochClock:
    """Wall time of every epoch as the caller sees it: from the end of one epoch (its
    callbacks, checkpoint snapshot and metrics row included) to the end of the next."""

    def __init__(self) -> None:
        self.seconds: list[float] = []

    def on_fit_start(self, info) -> None:
        self._t = time.perf_counter()

    def on_epoch_end(self, record) -> None:
        now = time.perf_counter()
        self.seconds.append(now - self._t)
        self._t = now


def arguments(
    doc: str | None,
    reps: int | None = 5,
    device: str | None = "cpu",
    threads: bool = True,
    config: bool = False,
    sets: bool = False,
) -> argparse.ArgumentParser:
    """An ArgumentParser showing ``doc``, with the common flags asked for; the script adds its own.

    reps: ``--reps`` (alias ``--repeats``) with this default (None: no flag); device: ``--device``
    with this default (None: no flag); threads: ``--threads`` (torch intra-op threads of this
    process, see ``set_threads``); config: ``--config YAML``; sets: ``--set key=value`` (repeatable,
    ``args.set``).
    """
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    if reps is not None:
        ap.add_argument("--reps", "--repeats", type=int, default=reps, help=f"repetitions; medians (default {reps})")
    if device is not None:
        ap.add_argument("--device", default=device, help=f"cpu, cuda, ... (default {device})")
    if threads:
        ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    if config:
        ap.add_argument("--config", default=None, help="YAML config (default: built-in defaults)")
    if sets:
        ap.add_argument("--set", action="append", default=[], help="config override, e.g. train.epochs=5")
    return ap


def set_threads(n: int | None) -> None:
    """Set torch's intra-op threads when asked (None: leave torch's default)."""
    if n:
        import torch

        torch.set_num_threads(n)


def load_cfg(args: argparse.Namespace, fixed: dict | None = None):
    """The config from ``--config`` / ``--set`` (when the parser has them), then ``fixed`` overrides."""
    from nntrain.config import load_config, override

    cfg = load_config(getattr(args, "config", None), getattr(args, "set", []))
    return override(cfg, fixed) if fixed else cfg


def cv_wall(plan, folds, executor, parallel: int = 1) -> tuple[float, dict]:
    """(wall seconds, summary) of one cv of ``plan`` over ``folds`` as ``nntrain cv`` runs it: a new
    cv directory (made before the clock starts), its own study, ``run_search``."""
    from nntrain.cv.search import run_search
    from nntrain.cv.store import CvDir
    from nntrain.cv.study import default_storage, open_study

    d = CvDir.create(plan, [va for _, va in folds])
    t = time.perf_counter()
    study = open_study(plan, default_storage(d.path), seed=plan.base.seed)
    summary = run_search(plan, d, folds, study, executor=executor, parallel=parallel)
    return time.perf_counter() - t, summary


def child_env(**extra: str | None) -> dict[str, str]:
    """This environment with PYTHONPATH = this checkout (a child runs this nntrain); None removes a variable."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    for k, v in extra.items():
        if v is None:
            env.pop(k, None)
        else:
            env[k] = v
    return env


def run_wall(
    cmd: list[str], cwd: str | Path, ok: tuple[int, ...] = (0,), **env: str | None
) -> tuple[float, subprocess.CompletedProcess]:
    """(wall seconds, finished process with its output captured) of one child process in ``cwd``
    (start-up included), environment ``child_env(**env)``. Exits with the command and the end of
    its stderr when its exit code is not in ``ok``."""
    t0 = time.perf_counter()
    p = subprocess.run(cmd, cwd=cwd, env=child_env(**env), capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if p.returncode not in ok:
        sys.exit(f"{' '.join(cmd)} failed (exit {p.returncode}):\n{p.stderr[-3000:]}")
    return wall, p


def median_ratio(
    name: str,
    a: list[float],
    b: list[float],
    unit: str = "ms/epoch",
    goal: float | None = 1.03,
    labels: tuple[str, str] = ("nntrain", "bare"),
) -> float:
    """Print both medians with their repetitions and the ratio a/b (against the goal when given); return the ratio."""
    ma, mb = statistics.median(a), statistics.median(b)
    fmt = (lambda v: f"{v * 1000:.1f}") if unit.startswith("ms") else (lambda v: f"{v:.3f}")
    width = max(map(len, labels))
    for label, m, xs in ((labels[0], ma, a), (labels[1], mb, b)):
        print(f"[{name}] {label:<{width}} median {fmt(m)} {unit} (reps {', '.join(fmt(x) for x in xs)})")
    target = f"  (goal <= {goal})" if goal is not None else ""
    print(f"[{name}] ratio {labels[0]}/{labels[1]} = {ma / mb:.3f}{target}", flush=True)
    return ma / mb


def matmul_flops(dtype_name: str = "fp32", n: int = 2048, reps: int = 5) -> float:
    """This machine's matrix-multiply speed in FLOP/s: the best of ``reps`` n×n products in fp32 or bf16
    (2·n³ FLOPs each), the ceiling a training step in that precision is compared with."""
    import torch

    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[dtype_name]
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b  # warm-up: oneDNN / BLAS pick their kernels
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best


def epoch_flops(model, input_shape, batch_size: int, n_train: int, n_val: int) -> float:
    """FLOPs of one epoch as ``fit`` runs it: the training steps (forward, backward; counted by
    torch.utils.flop_counter.FlopCounterMode on one step of ``batch_size`` samples, scaled to ``n_train``)
    and the validation forward pass over ``n_val`` samples. The model is left as it was."""
    import copy

    import torch
    import torch.nn.functional as F
    from torch.utils.flop_counter import FlopCounterMode

    net = copy.deepcopy(model).cpu().float()
    x = torch.randn(batch_size, *input_shape)
    y = torch.zeros(batch_size, dtype=torch.long)
    with FlopCounterMode(display=False) as step:
        F.cross_entropy(net(x), y).backward()
    net.eval()
    with FlopCounterMode(display=False) as fwd, torch.no_grad():
        net(x)
    return step.get_total_flops() * n_train / batch_size + fwd.get_total_flops() * n_val / batch_size


def flops_line(name: str, label: str, flops: float, seconds: float, peak: float, precision: str) -> None:
    """Print the achieved FLOP/s of ``flops`` done in ``seconds`` and its fraction of the matmul ``peak``."""
    rate = flops / seconds
    print(
        f"[{name}] {label}: {rate / 1e9:.1f} GFLOP/s achieved = {rate / peak:.1%} of this machine's large "
        f"{precision} matmul ({peak / 1e9:.0f} GFLOP/s)",
        flush=True,
    )
