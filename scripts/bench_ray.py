"""Benchmark: K-fold CV wall time on a local Ray instance ÷ the local executor's, same work.

Both run the same (combination, fold) jobs on 2 CPU processes with the same torch
threads per job: the local executor with ``--jobs 2``, Ray with 2 CPUs and
``--cpus-per-job 1``. The ratio is the price of going through Ray (task scheduling,
shipping jobs and results, worker start) on work that fits one machine; on a cluster
the point is that the denominator stops being one machine.

Start-up is shown apart: "cold" = the first cv of each executor: for Ray ``ray.init``
(starting the local instance, uploading the nntrain package) + a cv whose new workers
import torch; for the local executor starting the fork server (which imports torch) + a
cv. The timed repeats then reuse the warm Ray instance and its workers, and the local
fork server (each local cv still forks fresh workers that load the data).
Runs are interleaved and medians reported (a shared machine slows some repeats). The
script also checks that both executors give identical per-fold numbers.

    python scripts/bench_ray.py                       # default config (digits CNN, 20 epochs), 5 folds
    python scripts/bench_ray.py --set train.epochs=5 --folds 3

Needs ``pip install "nntrain[ray]"``. Prints seconds and ratios; report ratios.
"""

from __future__ import annotations

import logging
import os
import statistics
import tempfile
import time

import benchlib
from benchlib import arguments, load_cfg


def main() -> None:
    ap = arguments(__doc__, reps=3, device=None, threads=False, config=True, sets=True)
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1, help="torch threads per fold job, both executors")
    args = ap.parse_args()

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import ray

    from nntrain.cv.folds import pool_folds
    from nntrain.cv.local import LocalExecutor
    from nntrain.cv.plan import Plan
    from nntrain.cv.ray_cluster import RayExecutor, loopback_only, runtime_env
    from nntrain.training.threads import usable_cores

    with tempfile.TemporaryDirectory() as tmp:
        cfg = load_cfg(args, {"output.runs_dir": tmp, "device": "cpu"})
        plan = Plan(cfg, args.folds)
        _, _, folds = pool_folds(cfg, args.folds)

        def cv_wall(executor) -> tuple[float, dict]:
            return benchlib.cv_wall(plan, folds, executor, parallel=2)

        local = LocalExecutor(2, args.threads)
        t = time.perf_counter()
        local.warm_up()
        local_cold = time.perf_counter() - t + cv_wall(local)[0]  # fork server and workers start: shown apart
        t = time.perf_counter()
        ray.init(
            address="local",
            **loopback_only(ray),  # this machine's loopback only, as the tests and `cv --executor ray`
            num_cpus=2,
            include_dashboard=False,
            runtime_env=runtime_env(),
            logging_level=logging.WARNING,
            log_to_driver=False,
        )
        started = time.perf_counter() - t
        on_ray = RayExecutor(cpus_per_job=1, threads=args.threads)
        first, _ = cv_wall(on_ray)
        cold = started + first
        rows, same = [], True
        try:
            for _ in range(args.reps):
                (wl, sl), (wr, sr) = cv_wall(local), cv_wall(on_ray)
                rows.append((wl, wr, wr / wl))
                strip = lambda s: [
                    [{k: v for k, v in f.items() if k != "seconds"} for f in c["folds"]]  # noqa: E731
                    for c in s["combos"]
                ]
                same = same and strip(sl) == strip(sr)
        finally:
            ray.shutdown()

    wl, wr, ratio = (statistics.median(col) for col in zip(*rows))
    print(
        f"config: {cfg.model.name} on {cfg.data.dataset}, {cfg.train.epochs} epochs, {args.folds} folds, cpu, "
        f"{usable_cores()} cores, 2 processes (local --jobs 2 / Ray num_cpus=2, --cpus-per-job 1), "
        f"threads/job {args.threads}, medians of {args.reps}"
    )
    print(f"local executor cv wall        {wl:8.2f} s")
    print(f"Ray executor cv wall          {wr:8.2f} s")
    print(f"ratio Ray / local             {ratio:8.2f}")
    print(
        f"cold, first cv of the process: local (fork server start + first cv) {local_cold:.2f} s, "
        f"Ray (ray.init {started:.1f} s + first cv) {cold:.2f} s, ratio {cold / local_cold:.2f}"
    )
    print(f"identical per-fold numbers    {'yes' if same else 'NO'}")


if __name__ == "__main__":
    main()
