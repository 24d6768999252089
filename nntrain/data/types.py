"""The data types every stage passes on: a loaded ``Dataset`` (raw tensors and class
names), a normalized ``Split`` resident on the device, and ``Prepared`` (the three splits
plus the train statistics that normalized them)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Iterator

import numpy as np
import torch


@dataclass(frozen=True)
class SplitIndices:
    train: np.ndarray  # (n_train,) int64 indices into the dataset
    val: np.ndarray
    test: np.ndarray

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.train), "val": len(self.val), "test": len(self.test)}


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

    def channels_last(self) -> Split:
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
    splits: SplitIndices | None = field(default=None, repr=False)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @classmethod
    def of(cls, ds: Dataset, make: Any, idx: tuple[np.ndarray, np.ndarray, np.ndarray], mean: torch.Tensor,
           std: torch.Tensor, splits: SplitIndices | None) -> Prepared:  # fmt: skip
        """``ds``'s train/val/test indices ``idx`` turned into splits by ``make`` (resident or streamed)."""
        train, val, test = (make(i) for i in idx)
        return cls(train, val, test, mean, std, ds.classes, ds.input_shape, splits)


def channel_stats(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and std over (N, H, W) of ``x`` (N, C, H, W); std floored to avoid /0."""
    xf = x.float()
    mean = xf.mean(dim=(0, 2, 3))
    std = xf.std(dim=(0, 2, 3)).clamp_min(1e-6)
    return mean, std


def normalize(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) raw pixel values → float32 ``(x - mean) / std`` per channel (``mean``, ``std``: (C,), the
    train split's statistics). The one normalization: the in-memory splits, streamed batches, ``nntrain
    predict`` and export's parity inputs all go through it, so they cannot drift."""
    return (x.float() - mean[:, None, None]) / std[:, None, None]
