"""Datasets: a registry of loaders returning whole datasets as in-memory tensors, and
``prepare`` which splits, normalizes (statistics from train only) and moves them to the
training device once (ARCHITECTURE.md, "Performance habits")."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from nntrain.config import Config, DataConfig
from nntrain.errors import DataError
from nntrain.splits import Splits, holdout


@dataclass(frozen=True)
class Dataset:
    x: torch.Tensor  # (N, C, H, W) uint8 or float32, raw values (not normalized)
    y: torch.Tensor  # (N,) int64 class indices in [0, len(classes))
    classes: tuple[str, ...]
    name: str
    fixed_test: np.ndarray | None = None  # indices of an official test set, if the dataset has one

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(self.x.shape[1:])  # (C, H, W)


def _load_digits(cfg: DataConfig) -> Dataset:
    from sklearn.datasets import load_digits

    bunch = load_digits()  # ships inside scikit-learn: nothing is downloaded
    x = torch.from_numpy(bunch.images.astype(np.float32)).unsqueeze(1)  # (1797, 1, 8, 8), values 0..16
    y = torch.from_numpy(bunch.target.astype(np.int64))
    return Dataset(x=x, y=y, classes=tuple(str(c) for c in bunch.target_names), name="digits")


LOADERS: dict[str, Callable[[DataConfig], Dataset]] = {"digits": _load_digits}


def load_dataset(cfg: DataConfig) -> Dataset:
    try:
        loader = LOADERS[cfg.dataset]
    except KeyError:
        raise DataError(f"data.dataset: unknown dataset {cfg.dataset!r}; allowed: {', '.join(LOADERS)}") from None
    return loader(cfg)


def make_splits(ds: Dataset, cfg: Config) -> Splits:
    return holdout(
        ds.y.numpy(),
        val_fraction=cfg.data.val_fraction,
        test_fraction=cfg.data.test_fraction,
        stratify=cfg.data.stratify,
        seed=cfg.seed,
        fixed_test=ds.fixed_test,
    )


@dataclass
class Split:
    x: torch.Tensor  # (n, C, H, W) float32, normalized, on the training device
    y: torch.Tensor  # (n,) int64 on the training device

    def __len__(self) -> int:
        return len(self.y)


@dataclass
class Prepared:
    """Normalized splits resident on the training device, plus what built them."""

    train: Split
    val: Split
    test: Split
    mean: torch.Tensor  # (C,) per-channel mean of the train split (raw units)
    std: torch.Tensor  # (C,)
    classes: tuple[str, ...]
    input_shape: tuple[int, int, int]
    splits: Splits | None = field(default=None, repr=False)

    @property
    def num_classes(self) -> int:
        return len(self.classes)


def channel_stats(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and std over (N, H, W) of ``x`` (N, C, H, W); std floored to avoid /0."""
    xf = x.float()
    mean = xf.mean(dim=(0, 2, 3))
    std = xf.std(dim=(0, 2, 3)).clamp_min(1e-6)
    return mean, std


def prepare(
    ds: Dataset,
    train_idx: np.ndarray,
    val_idx: np.ndarray,
    test_idx: np.ndarray,
    device: torch.device,
    *,
    splits: Splits | None = None,
) -> Prepared:
    """Normalize with train-split statistics only and move every split to ``device`` once."""
    if len(train_idx) == 0:
        raise DataError("the train split is empty; lower data.val_fraction / data.test_fraction")
    tr = torch.as_tensor(train_idx)
    mean, std = channel_stats(ds.x[tr])

    def take(idx: np.ndarray) -> Split:
        i = torch.as_tensor(idx, dtype=torch.int64)
        x = (ds.x[i].float() - mean[:, None, None]) / std[:, None, None]
        return Split(x.to(device).contiguous(), ds.y[i].to(device))

    return Prepared(
        train=take(train_idx),
        val=take(val_idx),
        test=take(test_idx),
        mean=mean,
        std=std,
        classes=ds.classes,
        input_shape=ds.input_shape,
        splits=splits,
    )
