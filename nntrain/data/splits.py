"""Index splits: train/val/test holdout and stratified k-fold, in numpy.

Everything here works on label arrays and returns index arrays, so a split can be
checked (hygiene) and reproduced (seeded) without touching the images.
"""

from __future__ import annotations

import math

import numpy as np

from nntrain.config import Config
from nntrain.data.stats import class_counts
from nntrain.data.types import Dataset, SplitIndices
from nntrain.errors import DataError


def holdout(
    y: np.ndarray,
    *,
    val_fraction: float,
    test_fraction: float,
    stratify: bool,
    seed: int,
    fixed_test: np.ndarray | None = None,
) -> SplitIndices:
    """Seeded train/val/test split by fractions of the whole dataset.

    ``fixed_test`` (an official test set, e.g. MNIST's) replaces the random test part;
    val is then carved from the rest by ``val_fraction`` of that rest.
    """
    idx = np.arange(len(y))
    if fixed_test is not None:
        test = np.sort(np.asarray(fixed_test, dtype=np.int64))
        rest = np.setdiff1d(idx, test)
        val_of_rest = val_fraction
    else:
        rest, test = _split(idx, y, test_fraction, stratify, seed, "test_fraction")
        # val_fraction is of the whole dataset: rescale to a fraction of what is left
        val_of_rest = val_fraction / (1.0 - test_fraction) if test_fraction < 1 else 0.0
    train, val = _split(rest, y, val_of_rest, stratify, seed + 1, "val_fraction")
    return SplitIndices(np.sort(train), np.sort(val), np.sort(test))


def _split(idx: np.ndarray, y: np.ndarray, fraction: float, stratify: bool, seed: int, key: str):
    if fraction <= 0:
        return idx, np.empty(0, dtype=np.int64)
    try:
        a, b = train_test_split(len(idx), fraction, y[idx] if stratify else None, seed)
    except ValueError as e:
        raise DataError(
            f"data.{key}={fraction:g} cannot split {len(idx)} samples"
            f"{' stratified by class' if stratify else ''}: {e}; "
            "use a larger fraction, more data, or data.stratify: false"
        ) from None
    return idx[a], idx[b]


# The splitters below draw the same indices as scikit-learn's ``train_test_split`` (ShuffleSplit /
# StratifiedShuffleSplit) and ``StratifiedKFold(shuffle=True)`` for the same seed — numpy's legacy
# ``RandomState`` stream is stable across versions — so runs keep their splits without scikit-learn
# (tests/test_data_splits.py compares them with scikit-learn's).


def train_test_split(n: int, test_fraction: float, y: np.ndarray | None, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, test) positions in ``range(n)``: ``ceil(test_fraction * n)`` to test, stratified by ``y`` if given."""
    if not 0 < test_fraction < 1:
        raise ValueError(f"the fraction must lie in (0, 1), got {test_fraction:g}")
    n_test = math.ceil(test_fraction * n)
    n_train = n - n_test
    if n_train <= 0:
        raise ValueError(f"with {n} samples the train part would be empty")
    rng = np.random.RandomState(seed)
    if y is None:
        perm = rng.permutation(n)
        return perm[n_test:].astype(np.int64), perm[:n_test].astype(np.int64)
    classes, y_idx, counts = np.unique(y, return_inverse=True, return_counts=True)
    if counts.min() < 2:
        raise ValueError(f"class(es) {classes[counts < 2].tolist()} have a single sample; each needs at least 2")
    for part, size in (("train", n_train), ("held-out", n_test)):
        if size < len(classes):
            raise ValueError(f"the {part} part would hold {size} samples, fewer than the {len(classes)} classes")
    by_class = np.split(np.argsort(y_idx, kind="stable"), np.cumsum(counts)[:-1])
    n_i = _approximate_mode(counts, n_train, rng)
    t_i = _approximate_mode(counts - n_i, n_test, rng)
    train: list[int] = []
    test: list[int] = []
    for i, members in enumerate(by_class):
        shuffled = members.take(rng.permutation(counts[i]), mode="clip")
        train.extend(shuffled[: n_i[i]])
        test.extend(shuffled[n_i[i] : n_i[i] + t_i[i]])
    return rng.permutation(train).astype(np.int64), rng.permutation(test).astype(np.int64)


def _approximate_mode(counts: np.ndarray, n_draws: int, rng: np.random.RandomState) -> np.ndarray:
    """Samples per class when drawing ``n_draws`` in proportion to ``counts``; ties broken at random."""
    continuous = counts / counts.sum() * n_draws
    floored = np.floor(continuous)
    need = int(n_draws - floored.sum())
    if need > 0:
        remainder = continuous - floored
        for value in np.sort(np.unique(remainder))[::-1]:
            (inds,) = np.where(remainder == value)
            add = min(len(inds), need)
            floored[rng.choice(inds, size=add, replace=False)] += 1
            need -= add
            if need == 0:
                break
    return floored.astype(int)


def stratified_kfold(y: np.ndarray, k: int, *, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """K (train, val) index pairs over ``y``'s positions; each position is in exactly one val fold."""
    counts = class_counts(y)
    smallest = int(counts[counts > 0].min()) if len(counts) else 0
    if k < 2:
        raise DataError(f"--folds {k}: k-fold needs at least 2 folds")
    if k > smallest:
        raise DataError(
            f"--folds {k}: the smallest class has only {smallest} samples in the pool, "
            f"so it cannot appear in every fold; use --folds {max(2, smallest)} or fewer"
        )
    rng = np.random.RandomState(seed)
    y = np.asarray(y)
    _, first, inverse = np.unique(y, return_index=True, return_inverse=True)
    encoded = np.unique(first, return_inverse=True)[1][inverse]  # classes numbered by first appearance
    n_classes = len(first)
    order = np.sort(encoded)
    allocation = np.asarray([np.bincount(order[i::k], minlength=n_classes) for i in range(k)])  # (k, classes)
    fold_of = np.empty(len(y), dtype=np.int64)
    for c in range(n_classes):
        folds = np.arange(k).repeat(allocation[:, c])
        rng.shuffle(folds)
        fold_of[encoded == c] = folds
    positions = np.arange(len(y), dtype=np.int64)
    return [(positions[fold_of != i], positions[fold_of == i]) for i in range(k)]


def make_splits(ds: Dataset, cfg: Config) -> SplitIndices:
    return holdout(
        ds.y.numpy(),
        val_fraction=cfg.data.val_fraction,
        test_fraction=cfg.data.test_fraction,
        stratify=cfg.data.stratify,
        seed=cfg.seed,
        fixed_test=ds.fixed_test,
    )
