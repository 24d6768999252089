"""nntrain predict throughput vs a bare Pillow + PyTorch script on the same PNG files.

Trains nothing: builds a small CNN checkpoint for 32x32 RGB inputs, writes N random PNGs, then
times ``nntrain predict RUN FOLDER --out x.csv`` (in-process, rows written) against a loop that
decodes each file with Pillow, normalizes, and runs the same model in batches of the same size.

    OMP_NUM_THREADS=1 python scripts/bench_predict.py [--n 10000] [--batch-size 256] [--device cuda]

With --device both sides run the model there (decoding stays on the CPU).
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from benchlib import arguments
from PIL import Image


def main() -> None:
    ap = arguments(__doc__, reps=None, device="cpu", threads=False)
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--batch-size", type=int, default=256)
    args = ap.parse_args()

    from nntrain.config import Config
    from nntrain.deploy.predict import predict
    from nntrain.models import build_model
    from nntrain.runs.files import save_checkpoint

    tmp = Path(tempfile.mkdtemp(prefix="bench-predict-"))
    atexit.register(shutil.rmtree, tmp, True)  # the PNGs and the checkpoint go, whatever happens
    classes = [f"c{i}" for i in range(10)]
    cfg = Config.model_validate({"model": {"channels": [16, 32], "hidden": [64]}})
    model = build_model(cfg.model, (3, 32, 32), 10).eval()
    mean, std = [125.0, 122.0, 113.0], [63.0, 62.0, 66.0]
    ckpt = {"model": model.state_dict(), "config": cfg.model_dump(mode="json"), "classes": classes}
    ckpt |= {"input_shape": [3, 32, 32], "norm_mean": mean, "norm_std": std}
    save_checkpoint(tmp / "best.pt", ckpt)
    rng = np.random.default_rng(0)
    folder = tmp / "images"
    folder.mkdir()
    for i in range(args.n):
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(folder / f"{i:05d}.png")
    files = sorted(folder.iterdir())
    dev = torch.device(args.device)
    model = model.to(dev)

    def bare() -> list[int]:
        m, s = torch.tensor(mean)[:, None, None], torch.tensor(std)[:, None, None]
        out = []
        for b in range(0, len(files), args.batch_size):
            arrays = [np.asarray(Image.open(f).convert("RGB")) for f in files[b : b + args.batch_size]]
            x = (torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float() - m) / s
            with torch.inference_mode():
                out += model(x.to(dev)).softmax(1).argmax(1).tolist()
        return out

    def ours() -> list[int]:
        from nntrain.cli.predict import serialize

        res = predict(tmp / "best.pt", [str(folder)], batch_size=args.batch_size, device=args.device)
        (tmp / "out.csv").write_text(serialize(res.columns, res.rows, res.summary, ".csv"))
        return [classes.index(r["predicted"]) for r in res.rows]

    compare(bare, ours, args)


def compare(bare, ours, args) -> None:
    times: dict[str, float] = {}
    for name, fn in (("bare", bare), ("nntrain", ours), ("bare", bare), ("nntrain", ours)):  # 2nd round counts
        t = time.perf_counter()
        labels = fn()
        times[name] = time.perf_counter() - t
        assert len(labels) == args.n
    assert bare() == ours(), "nntrain predict and the bare script disagree"
    for name, sec in times.items():
        print(
            f"{name:8s} {args.n / sec:8.0f} images/s  ({sec:.2f}s for {args.n} files, batch {args.batch_size}, "
            f"model on {args.device})"
        )
    print(f"ratio nntrain / bare: {times['bare'] / times['nntrain']:.2f} (goal >= 0.9)")


if __name__ == "__main__":
    main()
