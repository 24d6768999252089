"""Benchmark of the training recipes (issue 20), over several seeds, mean ± std:

1. digits made imbalanced (classes 5-9 keep 10 % of their *train* samples; val/test stay
   balanced): test balanced accuracy with train.class_weights none vs balanced;
2. digits and CIFAR-shaped synthetic data (32x32x3, class templates + noise): test accuracy with
   label_smoothing 0.1 + ema + warmup vs the plain recipe;
3. the cost per epoch of EMA: median epoch seconds with and without train.ema (same config).

    python scripts/bench_recipes.py                     # 3 seeds, default digits CNN for 20 epochs
    python scripts/bench_recipes.py --seeds 5 --epochs 30
    python scripts/bench_recipes.py --set device=cuda

Report the figures with the machine they came from (a loaded CPU makes the timings noisy).
"""

from __future__ import annotations

import dataclasses
import statistics
import tempfile
from pathlib import Path

import numpy as np
import torch
from benchlib import arguments  # first: puts this checkout's nntrain on sys.path

# isort: split
from nntrain.config import load_config
from nntrain.data.types import Split
from nntrain.pipeline.setup import setup
from nntrain.training.engine import fit
from nntrain.training.metrics import evaluate_classes, with_tta
from nntrain.training.threads import apply_threads

RECIPE = ["train.label_smoothing=0.1", "train.warmup_epochs=2"]


def imbalanced(data, keep: float, rare: range, seed: int):
    """``data`` with the train split's classes in ``rare`` cut to ``keep`` of their samples."""
    g = torch.Generator().manual_seed(seed)
    y = data.train.y.cpu()
    mask = torch.ones(len(y), dtype=torch.bool)
    for c in rare:
        idx = (y == c).nonzero().flatten()
        drop = idx[torch.randperm(len(idx), generator=g)[int(round(keep * len(idx))) :]]
        mask[drop] = False
    mask = mask.to(data.train.y.device)
    return dataclasses.replace(data, train=Split(data.train.x[mask], data.train.y[mask]))


def run(sets: list[str], seed: int, *, imbalance: bool = False) -> dict:
    cfg = load_config(None, sets + [f"seed={seed}"])
    s = setup(cfg)
    apply_threads(s.threads)
    data = imbalanced(s.data, 0.10, range(5, 10), seed) if imbalance else s.data
    torch.manual_seed(seed)
    model = s.new_model()
    h = fit(model, data, cfg.train, seed=seed, device=s.device, tta=cfg.eval.tta)
    res = evaluate_classes(with_tta(model, cfg.eval.tta), data.test, data.classes, name="test")
    secs = [r["seconds"] for r in h.records]
    return {"acc": res.accuracy, "bal": res.balanced_accuracy, "epoch_s": statistics.median(secs)}


def ms(xs: list[float]) -> str:
    return f"{statistics.mean(xs):.4f} ± {statistics.stdev(xs) if len(xs) > 1 else 0.0:.4f}"


def synthetic_cifar(path: Path, n: int = 2000, seed: int = 0) -> Path:
    """10 classes of 32x32x3 images: a smooth random template per class + strong pixel noise + a random shift."""
    rng = np.random.default_rng(seed)
    templates = rng.normal(size=(10, 3, 8, 8)).repeat(4, axis=2).repeat(4, axis=3)
    y = rng.integers(0, 10, n)
    x = templates[y] + rng.normal(scale=3.5, size=(n, 3, 32, 32))
    for i in range(n):
        x[i] = np.roll(x[i], rng.integers(-3, 4, 2), axis=(1, 2))
    x = np.clip((x + 4) / 8 * 255, 0, 255).astype(np.uint8)
    np.savez(path, x=x, y=y)
    return path


def main() -> None:
    ap = arguments(__doc__, reps=None, device=None, threads=False, sets=True)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--ema", type=float, default=0.99, help="EMA decay of the recipe")
    a = ap.parse_args()
    base = ["device=cpu", f"train.epochs={a.epochs}", *a.set]
    recipe = RECIPE + [f"train.ema={a.ema}"]
    seeds = range(a.seeds)

    print(f"seeds {a.seeds}, {a.epochs} epochs, EMA decay {a.ema}; torch threads {torch.get_num_threads()}")
    print("1. digits, classes 5-9 at 10 % of their train samples: test balanced accuracy")
    for w in ("none", "balanced"):
        r = [run(base + [f"train.class_weights={w}"], sd, imbalance=True) for sd in seeds]
        print(f"   class_weights {w:9s} balanced acc {ms([x['bal'] for x in r])}  acc {ms([x['acc'] for x in r])}")

    with tempfile.TemporaryDirectory() as tmp:
        npz = synthetic_cifar(Path(tmp) / "cifar_like.npz")
        sets = {
            "digits": base,
            "CIFAR-shaped synthetic": base + ["data.dataset=npz", f"data.root={npz}"],
        }
        print("2. test accuracy: plain vs label_smoothing 0.1 + ema + warmup 2 epochs")
        ema_cost = {}
        for name, st in sets.items():
            plain = [run(st, sd) for sd in seeds]
            rec = [run(st + recipe, sd) for sd in seeds]
            print(f"   {name:24s} plain {ms([x['acc'] for x in plain])}   recipe {ms([x['acc'] for x in rec])}")
            if name == "digits":
                ema = [run(st + [f"train.ema={a.ema}"], sd) for sd in seeds]
                ema_cost = {"off": [x["epoch_s"] for x in plain], "on": [x["epoch_s"] for x in ema]}
    off, on = statistics.median(ema_cost["off"]), statistics.median(ema_cost["on"])
    print(f"3. EMA cost per epoch (digits): {off * 1e3:.1f} ms without, {on * 1e3:.1f} ms with: {on / off - 1:+.1%}")


if __name__ == "__main__":
    main()
