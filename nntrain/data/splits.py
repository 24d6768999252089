"""Index splits: train/val/test holdout and stratified k-fold (scikit-learn splitters).

Everything here works on label arrays and returns index arrays, so a split can be
checked (hygiene) and reproduced (seeded) without touching the images.
"""

from __future__ import annotations

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
    from nntrain.data import sklearn_calls

    if fraction <= 0:
        return idx, np.empty(0, dtype=np.int64)
    try:
        a, b = sklearn_calls.call(
            "train_test_split", idx, test_size=fraction, random_state=seed, stratify=y[idx] if stratify else None
        )
    except ValueError as e:
        raise DataError(
            f"data.{key}={fraction:g} cannot split {len(idx)} samples"
            f"{' stratified by class' if stratify else ''}: {e}; "
            "use a larger fraction, more data, or data.stratify: false"
        ) from None
    return a.astype(np.int64), b.astype(np.int64)


def stratified_kfold(y: np.ndarray, k: int, *, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """K (train, val) index pairs over ``y``'s positions; each position is in exactly one val fold."""
    from sklearn.model_selection import StratifiedKFold

    counts = class_counts(y)
    smallest = int(counts[counts > 0].min()) if len(counts) else 0
    if k < 2:
        raise DataError(f"--folds {k}: k-fold needs at least 2 folds")
    if k > smallest:
        raise DataError(
            f"--folds {k}: the smallest class has only {smallest} samples in the pool, "
            f"so it cannot appear in every fold; use --folds {max(2, smallest)} or fewer"
        )
    skf = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    return [(tr.astype(np.int64), va.astype(np.int64)) for tr, va in skf.split(np.zeros(len(y)), y)]


def make_splits(ds: Dataset, cfg: Config) -> SplitIndices:
    return holdout(
        ds.y.numpy(),
        val_fraction=cfg.data.val_fraction,
        test_fraction=cfg.data.test_fraction,
        stratify=cfg.data.stratify,
        seed=cfg.seed,
        fixed_test=ds.fixed_test,
    )
