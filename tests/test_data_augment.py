"""Augmentation: whole-batch tensor ops, seeded by the engine's generator, train batches only."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import nntrain.data.augment as augment
from nntrain.config import AugmentConfig, load_config
from nntrain.training.engine import fit

TINY = ["device=cpu", "model.channels=[4]", "model.hidden=[8]", "train.epochs=2", "train.batch_size=128"]


@pytest.fixture
def tiny_data():
    from nntrain.pipeline.setup import setup

    cfg = load_config(None, TINY)
    return setup(cfg), cfg


def test_random_crop_is_a_window_of_the_padded_image_and_covers_every_offset():
    p = 2
    x = torch.randn(300, 3, 6, 5)
    out = augment.random_crop(x, p, torch.Generator().manual_seed(0))
    assert out.shape == x.shape
    padded = F.pad(x, (p, p, p, p))
    seen = set()
    for i in range(len(x)):
        hits = [
            (dy, dx)
            for dy in range(2 * p + 1)
            for dx in range(2 * p + 1)
            if torch.equal(out[i], padded[i, :, dy : dy + 6, dx : dx + 5])
        ]
        assert len(hits) == 1, i  # random data: exactly one window matches
        seen.add(hits[0])
    assert len(seen) == (2 * p + 1) ** 2  # 300 draws over 25 offsets: all appear
    assert torch.equal(augment.random_crop(x, 0), x)


def test_hflip_flips_about_half_and_nothing_else():
    x = torch.randn(2000, 1, 4, 4)
    out = augment.random_hflip(x, torch.Generator().manual_seed(1))
    same = (out == x).flatten(1).all(1)
    flipped = (out == x.flip(3)).flatten(1).all(1)
    assert bool((same ^ flipped).all())  # each image is exactly itself or its mirror
    assert abs(flipped.float().mean().item() - 0.5) < 4 * math.sqrt(0.25 / 2000)


def test_same_generator_seed_same_augmentation():
    fn = augment.make_augment(AugmentConfig(crop_padding=1, hflip=True))
    x = torch.randn(64, 3, 8, 8)
    a = fn(x, torch.Generator().manual_seed(5))
    b = fn(x, torch.Generator().manual_seed(5))
    c = fn(x, torch.Generator().manual_seed(6))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert augment.make_augment(AugmentConfig()) is None


def test_fit_augments_each_train_batch_and_never_evaluation(tiny_data):
    s, cfg = tiny_data
    calls = []

    def spy(xb, g):
        calls.append(xb.shape[0])
        return xb

    model = s.new_model()
    fit(model, s.data, cfg.train, seed=0, device=torch.device("cpu"), augment=spy)
    n, bs = len(s.data.train), cfg.train.batch_size
    per_epoch = [bs] * (n // bs) + ([n % bs] if n % bs else [])
    assert calls == per_epoch * cfg.train.epochs  # train batches only: no val/test batch reaches it


def test_train_run_wires_data_augment_from_config(tiny_data, monkeypatch, tmp_path):
    from nntrain.pipeline.setup import setup
    from nntrain.pipeline.train import train_run

    flips = []
    real = augment.random_hflip
    monkeypatch.setattr(augment, "random_hflip", lambda x, g: flips.append(len(x)) or real(x, g))
    s, _ = tiny_data
    cfg = load_config(None, [*TINY, f"output.runs_dir={tmp_path}", "data.augment.hflip=true"])
    train_run(cfg, s=setup(cfg))
    assert sum(flips) == len(s.data.train) * cfg.train.epochs
