"""fp32 versus bf16 (train.amp) and torch.compile on the CPU: accuracy, break-even work size, compile pay-off.

    python scripts/bench_precision.py [--only accuracy,breakeven,compile] [--seeds 3] [--reps 3] [--threads N]

- accuracy  : nntrain's ``fit`` with train.amp off and bf16, seeds 0..N-1 each, on the CIFAR-shaped
              synthetic set (scripts/bench.py's, 3,000 samples, CNN [64,128,256], batch 128, 8 epochs) and
              on a folder of real photographs (crops of scikit-learn's china.jpg / flower.jpg and
              matplotlib's grace_hopper.jpg, 3 classes of 150, 32×32, the same CNN, batch 32, 10 epochs);
              prints test accuracy mean ± std side by side (goal: equal within noise).
- breakeven : a bare training step (scripts/bare_loop.py's work) in fp32 and in bf16 autocast for CNNs of
              growing width on 32×32×3 inputs, alternating; prints each step's forward MACs
              (training.threads.step_macs) and the bf16/fp32 time ratio — where it drops below 1 is
              where train.amp: auto's threshold (training.device.BF16_MIN_STEP_MACS) belongs.
- compile   : whole ``fit`` wall (compile time included) with train.compile off/on × amp off/bf16 on the
              CIFAR-shaped work and on digits (their default epochs), alternating per repetition; prints
              medians, the compile overhead (first epoch minus a later one) and the per-epoch gain, and the
              break-even number of epochs.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

from benchlib import REPO, arguments, set_threads


def cifar_overrides(npz: Path, n_epochs: int = 4) -> list[str]:
    return [
        "device=cpu", "data.dataset=npz", f"data.root={npz}", "model.channels=[64,128,256]", "model.hidden=[256]",
        "train.batch_size=128", f"train.epochs={n_epochs}", "data.val_fraction=0.1", "data.test_fraction=0.2",
    ]  # fmt: skip


def photo_overrides(root: Path, n_epochs: int = 10) -> list[str]:
    return [
        "device=cpu", "data.dataset=imagefolder", f"data.root={root}", "data.image_size=32",
        "model.channels=[64,128,256]", "model.hidden=[256]", "train.batch_size=32", f"train.epochs={n_epochs}",
        "data.val_fraction=0.15", "data.test_fraction=0.25",
    ]  # fmt: skip


def fit_once(overrides: list[str], amp: str, seed: int, compile_: bool = False) -> dict:
    from nntrain.config import load_config
    from nntrain.pipeline.setup import setup
    from nntrain.training.engine import fit

    cfg = load_config(None, overrides + [f"train.amp={amp}", f"seed={seed}", f"train.compile={compile_}"])
    s = setup(cfg)
    clock = _Clock()
    t0 = time.perf_counter()
    h = fit(s.new_model(), s.data, cfg.train, seed=cfg.seed, device=s.device, callbacks=[clock])
    return {"wall": time.perf_counter() - t0, "epochs": clock.seconds, "test_acc": h.test_acc, "precision": h.precision}


class _Clock:
    def on_fit_start(self, info) -> None:
        self.seconds: list[float] = []
        self._t = time.perf_counter()

    def on_epoch_end(self, record) -> None:
        now = time.perf_counter()
        self.seconds.append(now - self._t)
        self._t = now


def _ms(xs: list[float]) -> str:
    return f"{statistics.mean(xs):.4f} ± {statistics.stdev(xs) if len(xs) > 1 else 0.0:.4f}"


def accuracy_case(seeds: int) -> None:
    import sys

    from bench import synthetic_cifar

    sys.path.insert(0, str(REPO / "tests"))
    from conftest import make_photo_folder  # the tests' real-photo folder

    with tempfile.TemporaryDirectory() as tmp:
        npz = Path(tmp) / "cifar-synth.npz"
        synthetic_cifar(npz, 3000)
        photos = make_photo_folder(Path(tmp) / "photos", per_class=150)
        for name, ov in (("cifar-synth", cifar_overrides(npz, 8)), ("photos", photo_overrides(photos))):
            acc: dict[str, list[float]] = {"off": [], "bf16": []}
            for seed in range(seeds):
                for amp in ("off", "bf16") if seed % 2 == 0 else ("bf16", "off"):
                    acc[amp].append(fit_once(ov, amp, seed)["test_acc"])
            print(f"[accuracy {name}] test acc over {seeds} seeds: fp32 {_ms(acc['off'])}   bf16 {_ms(acc['bf16'])}")
            print(f"[accuracy {name}] per seed fp32 {acc['off']} bf16 {acc['bf16']}", flush=True)


def breakeven_case(reps: int) -> None:
    import torch
    import torch.nn.functional as F

    from nntrain.config import load_config
    from nntrain.models import build_model
    from nntrain.training.threads import step_macs

    rgb, digits = (3, 32, 32), (1, 8, 8)
    cases = [([32, 64], 64, digits), ([8, 16], 64, rgb), ([8, 16], 128, rgb), ([16, 32], 64, rgb)]
    cases += [([32, 64], 64, rgb), ([32, 64, 128], 64, rgb), ([64, 128, 256], 128, rgb)]
    for channels, batch, shape in cases:
        cfg = load_config(None, [f"model.channels={channels}"])
        x = torch.randn(batch, *shape).contiguous(memory_format=torch.channels_last)
        y = torch.randint(0, 10, (batch,))
        times: dict[str, list[float]] = {"fp32": [], "bf16": []}
        torch.manual_seed(0)
        model = build_model(cfg.model, shape, 10).to(memory_format=torch.channels_last)
        macs = step_macs(model, shape, batch)
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        steps = max(3, min(50, int(2e10 / macs)))
        for r in range(reps + 1):
            for prec in ("fp32", "bf16") if r % 2 == 0 else ("bf16", "fp32"):
                t0 = time.perf_counter()
                for _ in range(steps):
                    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=prec == "bf16"):
                        logits = model(x)
                    loss = F.cross_entropy(logits.float(), y)
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                if r:  # the first round warms up
                    times[prec].append((time.perf_counter() - t0) / steps)
        a, b = statistics.median(times["fp32"]), statistics.median(times["bf16"])
        print(
            f"[breakeven] channels {channels} batch {batch} input {shape}: {macs:.2e} MACs/step, "
            f"fp32 {a * 1e3:.1f} ms, "
            f"bf16 {b * 1e3:.1f} ms, bf16/fp32 {b / a:.2f}",
            flush=True,
        )


def compile_case(reps: int) -> None:
    from bench import synthetic_cifar

    with tempfile.TemporaryDirectory() as tmp:
        npz = Path(tmp) / "cifar-synth.npz"
        synthetic_cifar(npz, 1400)
        cases = (("cifar-synth", cifar_overrides(npz, 4)), ("digits", ["device=cpu"]))
        for name, ov in cases:
            combos = [(amp, c) for amp in ("off", "bf16") for c in (False, True)]
            runs: dict[tuple[str, bool], list[dict]] = {k: [] for k in combos}
            for r in range(reps):
                for k in combos if r % 2 == 0 else combos[::-1]:
                    runs[k].append(fit_once(ov, k[0], 0, compile_=k[1]))
            base = statistics.median(statistics.median(x["epochs"][1:]) for x in runs[("off", False)])
            for (amp, c), xs in runs.items():
                wall = statistics.median(x["wall"] for x in xs)
                epoch = statistics.median(statistics.median(x["epochs"][1:]) for x in xs)
                first = statistics.median(x["epochs"][0] for x in xs)
                print(
                    f"[compile {name}] amp {amp:<4} compile {str(c):<5}: fit {wall:.1f} s, first epoch {first:.2f} s, "
                    f"later epochs {epoch:.3f} s ({epoch / base:.2f}x fp32 eager)",
                    flush=True,
                )
            for amp in ("off", "bf16"):
                eager, comp = runs[(amp, False)], runs[(amp, True)]
                e = statistics.median(statistics.median(x["epochs"][1:]) for x in eager)
                c = statistics.median(statistics.median(x["epochs"][1:]) for x in comp)
                overhead = statistics.median(x["epochs"][0] for x in comp) - c
                gain = e - c
                be = f"{overhead / gain:.0f} epochs" if gain > 0 else "never (compiled epochs are not faster)"
                print(f"[compile {name}] amp {amp}: compile costs {overhead:.1f} s, saves {gain:.3f} s/epoch: {be}")


def main() -> None:
    ap = arguments(__doc__, reps=3, device=None)
    ap.add_argument("--only", default="accuracy,breakeven,compile")
    ap.add_argument("--seeds", type=int, default=3)
    args = ap.parse_args()
    set_threads(args.threads)
    only = set(args.only.split(","))
    if "breakeven" in only:
        breakeven_case(args.reps)
    if "accuracy" in only:
        accuracy_case(args.seeds)
    if "compile" in only:
        compile_case(args.reps)


if __name__ == "__main__":
    main()
