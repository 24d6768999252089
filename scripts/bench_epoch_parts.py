"""Where nntrain's per-epoch time beyond the bare loop goes, on the CIFAR-shaped case of bench.py.

    python scripts/bench_epoch_parts.py [--device cuda] [--reps 6] [--n 50000]

Four ways to train the same model on the same data, in alternating order, median epoch of each:

- bare       : scripts/bare_loop.py (the yardstick of bench.py)
- loop       : nntrain's ``train_one_epoch`` + ``evaluate`` + scheduler, nothing else
- fit        : nntrain's ``fit`` without a run directory
- fit+run    : ``fit`` with a run directory (checkpoints, metrics.csv), as ``nntrain train`` runs it

loop vs bare isolates the per-step loop, fit vs loop fit's per-epoch extras (callbacks, best-state
copy, update ratios), fit+run vs fit the files. Also prints each way's process CPU time per epoch:
on CUDA, CPU ≈ wall means a launch-bound loop, where host-side work shows directly.
Written for the CUDA gap of docs/speed.md (CIFAR-shaped 1.07 on an H100, launch-bound there).
"""

from __future__ import annotations

import atexit
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from benchlib import arguments


def main() -> None:
    ap = arguments(__doc__, reps=6, device="cuda", threads=True)
    ap.add_argument("--n", type=int, default=None, help="synthetic samples (default 50000 on CUDA, 3000 on CPU)")
    ap.add_argument("--epochs", type=int, default=4)
    args = ap.parse_args()

    import torch
    from bare_loop import bare_fit
    from bench import _EpochClock, bare_hparams, synthetic_cifar

    from nntrain.config import load_config, to_yaml
    from nntrain.pipeline.setup import checkpoint_extra, setup
    from nntrain.runs.rundir import RunDir
    from nntrain.training.engine import _layout, evaluate, fit, train_one_epoch
    from nntrain.training.optim import make_optimizer, make_scheduler

    if args.threads:
        torch.set_num_threads(args.threads)
    cuda = args.device.startswith("cuda")
    tmp = tempfile.mkdtemp(prefix="bench-parts-")
    atexit.register(shutil.rmtree, tmp, True)
    npz = Path(tmp) / "cifar-synth.npz"
    synthetic_cifar(npz, args.n or (50000 if cuda else 3000))
    cfg = load_config(
        None,
        [
            f"device={args.device}",
            "data.dataset=npz",
            f"data.root={npz}",
            "model.channels=[64,128,256]",
            "model.hidden=[256]",
            f"train.batch_size={256 if cuda else 64}",
            f"train.epochs={args.epochs}",
            "data.val_fraction=0.1",
            "data.test_fraction=0.1",
        ],
    )
    s = setup(cfg)
    d, t = s.data, cfg.train

    def bare() -> list[float]:
        model, (tr, va, te) = _layout(s.new_model().to(s.device), (d.train, d.val, d.test), s.device)
        r = bare_fit(model, tr.x, tr.y, va.x, va.y, te.x, te.y, **bare_hparams(cfg))
        return r["epoch_seconds"]

    def loop() -> list[float]:
        model, (tr, va, _) = _layout(s.new_model().to(s.device), (d.train, d.val, d.test), s.device)
        opt = make_optimizer(model, t.optimizer)
        sched = make_scheduler(opt, t)
        gen, out = torch.Generator().manual_seed(cfg.seed), []
        for _ in range(t.epochs):
            t0 = time.perf_counter()
            train_one_epoch(model, tr, optimizer=opt, batch_size=t.batch_size, reg=t.reg, generator=gen)
            evaluate(model, va, batch_size=t.eval_batch_size, reg=t.reg)
            sched.step()
            out.append(time.perf_counter() - t0)
        return out

    def fitted(with_run: bool) -> list[float]:
        clock = _EpochClock()
        run = RunDir.create(tmp, "parts", config_yaml=to_yaml(cfg)) if with_run else None
        extra = checkpoint_extra(s) if with_run else None
        fit(s.new_model(), d, t, seed=cfg.seed, device=s.device, run=run, checkpoint_extra=extra, callbacks=[clock])
        return clock.seconds

    ways = {"bare": bare, "loop": loop, "fit": lambda: fitted(False), "fit+run": lambda: fitted(True)}
    for fn in ways.values():
        fn()  # warm-up: cuDNN autotuning, allocator, first-call imports
    wall: dict[str, list[float]] = {k: [] for k in ways}
    cpu: dict[str, list[float]] = {k: [] for k in ways}
    names = list(ways)
    for i in range(args.reps):
        for name in names if i % 2 == 0 else names[::-1]:
            c0 = time.process_time()
            seconds = ways[name]()
            wall[name].append(statistics.median(seconds) * 1000)
            cpu[name].append((time.process_time() - c0) / len(seconds) * 1000)
    print(f"{len(d.train)} train samples {tuple(d.input_shape)}, {t.epochs} epochs, batch {t.batch_size}, {s.device}")
    base = statistics.median(wall["bare"])
    for name in names:
        w = statistics.median(wall[name])
        print(
            f"{name:8s} median epoch {w:8.1f} ms ({w / base:.3f} x bare)  process CPU per epoch "
            f"{statistics.median(cpu[name]):8.1f} ms  reps {[round(x) for x in wall[name]]}"
        )


if __name__ == "__main__":
    main()
