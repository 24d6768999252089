"""Per-epoch time of nntrain's engine versus a bare hand-written loop, same model/data/hyperparameters.

    python scripts/bench_train.py [--reps 5] [--epochs 10] [--set key=value ...]

Alternates A/B repetitions (nntrain, bare, nntrain, bare, ...) in one process after a
warm-up, and prints the median per-epoch seconds of each and their ratio (goal ≤ 1.05 on
the default digits config). nntrain's side includes its run directory (metrics.csv,
last.pt/best.pt each epoch), as a user gets it.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from bare_loop import bare_fit  # noqa: E402
from nntrain.config import load_config, to_yaml  # noqa: E402
from nntrain.engine import fit  # noqa: E402
from nntrain.pipeline import checkpoint_extra, setup  # noqa: E402
from nntrain.runs import RunDir  # noqa: E402


def nntrain_epoch_seconds(s, cfg, runs_dir: str) -> tuple[float, float]:
    run = RunDir.create(runs_dir, "bench", config_yaml=to_yaml(cfg))
    model = s.new_model()
    t0 = time.perf_counter()
    h = fit(model, s.data, cfg.train, seed=cfg.seed, device=s.device, run=run, checkpoint_extra=checkpoint_extra(s),
            checkpoint_seconds=cfg.output.checkpoint_seconds)  # as `nntrain train` runs it
    return (time.perf_counter() - t0) / len(h.records), h.test_acc


def bare_epoch_seconds(s, cfg, amp_dtype=None) -> tuple[float, float]:
    import torch

    model = s.new_model().to(s.device)
    d, t = s.data, cfg.train
    xs = [d.train.x, d.val.x, d.test.x]
    if s.device.type == "cuda":  # the same layout nntrain uses on CUDA
        torch.backends.cudnn.benchmark = True
        model = model.to(memory_format=torch.channels_last)
        xs = [x.contiguous(memory_format=torch.channels_last) for x in xs]
    o = t.optimizer
    t0 = time.perf_counter()
    r = bare_fit(model, xs[0], d.train.y, xs[1], d.val.y, xs[2], d.test.y, epochs=t.epochs, batch_size=t.batch_size,
                 lr=o.lr, momentum=o.momentum, nesterov=o.nesterov, reg=t.reg, seed=cfg.seed, amp_dtype=amp_dtype)
    return (time.perf_counter() - t0) / t.epochs, r["test_acc"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default=None)
    ap.add_argument("--set", action="append", default=[], dest="overrides")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--epochs", type=int, default=10)
    args = ap.parse_args()
    cfg = load_config(args.config, [f"train.epochs={args.epochs}", *args.overrides])
    s = setup(cfg)
    print(f"device {s.device}, torch {torch.__version__}, threads {torch.get_num_threads()}, "
          f"{len(s.data.train)} train samples, model {cfg.model.name} {list(cfg.model.channels)} {list(cfg.model.hidden)}")
    with tempfile.TemporaryDirectory() as runs_dir:
        nntrain_epoch_seconds(s, cfg, runs_dir), bare_epoch_seconds(s, cfg)  # warm-up
        a, b = [], []
        for _ in range(args.reps):
            a.append(nntrain_epoch_seconds(s, cfg, runs_dir)[0])
            b.append(bare_epoch_seconds(s, cfg)[0])
    ma, mb = statistics.median(a), statistics.median(b)
    print(f"nntrain  median {ma * 1000:8.2f} ms/epoch  (reps: {', '.join(f'{x * 1000:.1f}' for x in a)})")
    print(f"bare     median {mb * 1000:8.2f} ms/epoch  (reps: {', '.join(f'{x * 1000:.1f}' for x in b)})")
    print(f"ratio nntrain/bare = {ma / mb:.3f}  (goal <= 1.05)")


if __name__ == "__main__":
    main()
