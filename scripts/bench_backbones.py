"""Pretrained backbones on the CPU: seconds per epoch, nntrain's `fit` against a bare PyTorch loop doing the same
work, a frozen epoch (train.freeze_epochs: the head alone trains) and a full one, next to the default small CNN.

    python scripts/bench_backbones.py [--only resnet18,mobilenet_v3_small,efficientnet_b0,cnn] [--sizes 224,64]
                                      [--n 128] [--reps 1] [--threads N]

Data: ``--n`` synthetic CIFAR-like images (bench.py's ``synthetic_cifar``, through nntrain's npz loader), resized
to each size by ``data.image_size``; 10 classes, batch 32, the default split (about 70% train). Backbones start
from a torchvision-format state dict of random values (there is no network here; the cost does not depend on
the values). Each fit runs 2 epochs with train.freeze_epochs=1: epoch 1 frozen, epoch 2 full (the cnn: 2 full).
The bare loop (``bare_epochs``) does the same work by hand: per-epoch permutation, cross-entropy + R(W) over
every conv/linear weight, SGD with momentum, the frozen epoch with the backbone's parameters not requiring
gradients and its BatchNorm in eval mode, channels_last, the validation pass, the best weights kept. Both sides
run in float32 (train.amp=off: the same precision). Printed: each epoch kind's median seconds on both sides and
their ratio, and frozen ÷ full (≈ forward ÷ (forward + backward): a frozen epoch skips the backbone's backward).
One untimed warm-up fit per side first. A 224-px resnet18 training step costs ~5.5 GFLOP per image (forward +
backward): keep --n small.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

from benchlib import EpochClock, arguments, median_ratio

BATCH = 32


def nntrain_epochs(s, cfg, runs_dir: str) -> list[float]:
    from nntrain.config import to_yaml
    from nntrain.pipeline.setup import checkpoint_extra
    from nntrain.runs.rundir import RunDir
    from nntrain.training.engine import fit

    run = RunDir.create(runs_dir, "bench", config_yaml=to_yaml(cfg))
    model, clock = s.new_model(), EpochClock()
    fit(
        model, s.data, cfg.train, seed=cfg.seed, device=s.device, run=run, checkpoint_extra=checkpoint_extra(s),
        checkpoint_seconds=cfg.output.checkpoint_seconds, callbacks=[clock],
    )  # fmt: skip  # as `nntrain train` runs it
    return clock.seconds


def bare_epochs(s, cfg) -> list[float]:
    """The same epochs in a hand-written loop (model built before the clock, as on nntrain's side)."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    t, d = cfg.train, s.data
    model = s.new_model().to(memory_format=torch.channels_last)
    body = getattr(model, "backbone", None)
    xtr, xva = (x.contiguous(memory_format=torch.channels_last) for x in (d.train.x, d.val.x))
    weights = [m.weight for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    o = t.optimizer
    opt = torch.optim.SGD(model.parameters(), lr=o.lr, momentum=o.momentum, nesterov=o.nesterov)
    gen = torch.Generator().manual_seed(cfg.seed)
    seconds, best = [], -1.0
    for epoch in range(1, t.epochs + 1):
        t0 = time.perf_counter()
        frozen = body is not None and epoch <= t.freeze_epochs
        if body is not None:
            for p in body.parameters():
                p.requires_grad_(not frozen)
        model.train()
        if frozen:
            body.net.eval()  # frozen: the backbone's BatchNorm keeps its statistics
        perm = torch.randperm(len(d.train.y), generator=gen)
        for i in range(0, len(perm), t.batch_size):
            idx = perm[i : i + t.batch_size]
            logits = model(xtr[idx])
            loss = F.cross_entropy(logits, d.train.y[idx]) + 0.5 * t.reg * sum((w * w).sum() for w in weights)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        model.eval()
        with torch.inference_mode():
            acc = (model(xva).argmax(1) == d.val.y).float().mean().item()
        if acc > best:
            best, _ = acc, {k: v.clone() for k, v in model.state_dict().items()}
        seconds.append(time.perf_counter() - t0)
    return seconds


def case(name: str, size: int, data: Path, weights: Path | None, reps: int, threads: int | None) -> None:
    from nntrain.config import load_config
    from nntrain.pipeline.setup import setup

    backbone = name != "cnn"
    sets = [
        "device=cpu", "data.dataset=npz", f"data.root={data}", f"data.image_size={size}", "train.amp=off",
        f"train.batch_size={BATCH}", "train.epochs=2", "threads=auto", f"model.name={name}",
    ]  # fmt: skip
    if backbone:
        sets += [f"model.weights={weights}", "train.freeze_epochs=1", "train.optimizer.lr=0.01"]
    cfg = load_config(None, sets)
    s = setup(cfg)
    import torch

    torch.set_num_threads(threads or s.threads)  # --threads, else nntrain's own choice for this work
    label = f"{name} {size}px"
    print(
        f"[{label}] {len(s.data.train)} train / {len(s.data.val)} val images {tuple(s.data.input_shape)}, batch "
        f"{BATCH}, {torch.get_num_threads()} threads, float32",
        flush=True,
    )
    a, b = [], []
    with tempfile.TemporaryDirectory() as runs:
        nntrain_epochs(s, cfg, runs), bare_epochs(s, cfg)  # warm-up: oneDNN picks its kernels per shape
        for i in range(reps):  # alternate which side runs first
            for side in ("nntrain", "bare") if i % 2 == 0 else ("bare", "nntrain"):
                if side == "nntrain":
                    a.append(nntrain_epochs(s, cfg, runs))
                else:
                    b.append(bare_epochs(s, cfg))
    kinds = ("frozen", "full") if backbone else ("full", "full")
    for k, kind in enumerate(kinds):
        if backbone or k == 1:
            median_ratio(f"{label}, {kind} epoch", [r[k] for r in a], [r[k] for r in b], unit="s/epoch", goal=None)
    if backbone:
        frozen = statistics.median(r[0] for r in a) / statistics.median(r[1] for r in a)
        bare = statistics.median(r[0] for r in b) / statistics.median(r[1] for r in b)
        print(f"[{label}] frozen / full epoch: nntrain {frozen:.2f}, bare {bare:.2f}", flush=True)


def main() -> None:
    ap = arguments(__doc__, reps=1, device=None)
    ap.add_argument("--only", default="cnn,resnet18,mobilenet_v3_small,efficientnet_b0")
    ap.add_argument("--sizes", default="224,64")
    ap.add_argument("--n", type=int, default=128, help="images in the synthetic set (default 128)")
    args = ap.parse_args()
    import torch
    import torchvision
    from bench import synthetic_cifar

    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "synthetic.npz"
        synthetic_cifar(data, args.n)
        for name in args.only.split(","):
            weights = None
            if name != "cnn":
                weights = Path(tmp) / f"{name}.pth"
                torch.save(torchvision.models.get_model(name).state_dict(), weights)
            for size in (int(v) for v in args.sizes.split(",")):
                t0 = time.perf_counter()
                case(name, size, data, weights, args.reps, args.threads)
                print(f"[{name} {size}px] measured in {time.perf_counter() - t0:.0f}s", flush=True)


if __name__ == "__main__":
    main()
