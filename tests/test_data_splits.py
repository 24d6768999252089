"""Holdout splits: fractions, stratification, seeding, disjointness; normalization from train only."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nntrain.config import Config
from nntrain.data.memory import prepare
from nntrain.data.registry import load_dataset
from nntrain.data.splits import holdout, make_splits
from nntrain.errors import DataError


def digits_y():
    return load_dataset(Config().data).y.numpy()


def test_holdout_partitions_and_respects_fractions():
    y = digits_y()
    s = holdout(y, val_fraction=0.15, test_fraction=0.15, stratify=True, seed=0)
    allidx = np.concatenate([s.train, s.val, s.test])
    assert sorted(allidx.tolist()) == list(range(len(y)))  # each sample exactly once
    assert len(s.test) == pytest.approx(0.15 * len(y), abs=1)
    assert len(s.val) == pytest.approx(0.15 * len(y), abs=1)


def test_holdout_is_stratified_and_seeded():
    y = digits_y()
    s = holdout(y, val_fraction=0.2, test_fraction=0.2, stratify=True, seed=3)
    overall = np.bincount(y) / len(y)
    for part in (s.train, s.val, s.test):
        assert np.abs(np.bincount(y[part], minlength=10) / len(part) - overall).max() < 0.02
    again = holdout(y, val_fraction=0.2, test_fraction=0.2, stratify=True, seed=3)
    other = holdout(y, val_fraction=0.2, test_fraction=0.2, stratify=True, seed=4)
    assert all(np.array_equal(a, b) for a, b in zip((s.train, s.val, s.test), (again.train, again.val, again.test)))
    assert not np.array_equal(s.test, other.test)


def test_fixed_test_set_is_kept_and_val_carved_from_the_rest():
    y = np.repeat(np.arange(4), 50)
    fixed = np.arange(150, 200)
    s = holdout(y, val_fraction=0.2, test_fraction=0.0, stratify=False, seed=0, fixed_test=fixed)
    assert np.array_equal(s.test, fixed)
    assert len(s.val) == 30 and set(s.val).isdisjoint(fixed) and set(s.train).isdisjoint(fixed)


def test_impossible_stratified_split_is_a_data_error():
    y = np.array([0, 0, 0, 1, 1, 1, 2])  # class 2 has one sample
    with pytest.raises(DataError, match="data.test_fraction=0.3 cannot split 7 samples stratified by class"):
        holdout(y, val_fraction=0.0, test_fraction=0.3, stratify=True, seed=0)


def test_normalization_statistics_come_from_train_only():
    ds = load_dataset(Config().data)
    s = make_splits(ds, Config())
    p = prepare(ds, s.train, s.val, s.test, torch.device("cpu"))
    raw_train = ds.x[torch.as_tensor(s.train)]
    assert p.mean.item() == pytest.approx(raw_train.mean().item(), rel=1e-5)
    assert p.std.item() == pytest.approx(raw_train.std().item(), rel=1e-5)
    assert p.train.x.mean().item() == pytest.approx(0.0, abs=1e-5)
    assert p.train.x.std().item() == pytest.approx(1.0, abs=1e-4)
    # val/test are transformed with train's statistics, not their own
    raw_test = ds.x[torch.as_tensor(s.test)]
    assert torch.allclose(p.test.x, (raw_test - p.mean) / p.std, atol=1e-5)
