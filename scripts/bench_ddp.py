"""Per-epoch time of a 2-process DDP run (torchrun, gloo, CPU) versus single-process runs on
the same work (same config, same global batches).

    python scripts/bench_ddp.py [--epochs 8] [--nproc 2] [--set key=value ...]

Runs, as a user would, each as a fresh command in a temporary directory:
  1. ``nntrain train`` with OMP_NUM_THREADS=1 (one core),
  2. ``nntrain train`` with OMP_NUM_THREADS=<nproc> (the same cores as the DDP run, intra-op threads),
  3. ``torchrun --standalone --nproc_per_node=<nproc> -m nntrain train`` with OMP_NUM_THREADS=1 per rank.
Per-epoch time is the median of metrics.csv's ``seconds`` column (train + val, as rank 0
measures it) over the epochs after the first (warm-up). Also prints each command's wall
time (interpreter and torch start-up included) and the final test accuracy, and checks
that the DDP run reached the single-process weights.
"""

from __future__ import annotations

import csv
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

from benchlib import arguments, run_wall

DEFAULTS = ["device=cpu", "model.batchnorm=false"]  # no batchnorm: the DDP run is the single-process run (CPU)


def run(cmd: list[str], cwd: Path, threads: int) -> tuple[Path, float]:
    wall, _ = run_wall(cmd, cwd, OMP_NUM_THREADS=str(threads))
    (run_dir,) = (cwd / "runs").iterdir()
    return run_dir, wall


def epoch_seconds(run_dir: Path) -> float:
    with open(run_dir / "metrics.csv", newline="") as f:
        secs = [float(r["seconds"]) for r in csv.DictReader(f)]
    return statistics.median(secs[1:] if len(secs) > 1 else secs)


def max_weight_diff(a: Path, b: Path) -> float:
    import torch

    wa = torch.load(a / "last.pt", weights_only=True)["model"]
    wb = torch.load(b / "last.pt", weights_only=True)["model"]
    return max(float((wa[k] - wb[k]).abs().max()) for k in wa)


def main() -> None:
    ap = arguments(__doc__, reps=None, device=None, threads=False, config=True, sets=True)
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--nproc", type=int, default=2)
    args = ap.parse_args()
    sets = [*DEFAULTS, f"train.epochs={args.epochs}", *args.set]
    train_args = ["train", *(["--config", str(Path(args.config).resolve())] if args.config else [])]
    train_args += sum((["--set", s] for s in sets), [])
    single = [sys.executable, "-m", "nntrain", *train_args]
    ddp = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={args.nproc}",
        "-m",
        "nntrain",
        *train_args,
    ]
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, cmd, threads in [
            ("single process, 1 thread", single, 1),
            (f"single process, {args.nproc} threads", single, args.nproc),
            (f"torchrun DDP, {args.nproc} processes x 1 thread (gloo)", ddp, 1),
        ]:
            cwd = Path(tmp) / str(len(results))
            cwd.mkdir()
            run_dir, wall = run(cmd, cwd, threads)
            summary = json.loads((run_dir / "summary.json").read_text())
            results.append((name, epoch_seconds(run_dir), wall, summary["test_acc"], run_dir))
        base = results[0][1]
        print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; {' '.join(sets)}")
        print("| run | s/epoch (median, after epoch 1) | vs 1 thread | command wall s | test acc |")
        print("| --- | --- | --- | --- | --- |")
        for name, sec, wall, acc, _ in results:
            print(f"| {name} | {sec:.3f} | {sec / base:.2f}x | {wall:.1f} | {acc:.4f} |")
        print(
            f"DDP vs single-process (1 thread) last.pt: max |Δw| = {max_weight_diff(results[2][4], results[0][4]):.2e}"
        )


if __name__ == "__main__":
    main()
