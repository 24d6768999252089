"""Per-epoch time of nntrain's engine versus a bare hand-written loop, same model/data/hyperparameters.

    python scripts/bench_train.py [--reps 5] [--epochs 10] [--set key=value ...]

Alternates A/B repetitions (nntrain, bare, nntrain, bare, ...) in one process after a
warm-up, and prints, over the repetitions, the median of (a) each run's median epoch time
and (b) its whole fit divided by its epochs (set-up, final checkpoint and test included),
and the ratios (goal ≤ 1.03). nntrain's side includes its run directory (metrics.csv
every epoch, last.pt/best.pt every output.checkpoint_seconds and at the end), as a user
gets it.
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

from nntrain.config import load_config, to_yaml
from nntrain.pipeline.setup import checkpoint_extra, setup
from nntrain.runs.rundir import RunDir
from nntrain.training.engine import fit


class _EpochClock:
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


def nntrain_epoch_seconds(s, cfg, runs_dir: str) -> dict:
    """{"epoch": median epoch seconds, "fit": whole fit ÷ epochs (set-up, final checkpoint
    and test included), "test_acc"} for nntrain's ``fit`` with a run directory."""
    run = RunDir.create(runs_dir, "bench", config_yaml=to_yaml(cfg))
    model = s.new_model()
    clock = _EpochClock()
    t0 = time.perf_counter()
    h = fit(
        model,
        s.data,
        cfg.train,
        seed=cfg.seed,
        device=s.device,
        run=run,
        checkpoint_extra=checkpoint_extra(s),
        checkpoint_seconds=cfg.output.checkpoint_seconds,
        callbacks=[clock],
    )  # as `nntrain train` runs it
    fit_s = time.perf_counter() - t0
    return {"epoch": statistics.median(clock.seconds), "fit": fit_s / len(h.records), "test_acc": h.test_acc}


def bare_epoch_seconds(s, cfg, amp_dtype=None) -> dict:
    """The same numbers for scripts/bare_loop.py (its layout conversion inside the fit time,
    as nntrain's ``fit`` does it)."""
    import torch

    d, t = s.data, cfg.train
    t0 = time.perf_counter()
    model = s.new_model().to(s.device)
    xs = [d.train.x, d.val.x, d.test.x]
    if s.device.type == "cuda":  # the same layout nntrain uses on CUDA
        torch.backends.cudnn.benchmark = True
        model = model.to(memory_format=torch.channels_last)
        xs = [x.contiguous(memory_format=torch.channels_last) for x in xs]
    o = t.optimizer
    r = bare_fit(
        model,
        xs[0],
        d.train.y,
        xs[1],
        d.val.y,
        xs[2],
        d.test.y,
        epochs=t.epochs,
        batch_size=t.batch_size,
        lr=o.lr,
        momentum=o.momentum,
        nesterov=o.nesterov,
        reg=t.reg,
        seed=cfg.seed,
        amp_dtype=amp_dtype,
    )
    fit_s = time.perf_counter() - t0
    return {"epoch": statistics.median(r["epoch_seconds"]), "fit": fit_s / t.epochs, "test_acc": r["test_acc"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default=None)
    ap.add_argument("--set", action="append", default=[], dest="overrides")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--epochs", type=int, default=10)
    args = ap.parse_args()
    cfg = load_config(args.config, [f"train.epochs={args.epochs}", *args.overrides])
    s = setup(cfg)
    print(
        f"device {s.device}, torch {torch.__version__}, threads {torch.get_num_threads()}, "
        f"{len(s.data.train)} train samples, model {cfg.model.name} {list(cfg.model.channels)} {list(cfg.model.hidden)}"
    )
    with tempfile.TemporaryDirectory() as runs_dir:
        nntrain_epoch_seconds(s, cfg, runs_dir), bare_epoch_seconds(s, cfg)  # warm-up
        a, b = [], []
        for _ in range(args.reps):
            a.append(nntrain_epoch_seconds(s, cfg, runs_dir))
            b.append(bare_epoch_seconds(s, cfg))
    for key, what in (("epoch", "median epoch"), ("fit", "whole fit / epochs")):
        ma, mb = statistics.median(r[key] for r in a), statistics.median(r[key] for r in b)
        print(f"[{what}] nntrain median {ma * 1000:8.2f} ms  (reps: {', '.join(f'{r[key] * 1000:.1f}' for r in a)})")
        print(f"[{what}] bare    median {mb * 1000:8.2f} ms  (reps: {', '.join(f'{r[key] * 1000:.1f}' for r in b)})")
        print(f"[{what}] ratio nntrain/bare = {ma / mb:.3f}  (goal <= 1.03)")


if __name__ == "__main__":
    main()
