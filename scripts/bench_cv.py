"""Benchmark: 5-fold CV wall time ÷ one fold's training time, for --jobs 1 and --jobs 2.

The issue's goal: data loaded once and torch imported once, so K-fold CV costs at most
5.5 × one fold (K=5). Start-up (python, torch import, first-optimizer import, worker
start) is excluded from the ratio: one warm-up fold runs first in this process, and for
--jobs 2 the worker fork server is started and warmed by a first, untimed pool run; that
cold pool run is still printed ("incl. worker start-up") so the cost is visible.

    python scripts/bench_cv.py                 # default config (digits CNN, 20 epochs)
    python scripts/bench_cv.py --threads 1      # one torch thread per job (steady on a busy CPU)
    python scripts/bench_cv.py --set train.epochs=5 --set device=cuda

Prints seconds and ratios; report ratios (absolute seconds depend on the machine).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's nntrain


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default=None, help="YAML config (default: built-in defaults)")
    ap.add_argument("--set", action="append", default=[], help="override, e.g. train.epochs=5")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=None,
                    help="torch threads per fold job (default: cores // jobs, as nntrain cv); "
                    "1 is steadier on a busy machine, where threads wait on each other")
    args = ap.parse_args()

    import torch

    from nntrain.config import load_config, override
    from nntrain.cv import CvDir, Plan, make_jobs, pool_folds, run_cv, run_fold
    from nntrain.executor import LocalExecutor, usable_cores

    with tempfile.TemporaryDirectory() as tmp:
        cfg = override(load_config(args.config, args.set), {"output.runs_dir": tmp})
        plan = Plan(cfg, args.folds)
        _, _, folds = pool_folds(cfg, args.folds)
        job = make_jobs(plan, folds, lambda c, f: False)[0]

        torch.set_num_threads(LocalExecutor(1, args.threads).threads)  # as --jobs 1 trains a fold
        run_fold(job)  # warm-up: first-optimizer import, allocator, kernels (start-up, not timed)
        t = time.perf_counter()
        run_fold(job)
        one_fold = time.perf_counter() - t

        def cv_wall(jobs: int) -> float:
            d = CvDir.create(plan, [va for _, va in folds])
            t = time.perf_counter()
            run_cv(plan, d, folds, executor=LocalExecutor(jobs, args.threads))
            return time.perf_counter() - t

        seq = cv_wall(1)
        par_cold = cv_wall(2)  # includes starting the fork server and 2 workers
        par = cv_wall(2)  # fork server warm: workers fork from it with torch imported

    dev = cfg.device if cfg.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    print(f"config: {cfg.model.name} on {cfg.data.dataset}, {cfg.train.epochs} epochs, {args.folds} folds, "
          f"device {dev}, {usable_cores()} cores, threads/job {args.threads or 'cores // jobs'}, torch {torch.__version__}")
    print(f"one fold (warm)                     {one_fold:7.2f} s")
    print(f"{args.folds}-fold cv --jobs 1                   {seq:7.2f} s   ratio {seq / one_fold:5.2f}")
    print(f"{args.folds}-fold cv --jobs 2                   {par:7.2f} s   ratio {par / one_fold:5.2f}")
    print(f"{args.folds}-fold cv --jobs 2 incl. worker start-up {par_cold:7.2f} s   ratio {par_cold / one_fold:5.2f}")
    print(f"goal: ratio <= {1.1 * args.folds:.1f} (= 1.1 x {args.folds} folds)")


if __name__ == "__main__":
    main()
