"""nntrain versus a bare hand-written PyTorch loop on the same work; prints ratios.

    python scripts/bench.py [--device cpu|cuda] [--only digits,cifar,cv,process,help] [--reps 5] [--threads N]

- digits  : default digits CNN (10 epochs), per-epoch time, nntrain `fit` (with its run directory) vs
            scripts/bare_loop.py, repetitions alternating A/B, medians and their ratio:
            each run's median epoch (end of one epoch to the end of the next, everything
            per epoch included), and its whole fit ÷ epochs (per-fit set-up, final
            checkpoint and test spread over the epochs).
            On CUDA also with bf16 autocast.
- cifar   : a CIFAR-shaped synthetic set (32×32×3, 10 classes, loaded through nntrain's
            npz loader) with a wider CNN [64,128,256], batch 128; on the CPU nntrain with its defaults
            (train.amp auto: bf16 on a CPU with bf16 matrix units) against the bare fp32 loop (goal ≤ 0.45,
            issue 29) and the bare bf16 loop; on CUDA fp32 and bf16 autocast, each against the bare loop.
            On the CPU, digits and cifar also print each side's achieved FLOP/s (FlopCounterMode) and its
            fraction of this machine's large matmul in the same precision.
- process : whole-process wall and peak RSS (GNU time) of `python -m nntrain train` (default config)
            vs `scripts/bare_train.py`, a user's own script doing the same work and writing what it
            would (curves and confusion matrix as PNG, the test accuracy), start-up included; both
            as the plain script and with Python's collector handled as nntrain does (--gc-tuned).
            Order rotated and reversed per repetition.
- cv      : 5-fold CV of the default config, nntrain's `run_cv` (--jobs 1) vs a bare loop over
            the same folds (scripts/bare_loop.py per fold, fold-train normalization).
- help    : wall of `python -m nntrain --help`.
Goals (issues 8, 22, 28): per-epoch ratio ≤ 1.03, process wall ≤ 1.10× the bare script, peak memory ≤ 1.10×,
help < 0.3 s.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchlib import (
    HERE,
    EpochClock,
    arguments,
    child_env,
    cv_wall,
    epoch_flops,
    flops_line,
    matmul_flops,
    median_ratio,
    set_threads,
)


def nntrain_epoch_seconds(s, cfg, runs_dir: str) -> dict:
    """{"epoch": median epoch seconds, "fit": whole fit ÷ epochs (set-up, final checkpoint
    and test included), "test_acc"} for nntrain's ``fit`` with a run directory."""
    from nntrain.config import to_yaml
    from nntrain.pipeline.setup import checkpoint_extra
    from nntrain.runs.rundir import RunDir
    from nntrain.training.engine import fit

    run = RunDir.create(runs_dir, "bench", config_yaml=to_yaml(cfg))
    model = s.new_model()
    clock = EpochClock()
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


def bare_hparams(cfg) -> dict:
    """The config's training settings as scripts/bare_loop.py's ``bare_fit`` takes them."""
    t, o = cfg.train, cfg.train.optimizer
    return dict(
        epochs=t.epochs, batch_size=t.batch_size, lr=o.lr, momentum=o.momentum, nesterov=o.nesterov, reg=t.reg,
        seed=cfg.seed,
    )  # fmt: skip


def bare_epoch_seconds(s, cfg, amp_dtype=None) -> dict:
    """The same numbers for scripts/bare_loop.py. Both sides build their model before the
    clock starts; the move to the device and the layout conversion are inside the fit time,
    as nntrain's ``fit`` does them."""
    import torch
    from bare_loop import bare_fit

    d, t = s.data, cfg.train
    model = s.new_model()  # built before the clock starts, as for nntrain's side
    t0 = time.perf_counter()
    model = model.to(s.device)
    xs = [d.train.x, d.val.x, d.test.x]
    if s.device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    if cfg.model.name == "cnn":  # the layout nntrain trains conv nets in (train.channels_last: auto)
        model = model.to(memory_format=torch.channels_last)
        xs = [x.contiguous(memory_format=torch.channels_last) for x in xs]
    r = bare_fit(
        model,
        xs[0],
        d.train.y,
        xs[1],
        d.val.y,
        xs[2],
        d.test.y,
        **bare_hparams(cfg),
        amp_dtype=amp_dtype,
    )
    fit_s = time.perf_counter() - t0
    return {"epoch": statistics.median(r["epoch_seconds"]), "fit": fit_s / t.epochs, "test_acc": r["test_acc"]}


def epoch_case(
    name: str, overrides: list[str], reps: int, amp: str = "auto", bare: tuple[str, ...] = ("", "bf16"), goal=1.03
) -> None:
    """nntrain's ``fit`` with ``train.amp={amp}`` (default: auto, nntrain's default) against the bare loop in
    each precision of ``bare`` ("": the loop in nntrain's precision; "fp32", "bf16"), alternating; the first
    bare one is measured against ``goal``. Also prints each side's achieved FLOP/s and its fraction of
    this machine's large matmul in the same precision (CPU)."""
    import torch

    from nntrain.config import load_config
    from nntrain.pipeline.setup import setup
    from nntrain.training.engine import run_precision

    cfg = load_config(None, overrides + [f"train.amp={amp}"])
    s = setup(cfg)
    precision = run_precision(cfg.train, s.new_model(), s.data.input_shape, s.device)
    print(
        f"[{name}] device {s.device} "
        f"({torch.cuda.get_device_name() if s.device.type == 'cuda' else f'{torch.get_num_threads()} threads'}), "
        f"{len(s.data.train)} train samples {tuple(s.data.input_shape)}, channels {list(cfg.model.channels)}, "
        f"batch {cfg.train.batch_size}, {cfg.train.epochs} epochs, amp {amp}: nntrain trains in {precision.name} "
        f"({precision.reason})",
        flush=True,
    )
    bares = [b or precision.name for b in bare]
    bares = [b for i, b in enumerate(bares) if b not in bares[:i]]
    dtypes = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
    with tempfile.TemporaryDirectory() as runs:
        nntrain_epoch_seconds(s, cfg, runs), [bare_epoch_seconds(s, cfg, dtypes[b]) for b in bares]  # warm-up
        a, b = [], {p: [] for p in bares}
        sides = ["nntrain", *bares]
        for i in range(reps):  # ABBA (rotated for more sides): neither side always runs first
            for side in process_order(sides, i):
                if side == "nntrain":
                    a.append(nntrain_epoch_seconds(s, cfg, runs))
                else:
                    b[side].append(bare_epoch_seconds(s, cfg, amp_dtype=dtypes[side]))
    for k, p in enumerate(bares):
        labels = (f"nntrain {precision.name}", f"bare {p}")
        median_ratio(
            name, [r["epoch"] for r in a], [r["epoch"] for r in b[p]], goal=goal if k == 0 else None, labels=labels
        )
        median_ratio(
            f"{name}, whole fit / epochs", [r["fit"] for r in a], [r["fit"] for r in b[p]], goal=None, labels=labels
        )
    if s.device.type == "cpu":
        d = s.data
        flops = epoch_flops(s.new_model(), d.input_shape, cfg.train.batch_size, len(d.train), len(d.val))
        peaks = {p: matmul_flops(p) for p in {precision.name, *bares} if p in ("fp32", "bf16")}
        if precision.name in peaks:
            flops_line(
                name,
                f"nntrain {precision.name}",
                flops,
                statistics.median(r["epoch"] for r in a),
                peaks[precision.name],
                precision.name,
            )
        for p in bares:
            if p in peaks:
                flops_line(name, f"bare {p}", flops, statistics.median(r["epoch"] for r in b[p]), peaks[p], p)


def synthetic_cifar(path: Path, n: int) -> None:
    import numpy as np

    rng = np.random.default_rng(0)
    y = rng.integers(0, 10, n)
    # class-dependent colour means so the task is learnable, plus noise; uint8 like CIFAR
    x = rng.normal(0, 40, (n, 32, 32, 3)) + (y[:, None, None, None] * 20 + 30)
    np.savez(path, x=x.clip(0, 255).astype(np.uint8), y=y)


def run_measured(args: list[str], cwd: Path) -> tuple[float, float, int]:
    """(wall seconds, peak RSS MiB, exit code) of one child process.

    Peak RSS comes from GNU time when present: a child forked straight from this (large)
    process would inherit its resident size in ru_maxrss until it execs.
    """
    gnu_time = Path("/usr/bin/time")
    prefix = [str(gnu_time), "-f", "%M"] if gnu_time.exists() else []
    t0 = time.perf_counter()
    proc = subprocess.run(
        prefix + args, cwd=cwd, env=child_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    wall = time.perf_counter() - t0
    rss = int(proc.stderr.strip().splitlines()[-1]) / 1024 if prefix else float("nan")
    return wall, rss, proc.returncode


def process_case(reps: int, device: str) -> None:
    """Like with like: both write the pictures and the test accuracy. Against ``bare_train.py`` as a user
    writes it (the goal) and against ``--gc-tuned``, which handles Python's cyclic collector as nntrain
    does, so that ratio is nntrain's own cost (CLI, config, run directory, report, its thread count).
    The order of the commands changes every repetition (rotated, and reversed every other one:
    A B C, C B A, B C A, A C B, ...), so no side always runs first or after the same neighbour."""
    with tempfile.TemporaryDirectory() as tmp:
        cwd = Path(tmp)
        cmds = {
            "nntrain": [sys.executable, "-m", "nntrain", "train", "--set", f"device={device}"],
            "bare_gc": [sys.executable, str(HERE / "bare_train.py"), device, "--gc-tuned"],
            "bare": [sys.executable, str(HERE / "bare_train.py"), device],
        }
        for cmd in cmds.values():
            run_measured(cmd, cwd)  # warm the file cache
        walls: dict[str, list[float]] = {k: [] for k in cmds}
        rss: dict[str, list[float]] = {k: [] for k in cmds}
        for i in range(reps):
            for name in process_order(list(cmds), i):
                w, r, rc = run_measured(cmds[name], cwd)
                assert rc == 0, f"{name} failed"
                walls[name].append(w), rss[name].append(r)
    print(f"(load average {os.getloadavg()[0]:.2f} at the end)")
    median_ratio("process wall vs bare script", walls["nntrain"], walls["bare"], unit="s", goal=1.10)
    median_ratio("process peak RSS vs bare script", rss["nntrain"], rss["bare"], unit="MiB", goal=1.10)
    print("(information: against the bare script with the collector handled as nntrain does)")
    median_ratio("process wall vs gc-tuned bare", walls["nntrain"], walls["bare_gc"], unit="s", goal=None)
    median_ratio("process peak RSS vs gc-tuned bare", rss["nntrain"], rss["bare_gc"], unit="MiB", goal=None)


def process_order(names: list[str], rep: int) -> list[str]:
    """Repetition ``rep``'s order: ``names`` rotated by ``rep // 2``, reversed on odd repetitions
    (two sides: A B, B A, B A, A B, ... — ABBA)."""
    k = (rep // 2) % len(names)
    order = names[k:] + names[:k]
    return order[::-1] if rep % 2 else order


def help_case(reps: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        walls = [run_measured([sys.executable, "-m", "nntrain", "--help"], Path(tmp))[0] for _ in range(reps + 1)][1:]
    print(f"[help] python -m nntrain --help: median {statistics.median(walls):.3f} s (goal < 0.3 s)")


def cv_case(reps: int, device: str) -> None:
    import numpy as np
    import torch
    from bare_loop import bare_fit

    from nntrain.config import load_config
    from nntrain.cv.folds import pool_folds
    from nntrain.cv.local import LocalExecutor
    from nntrain.cv.plan import Plan
    from nntrain.data.memory import prepare
    from nntrain.data.registry import load_dataset
    from nntrain.models import build_model

    with tempfile.TemporaryDirectory() as tmp:
        cfg = load_config(None, [f"device={device}", f"output.runs_dir={tmp}"])
        plan = Plan(cfg, 5)
        _, _, folds = pool_folds(cfg, 5)
        ds = load_dataset(cfg.data)
        dev = torch.device(device)

        threads = LocalExecutor(1, None).threads

        def nntrain_cv() -> float:
            return cv_wall(plan, folds, LocalExecutor(1, None))[0]

        def bare_cv() -> float:
            torch.set_num_threads(threads)
            t0 = time.perf_counter()
            for k, (tr, va) in enumerate(folds):
                data = prepare(ds, tr, va, np.empty(0, np.int64), dev)
                torch.manual_seed(cfg.seed * 1000 + k)
                model = build_model(cfg.model, data.input_shape, data.num_classes).to(dev)
                model = model.to(memory_format=torch.channels_last)  # as nntrain lays out a conv net
                xtr, xva = (x.contiguous(memory_format=torch.channels_last) for x in (data.train.x, data.val.x))
                bare_fit(
                    model,
                    xtr,
                    data.train.y,
                    xva,
                    data.val.y,
                    xva,
                    data.val.y,
                    **bare_hparams(cfg),
                )
            return time.perf_counter() - t0

        nntrain_cv(), bare_cv()  # warm-up
        a, b = [], []
        for _ in range(reps):
            a.append(nntrain_cv())
            b.append(bare_cv())
    median_ratio("cv 5-fold", a, b, unit="s", goal=1.03)


def main() -> None:
    ap = arguments(__doc__)
    ap.add_argument("--only", default="digits,cifar,cv,process,help")
    ap.add_argument("--cifar-n", type=int, default=None, help="synthetic samples (default 3000 on CPU, 50000 on CUDA)")
    args = ap.parse_args()
    set_threads(args.threads)
    only = set(args.only.split(","))
    cuda = args.device.startswith("cuda")
    if "help" in only:
        help_case(args.reps)
    if "digits" in only:
        # the default config: amp auto trains digits in fp32, like the bare loop
        epoch_case("digits", [f"device={args.device}", "train.epochs=10"], args.reps, bare=("fp32",))
        if cuda:
            epoch_case("digits bf16", [f"device={args.device}", "train.epochs=10"], args.reps, amp="bf16", bare=("",))
    if "cifar" in only:
        with tempfile.TemporaryDirectory() as tmp:
            npz = Path(tmp) / "cifar-synth.npz"
            synthetic_cifar(npz, args.cifar_n or (50000 if cuda else 3000))
            base = [
                f"device={args.device}",
                "data.dataset=npz",
                f"data.root={npz}",
                "model.channels=[64,128,256]",
                "model.hidden=[256]",
                "train.batch_size=256" if cuda else "train.batch_size=128",
                "train.epochs=4" if cuda else "train.epochs=2",
                "data.val_fraction=0.1",
                "data.test_fraction=0.1",
            ]
            if cuda:
                epoch_case("cifar-synth", base, args.reps, amp="off", bare=("",))
                epoch_case("cifar-synth bf16", base, args.reps, amp="bf16", bare=("",))
            else:  # nntrain's defaults (amp auto: bf16 on a bf16 CPU) against the bare fp32 loop (goal 0.45, issue 29)
                epoch_case("cifar-synth", base, args.reps, bare=("fp32", "bf16"), goal=0.45)
    if "cv" in only:
        cv_case(args.reps, args.device)
    if "process" in only:
        process_case(args.reps, args.device)


if __name__ == "__main__":
    main()
