"""Streaming trains exactly like the in-memory path (same batches, same losses) with
augmentation on, and the batch augmentations are exact, on each device (was
scripts/check_streaming.py; the CUDA case runs under the `cuda` marker, e.g. scripts/gpu_check.sh)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from nntrain.config import load_config
from nntrain.data.augment import make_augment, random_crop, random_hflip
from nntrain.pipeline.setup import setup
from nntrain.training.engine import fit

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)]


@pytest.mark.parametrize("device", DEVICES)
def test_streaming_trains_like_in_memory_with_augmentation(device, tmp_path):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "d.npz", x=rng.integers(0, 256, (400, 16, 16, 3), dtype=np.uint8), y=np.arange(400) % 5)
    base = [
        f"device={device}",
        "data.dataset=npz",
        f"data.root={tmp_path / 'd.npz'}",
        "model.channels=[8]",
        "model.hidden=[16]",
        "train.epochs=2",
        "train.batch_size=64",
        "data.augment.crop_padding=2",
        "data.augment.hflip=true",
    ]
    losses, kinds = [], []
    for extra in ([], ["data.memory_limit_mb=0.01", "data.workers=2"]):
        cfg = load_config(None, base + extra)
        s = setup(cfg)
        h = fit(s.new_model(), s.data, cfg.train, seed=0, device=s.device, augment=make_augment(cfg.data.augment))
        kinds.append(type(s.data.train).__name__)
        losses.append([r["train_loss"] for r in h.records])
    assert kinds[0] != kinds[1] and kinds[1] == "StreamSplit", kinds  # the two paths really differ
    assert len(losses[0]) == len(losses[1]) == 2
    for a, b in zip(*losses):
        assert b == pytest.approx(a, rel=1e-5)


@pytest.mark.parametrize("device", DEVICES)
def test_batch_crop_and_flip_are_exact_on_the_device(device):
    x = torch.randn(200, 3, 8, 8, device=device)
    out = random_crop(x, 2, torch.Generator().manual_seed(0))
    assert out.device == x.device and out.shape == x.shape
    pad = F.pad(x, (2, 2, 2, 2))
    for i in range(len(x)):  # every output is one of the 25 windows of its padded input
        assert any(torch.equal(out[i], pad[i, :, dy : dy + 8, dx : dx + 8]) for dy in range(5) for dx in range(5)), i
    fl = random_hflip(x, torch.Generator().manual_seed(0))
    same, flipped = (fl == x).flatten(1).all(1), (fl == x.flip(3)).flatten(1).all(1)
    assert bool((same ^ flipped).all())  # each image is either kept or mirrored, never both or neither
    assert 0 < int(flipped.sum()) < len(x)  # and both happen
