"""Datasets: a registry of loaders returning whole datasets as in-memory tensors, and
``prepare`` which splits, normalizes (statistics from train only) and moves them to the
training device once (ARCHITECTURE.md, "Performance habits")."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Callable, Iterator

import numpy as np
import torch

from nntrain.config import Config, DataConfig
from nntrain.errors import DataError
from nntrain.splits import Splits, holdout


@dataclass(frozen=True)
class Dataset:
    x: torch.Tensor  # (N, C, H, W) uint8 or float32, raw values (not normalized); streaming: a lazy source
    y: torch.Tensor  # (N,) int64 class indices in [0, len(classes))
    classes: tuple[str, ...]
    name: str
    fixed_test: np.ndarray | None = None  # indices of an official test set, if the dataset has one
    notes: tuple[str, ...] = ()  # what loading did that the user should know (skipped files, resizes, streaming)
    stream: bool = False  # too large for the in-memory path: train through a DataLoader (streaming.py)
    workers: int = 0  # DataLoader worker processes when streaming
    sources: tuple[str, ...] | None = None  # per-sample file names, when the samples came from files

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(self.x.shape[1:])  # (C, H, W)


def footprint_mb(shape: tuple[int, ...]) -> float:
    """Size of the normalized float32 copy of an (N, C, H, W) dataset, in MiB."""
    return float(np.prod(shape, dtype=np.float64)) * 4 / 2**20


def _load_digits(cfg: DataConfig, notes: Callable[[str], None]) -> Dataset:
    from sklearn.datasets import load_digits

    bunch = load_digits()  # ships inside scikit-learn: nothing is downloaded
    x = torch.from_numpy(bunch.images.astype(np.float32)).unsqueeze(1)  # (1797, 1, 8, 8), values 0..16
    y = torch.from_numpy(bunch.target.astype(np.int64))
    return Dataset(x=x, y=y, classes=tuple(str(c) for c in bunch.target_names), name="digits")


def _lazy(module: str) -> Callable[[DataConfig, Callable[[str], None]], Dataset]:
    """A loader from ``nntrain.datasets.<module>``, imported on first use (PIL/torchvision are slow to import)."""

    def load(cfg: DataConfig, notes: Callable[[str], None]) -> Dataset:
        import importlib

        return importlib.import_module(f"nntrain.datasets.{module}").load(cfg, notes)

    return load


LOADERS: dict[str, Callable[[DataConfig, Callable[[str], None]], Dataset]] = {
    "digits": _load_digits,
    "imagefolder": _lazy("imagefolder"),
    "npz": _lazy("npz"),
    "mnist": _lazy("torchvision_sets"),
    "fashion_mnist": _lazy("torchvision_sets"),
    "cifar10": _lazy("torchvision_sets"),
    "cifar100": _lazy("torchvision_sets"),
}


def load_dataset(cfg: DataConfig) -> Dataset:
    """Load ``cfg.dataset``, bring it to ``data.channels`` / ``data.image_size``, and decide
    between the in-memory path and streaming by ``data.memory_limit_mb``."""
    try:
        loader = LOADERS[cfg.dataset]
    except KeyError:
        raise DataError(f"data.dataset: unknown dataset {cfg.dataset!r}; allowed: {', '.join(LOADERS)}") from None
    notes: list[str] = []
    ds = loader(cfg, notes.append)
    if not ds.stream:
        from nntrain.datasets.conform import to_channels, to_size

        ds = replace(ds, x=to_size(to_channels(ds.x, cfg.channels), cfg.image_size))
    mb = footprint_mb(tuple(ds.x.shape))
    n, c, h, w = ds.x.shape
    where = f"{n} images {c}x{h}x{w}, {len(ds.classes)} classes, {mb:.1f} MiB as float32"
    if ds.stream or mb > cfg.memory_limit_mb:
        notes.append(
            f"{where} > data.memory_limit_mb={cfg.memory_limit_mb:g}: streaming batches through a DataLoader "
            f"with {cfg.workers} worker(s) instead of holding the data in memory"
        )
        return replace(ds, notes=ds.notes + tuple(notes), stream=True, workers=cfg.workers)
    notes.append(f"{where} <= data.memory_limit_mb={cfg.memory_limit_mb:g}: held in memory on the training device")
    return replace(ds, notes=ds.notes + tuple(notes))


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

    @property
    def device(self) -> torch.device:
        return self.x.device

    def train_batches(
        self, perm: torch.Tensor, batch_size: int, start: int = 0
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Batches ``start, start+1, ...`` of the epoch order ``perm`` ((n,) int64 on the CPU, drawn by
        the engine's generator): index slices of the resident tensors, no copy of the split."""
        perm = perm.to(self.x.device, non_blocking=True)
        for step in range(start, math.ceil(len(self) / batch_size)):
            idx = perm[step * batch_size : (step + 1) * batch_size]
            yield self.x[idx], self.y[idx]  # (B, C, H, W), (B,)

    def index_batches(self, batches: list[torch.Tensor]) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """One batch per index tensor (positions in this split), e.g. a rank's chunks under torchrun."""
        for idx in batches:
            idx = idx.to(self.x.device, non_blocking=True)
            yield self.x[idx], self.y[idx]

    def eval_batches(self, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for start in range(0, len(self), batch_size):
            yield self.x[start : start + batch_size], self.y[start : start + batch_size]

    def channels_last(self) -> "Split":
        return Split(self.x.contiguous(memory_format=torch.channels_last), self.y)


@dataclass
class Prepared:
    """Normalized splits resident on the training device, plus what built them."""

    train: Split  # or streaming.StreamSplit (same batch interface) for a dataset too large for memory
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
    if ds.stream:
        from nntrain.streaming import prepare_stream

        return prepare_stream(ds, train_idx, val_idx, test_idx, device, splits=splits)
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
