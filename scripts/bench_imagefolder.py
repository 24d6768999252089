"""Benchmark: load an image folder of 10,000 32x32 PNGs (10 classes) through nntrain's
imagefolder loader, against a bare sequential PIL loop doing the same decoding.

    python scripts/bench_imagefolder.py [--n 10000] [--size 32] [--format png|jpg]

Prints the seconds of each and the ratio. The images are written to a temporary folder
first (not timed).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
from benchlib import arguments


def write(root: Path, n: int, size: int, fmt: str) -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    for i in range(n):
        d = root / f"class{i % 10}"
        d.mkdir(exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(d / f"{i:05d}.{fmt}")


def bare(root: Path) -> np.ndarray:
    from PIL import Image

    paths = sorted(p for p in root.rglob("*") if p.is_file())
    return np.stack([np.asarray(Image.open(p).convert("RGB")) for p in paths])


def main() -> None:
    ap = arguments(__doc__, reps=None, device=None, threads=False)
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--format", default="png", choices=["png", "jpg"])
    args = ap.parse_args()

    from nntrain.config import load_config
    from nntrain.data.registry import load_dataset

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write(root, args.n, args.size, args.format)
        cfg = load_config(None, ["data.dataset=imagefolder", f"data.root={root}"]).data
        load_dataset(cfg)  # warm imports (PIL plugins) and the page cache, as a second run would be
        t0 = time.perf_counter()
        ds = load_dataset(cfg)
        t_nn = time.perf_counter() - t0
        t0 = time.perf_counter()
        ref = bare(root)
        t_bare = time.perf_counter() - t0
    assert tuple(ds.x.shape) == (args.n, 3, args.size, args.size) and ref.shape[0] == args.n
    print(f"imagefolder: {args.n} {args.size}x{args.size} {args.format.upper()} images")
    print(f"  nntrain load_dataset   {t_nn:6.2f} s  ({args.n / t_nn:,.0f} images/s)")
    print(f"  bare sequential PIL    {t_bare:6.2f} s  ({args.n / t_bare:,.0f} images/s)")
    print(f"  ratio nntrain / bare   {t_nn / t_bare:6.2f}")


if __name__ == "__main__":
    main()
