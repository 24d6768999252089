"""Check on any device that streaming trains exactly like the in-memory path (same batches,
same losses) with augmentation on, and that the batch augmentations are exact on that device.

    python scripts/check_streaming.py [cuda|cpu]
"""

import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import torch.nn.functional as F

from nntrain.config import load_config
from nntrain.data.augment import random_crop, random_hflip
from nntrain.pipeline.setup import setup
from nntrain.training.engine import fit

dev = sys.argv[1] if len(sys.argv) > 1 else "cuda"
tmp = Path(tempfile.mkdtemp())
rng = np.random.default_rng(0)
np.savez(tmp / "d.npz", x=rng.integers(0, 256, (1000, 16, 16, 3), dtype=np.uint8), y=np.arange(1000) % 5)
base = [
    f"device={dev}",
    "data.dataset=npz",
    f"data.root={tmp / 'd.npz'}",
    "model.channels=[8,16]",
    "model.hidden=[32]",
    "train.epochs=3",
    "train.batch_size=64",
    "data.augment.crop_padding=2",
    "data.augment.hflip=true",
]
res = []
for extra in ([], ["data.memory_limit_mb=0.01", "data.workers=2"]):
    cfg = load_config(None, base + extra)
    s = setup(cfg)
    from nntrain.data.augment import make_augment

    t = time.perf_counter()
    h = fit(s.new_model(), s.data, cfg.train, seed=0, device=s.device, augment=make_augment(cfg.data.augment))
    print(
        type(s.data.train).__name__,
        s.device,
        f"{time.perf_counter() - t:.2f}s",
        [(round(r["train_loss"], 5), round(r["val_acc"], 4)) for r in h.records],
        "test",
        h.test_acc,
        flush=True,
    )
    res.append([r["train_loss"] for r in h.records])
print("max rel diff train_loss mem vs stream:", max(abs(a - b) / abs(a) for a, b in zip(*res)))
x = torch.randn(500, 3, 8, 8, device=dev)
out = random_crop(x, 2, torch.Generator().manual_seed(0))
pad = F.pad(x, (2, 2, 2, 2))
ok = all(
    any(torch.equal(out[i], pad[i, :, dy : dy + 8, dx : dx + 8]) for dy in range(5) for dx in range(5))
    for i in range(500)
)
fl = random_hflip(x, torch.Generator().manual_seed(0))
ok2 = bool((((fl == x).flatten(1).all(1)) ^ ((fl == x.flip(3)).flatten(1).all(1))).all())
print("crop windows on", out.device, ok, "flip", ok2)
