"""Benchmark: 5-fold CV wall time ÷ one fold's training time, for --jobs 1 and --jobs 2.

The issue's goal: data loaded once and torch imported once, so K-fold CV costs at most
5.5 × one fold (K=5). Start-up (python, torch import, first-optimizer import, worker
start) is excluded from the ratio: one warm-up fold runs first in this process, and for
--jobs 2 the worker fork server is started and warmed by a first pool run, which is
printed on its own ("incl. worker start-up") so that cost stays visible. One fold and
the two cv runs are repeated, interleaved, and medians are reported (a shared machine
slows some repeats). "outside training" = wall minus the folds' own fit time: data
preparation, predictions, files.

    python scripts/bench_cv.py                 # default config (digits CNN, 20 epochs)
    python scripts/bench_cv.py --threads 1      # one torch thread per job (steady on a busy CPU)
    python scripts/bench_cv.py --set train.epochs=5 --set device=cuda

Prints seconds and ratios; report ratios (absolute seconds depend on the machine).
"""

from __future__ import annotations

import statistics
import tempfile
import time

import benchlib
from benchlib import arguments, load_cfg


def main() -> None:
    ap = arguments(__doc__, reps=3, device=None, threads=False, config=True, sets=True)
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch threads per fold job (default: cores // jobs, as nntrain cv); "
        "1 is steadier on a busy machine, where threads wait on each other",
    )
    args = ap.parse_args()

    import torch

    from nntrain.cv.folds import fold_job, pool_folds, run_fold
    from nntrain.cv.local import LocalExecutor
    from nntrain.cv.plan import Plan
    from nntrain.training.threads import usable_cores

    with tempfile.TemporaryDirectory() as tmp:
        cfg = load_cfg(args, {"output.runs_dir": tmp})
        plan = Plan(cfg, args.folds)
        _, _, folds = pool_folds(cfg, args.folds)
        job = fold_job(plan.base, 0, 0, *folds[0])  # the first fold, as the cv runs it

        def one_fold() -> float:
            t = time.perf_counter()
            run_fold(job)
            return time.perf_counter() - t

        def cv_wall(jobs: int) -> tuple[float, float]:
            """(wall seconds, seconds spent outside the folds' training loops)."""
            wall, s = benchlib.cv_wall(plan, folds, LocalExecutor(jobs, args.threads), parallel=jobs)
            fit = sum(f["seconds"] for f in s["combos"][0]["folds"])
            return wall, wall - fit / jobs

        torch.set_num_threads(LocalExecutor(1, args.threads).threads)  # as --jobs 1 trains a fold
        one_fold()  # warm-up: first-optimizer import, allocator, kernels (start-up, not timed)
        cold, _ = cv_wall(2)  # starts the fork server and the workers: shown, not in the ratio
        rows = []  # interleaved repeats: a busy machine slows some of them; report medians
        for _ in range(args.reps):
            f = one_fold()
            (s1, o1), (s2, _) = cv_wall(1), cv_wall(2)
            rows.append((f, s1, s2, s1 / f, s2 / f, o1 / s1, cold / f))

    med = [statistics.median(col) for col in zip(*rows)]
    dev = cfg.device if cfg.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    print(
        f"config: {cfg.model.name} on {cfg.data.dataset}, {cfg.train.epochs} epochs, {args.folds} folds, "
        f"device {dev}, {usable_cores()} cores, threads/job {args.threads or 'cores // jobs'}, "
        f"torch {torch.__version__}, median of {args.reps}"
    )
    print(f"one fold (warm)          {med[0]:7.2f} s")
    print(
        f"{args.folds}-fold cv --jobs 1        {med[1]:7.2f} s   ratio {med[3]:5.2f}"
        f"   (outside training: {100 * med[5]:.1f}% of the wall)"
    )
    print(f"{args.folds}-fold cv --jobs 2        {med[2]:7.2f} s   ratio {med[4]:5.2f}")
    print(f"first --jobs 2 run, incl. worker start-up {cold:7.2f} s   ratio {med[6]:5.2f}")
    print(f"goal: ratio <= {1.1 * args.folds:.1f} (= 1.1 x {args.folds} folds)")


if __name__ == "__main__":
    main()
