"""The benchmarks' common preamble: import paths, arguments (reps, device, threads), and
the median / ratio lines they print.

    from benchlib import arguments, median_ratio   # after: sys.path has scripts/ (it does when run as a script)
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
for p in (str(REPO), str(HERE)):
    if p not in sys.path:
        sys.path.insert(0, p)


def arguments(doc: str | None, reps: int = 5, device: str | None = "cpu", threads: int | None = None):
    """An ArgumentParser with --reps (and --device, --threads when given defaults); the script adds its own."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=reps, help=f"repetitions (default {reps})")
    if device is not None:
        ap.add_argument("--device", default=device, help=f"cpu, cuda, ... (default {device})")
    ap.add_argument("--threads", type=int, default=threads, help="torch intra-op threads (default: torch's)")
    return ap


def set_threads(n: int | None) -> None:
    """Set torch's intra-op threads when asked (None: leave torch's default)."""
    if n:
        import torch

        torch.set_num_threads(n)


def median_ratio(name: str, a: list[float], b: list[float], unit: str = "ms/epoch", goal: float = 1.03) -> float:
    """Print both medians with their repetitions and the ratio a/b against the goal; return the ratio."""
    ma, mb = statistics.median(a), statistics.median(b)
    fmt = (lambda v: f"{v * 1000:.1f}") if unit.startswith("ms") else (lambda v: f"{v:.3f}")
    print(f"[{name}] nntrain median {fmt(ma)} {unit} (reps {', '.join(fmt(x) for x in a)})")
    print(f"[{name}] bare    median {fmt(mb)} {unit} (reps {', '.join(fmt(x) for x in b)})")
    print(f"[{name}] ratio nntrain/bare = {ma / mb:.3f}  (goal <= {goal})", flush=True)
    return ma / mb
