"""Speed on a machine that is doing something else: each command quiet vs with busy processes.

    python scripts/bench_load.py [--reps 3] [--load 1] [--only train,sanity,cv,bare]

For each case the command runs alternately on the quiet machine and with ``--load`` other
CPU-bound processes (``while True: pass``) started and stopped by this script; it prints the
median wall time of each and their ratio (goal for nntrain's commands: loaded ≤ 1.5× quiet).
The bare PyTorch loop (scripts/bare_train.py, torch's default threads) is the comparison.

- train : ``nntrain train`` (default config, digits)
- sanity: ``nntrain sanity`` (default config)
- cv    : ``nntrain cv --folds 5`` (default config)
- bare  : ``python scripts/bare_train.py`` (the same work as train, no nntrain)
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time

from benchlib import HERE, arguments, median_ratio, run_wall

CASES = {
    "train": [sys.executable, "-m", "nntrain", "train"],
    "sanity": [sys.executable, "-m", "nntrain", "sanity"],
    "cv": [sys.executable, "-m", "nntrain", "cv", "--folds", "5"],
    "bare": [sys.executable, str(HERE / "bare_train.py")],
}


def wall(cmd: list[str], cwd: str) -> float:
    # each side chooses its own threads, as a user's shell would: OMP_NUM_THREADS removed
    return run_wall(cmd, cwd, ok=(0, 1), OMP_NUM_THREADS=None)[0]


def start_load(n: int) -> list[subprocess.Popen]:
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]


def stop_load(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        p.kill()
        p.wait()


def main() -> None:
    ap = arguments(__doc__, reps=3, device=None, threads=False)
    ap.add_argument("--load", type=int, default=1, help="busy processes while loaded")
    ap.add_argument("--only", default="train,sanity,cv,bare")
    args = ap.parse_args()
    print(
        f"machine: {os.cpu_count()} CPUs, affinity {len(os.sched_getaffinity(0))}; load: {args.load} busy process(es)"
    )
    with tempfile.TemporaryDirectory() as cwd:
        for name in args.only.split(","):
            quiet, loaded = [], []
            for _ in range(args.reps):  # alternating, so drift hits both sides alike
                quiet.append(wall(CASES[name], cwd))
                procs = start_load(args.load)
                try:
                    time.sleep(0.5)  # the load is running before the command starts
                    loaded.append(wall(CASES[name], cwd))
                finally:
                    stop_load(procs)
            goal = None if name == "bare" else 1.5
            median_ratio(name, loaded, quiet, unit="s", goal=goal, labels=("loaded", "quiet"))


if __name__ == "__main__":
    main()
