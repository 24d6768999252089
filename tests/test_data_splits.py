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


# --- the numpy splitters draw exactly what scikit-learn draws (scikit-learn is only a test dependency) ---

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@settings(max_examples=60, deadline=None)
@given(
    counts=st.lists(st.integers(2, 40), min_size=2, max_size=8),
    fraction=st.floats(0.05, 0.6),
    seed=st.integers(0, 2**32 - 1),
    stratify=st.booleans(),
)
def test_train_test_split_equals_scikit_learns(counts, fraction, seed, stratify):
    from sklearn.model_selection import train_test_split as sk_split

    from nntrain.data.splits import train_test_split

    rng = np.random.default_rng(seed)
    y = rng.permutation(np.repeat(np.arange(len(counts)) * 3 + 1, counts))  # labels not 0..C-1, shuffled
    idx = np.arange(len(y))
    try:
        want = sk_split(idx, test_size=fraction, random_state=seed, stratify=y if stratify else None)
    except ValueError:
        with pytest.raises(ValueError):
            train_test_split(len(y), fraction, y if stratify else None, seed)
        return
    got = train_test_split(len(y), fraction, y if stratify else None, seed)
    assert np.array_equal(got[0], want[0]) and np.array_equal(got[1], want[1])


@settings(max_examples=60, deadline=None)
@given(counts=st.lists(st.integers(5, 30), min_size=2, max_size=6), k=st.integers(2, 5), seed=st.integers(0, 2**31))
def test_stratified_kfold_equals_scikit_learns(counts, k, seed):
    from sklearn.model_selection import StratifiedKFold

    from nntrain.data.splits import stratified_kfold

    y = np.random.default_rng(seed).permutation(np.repeat([7, 2, 9, 4, 0, 5][: len(counts)], counts))
    want = list(StratifiedKFold(n_splits=k, shuffle=True, random_state=seed).split(np.zeros(len(y)), y))
    got = stratified_kfold(y, k, seed=seed)
    assert len(got) == k
    for (gt, gv), (wt, wv) in zip(got, want):
        assert np.array_equal(gt, wt) and np.array_equal(gv, wv)


def test_default_holdout_of_the_digits_is_the_one_runs_were_trained_on():
    """The default config's splits as scikit-learn drew them before nntrain did it in numpy."""
    from sklearn.model_selection import train_test_split as sk_split

    y = digits_y()
    idx = np.arange(len(y))
    rest, test = sk_split(idx, test_size=0.15, random_state=0, stratify=y)
    train, val = sk_split(rest, test_size=0.15 / 0.85, random_state=1, stratify=y[rest])
    s = make_splits(load_dataset(Config().data), Config())
    assert np.array_equal(s.test, np.sort(test)) and np.array_equal(s.val, np.sort(val))
    assert np.array_equal(s.train, np.sort(train))


def test_shipped_digits_equal_scikit_learns():
    from sklearn.datasets import load_digits

    ds = load_dataset(Config().data)
    b = load_digits()
    assert np.array_equal(ds.x[:, 0].numpy(), b.images.astype(np.float32))
    assert np.array_equal(ds.y.numpy(), b.target) and ds.classes == tuple(str(c) for c in b.target_names)
