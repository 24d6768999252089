"""Benchmark: TPE + median pruning vs random search without pruning, on the digits CNN.

Space (issue 18): train.optimizer.lr log 1e-4..1, train.reg log 1e-6..1e-2, model.dropout 0..0.5;
24 trials of 3 folds per study, several seeds. Reports, per seed and on average, the best honest
mean val accuracy each search finds and the fold-epochs it trained.

    OMP_NUM_THREADS=1 python scripts/bench_search.py [--trials 24] [--folds 3] [--seeds 0,1,2] [--set train.epochs=5]
"""

from __future__ import annotations

import tempfile

from benchlib import arguments, load_cfg

SPACE = ["train.optimizer.lr=log:1e-4:1", "train.reg=log:1e-6:1e-2", "model.dropout=uniform:0:0.5"]


def search(cfg, sampler: str, pruner: str, trials: int, folds: int) -> dict:
    from nntrain.cv.folds import check
    from nntrain.cv.local import LocalExecutor
    from nntrain.cv.plan import Plan
    from nntrain.cv.search import run_search
    from nntrain.cv.space import parse_sample
    from nntrain.cv.store import CvDir
    from nntrain.cv.study import default_storage, open_study

    plan = Plan(cfg, folds, {}, parse_sample(SPACE, cfg), trials, sampler, pruner)
    fold_idx = check(plan)
    d = CvDir.create(plan, [va for _, va in fold_idx])
    study = open_study(plan, default_storage(d.path), seed=cfg.seed)
    s = run_search(plan, d, fold_idx, study, executor=LocalExecutor(1, 1))
    return {"best": s["combos"][s["best"]]["mean_val_acc"], "fold_epochs": s["fold_epochs"], "pruned": len(s["pruned"])}


def main() -> None:
    ap = arguments(__doc__, reps=None, device=None, threads=False, sets=True)
    ap.add_argument("--trials", type=int, default=24)
    ap.add_argument("--folds", type=int, default=3)
    ap.add_argument("--seeds", default="0,1,2")
    args = ap.parse_args()

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in [int(s) for s in args.seeds.split(",")]:
            cfg = load_cfg(args, {"output.runs_dir": tmp, "device": "cpu", "seed": seed})
            tpe = search(cfg, "tpe", "median", args.trials, args.folds)
            rnd = search(cfg, "random", "none", args.trials, args.folds)
            rows.append((seed, tpe, rnd))
            print(
                f"seed {seed}: TPE+median best {tpe['best']:.4f} in {tpe['fold_epochs']} fold-epochs "
                f"({tpe['pruned']} pruned) | random best {rnd['best']:.4f} in {rnd['fold_epochs']} fold-epochs "
                f"({tpe['fold_epochs'] / rnd['fold_epochs']:.0%})",
                flush=True,
            )
    n = len(rows)
    tb, rb = sum(r[1]["best"] for r in rows) / n, sum(r[2]["best"] for r in rows) / n
    te, re_ = sum(r[1]["fold_epochs"] for r in rows), sum(r[2]["fold_epochs"] for r in rows)
    print(
        f"mean over {n} seeds: TPE+median best {tb:.4f}, random best {rb:.4f}; "
        f"fold-epochs {te} vs {re_} ({te / re_:.0%})"
    )


if __name__ == "__main__":
    main()
