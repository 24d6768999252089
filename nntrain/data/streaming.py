"""The streaming path for datasets larger than ``data.memory_limit_mb``.

``StreamSplit`` offers the same batch interface as the in-memory ``data.Split``
(``train_batches``, ``eval_batches``, ``device``, ``len``), but its batches come from a
``torch.utils.data.DataLoader`` whose workers fetch raw images (decoding files for an
image folder); each batch is normalized on the training device. The batch order comes
from the engine's seeded generator, exactly as in memory.
"""

from __future__ import annotations

from typing import Any, Iterator

import numpy as np
import torch

from nntrain.data.types import Prepared, channel_stats, normalize
from nntrain.errors import DataError

STATS_SAMPLES = 1024
"""Train images drawn (seeded) to estimate the normalization mean/std without reading them all."""


class _Batches(torch.utils.data.Dataset):
    """``dataset[list_of_indices]`` → (raw (B, C, H, W), labels (B,)), or a message string on a decode error."""

    def __init__(self, source: Any, y: torch.Tensor):
        self.source, self.y = source, y

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, idx: list[int]) -> tuple[torch.Tensor, torch.Tensor] | str:
        x = self.source[idx]
        return x if isinstance(x, str) else (x, self.y[idx])


def fetch(source: Any, idx: list[int]) -> torch.Tensor:
    x = source[idx]
    if isinstance(x, str):
        raise DataError(x)
    return x


class StreamSplit:
    def __init__(
        self,
        source: Any,
        y: torch.Tensor,
        idx: np.ndarray,
        mean: torch.Tensor,
        std: torch.Tensor,
        device: torch.device,
        workers: int,
        memory_format: torch.memory_format = torch.contiguous_format,
    ):
        self.source, self.idx = source, np.asarray(idx, dtype=np.int64)
        self.y = y[torch.as_tensor(self.idx)]  # (n,) int64 on the CPU (labels are small)
        self._all_y, self.workers, self._device = y, workers, device
        self._mean, self._std = mean.to(device), std.to(device)  # (C,)
        self._format = memory_format

    def __len__(self) -> int:
        return len(self.idx)

    @property
    def device(self) -> torch.device:
        return self._device

    @property
    def x(self) -> torch.Tensor:
        """A streamed split has no resident tensor: a command that needs one says so instead of crashing."""
        raise DataError(
            f"this command needs the {len(self)} images of a split in memory, but the dataset streams "
            "(it exceeds data.memory_limit_mb); raise data.memory_limit_mb or use a smaller data.image_size"
        )

    def channels_last(self) -> StreamSplit:
        out = StreamSplit.__new__(StreamSplit)
        out.__dict__.update(self.__dict__, _format=torch.channels_last)
        return out

    def _iterate(
        self, order: torch.Tensor, batch_size: int, start: int = 0
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        steps = range(start * batch_size, len(order), batch_size)
        return self.index_batches([order[s : s + batch_size] for s in steps])

    def index_batches(self, batches: list[torch.Tensor]) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """One batch per index tensor (CPU positions in this split), e.g. a rank's chunks under torchrun."""
        batches = [self.idx[b.cpu().numpy()].tolist() for b in batches]
        loader = torch.utils.data.DataLoader(
            _Batches(self.source, self._all_y),
            batch_size=None,
            sampler=batches,
            num_workers=self.workers,
            pin_memory=self._device.type == "cuda",
        )
        for item in loader:
            if isinstance(item, str):  # a worker could not decode a file: a clean message, no worker traceback
                raise DataError(item)
            xb, yb = item
            xb = normalize(xb.to(self._device, non_blocking=True), self._mean, self._std)
            xb = xb.contiguous(memory_format=self._format)
            yield xb, yb.to(self._device, non_blocking=True)

    def train_batches(
        self, perm: torch.Tensor, batch_size: int, start: int = 0
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Same contract as ``data.Split.train_batches``: batches ``start, ...`` of the order ``perm``."""
        return self._iterate(perm.cpu(), batch_size, start)

    def eval_batches(self, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return self._iterate(torch.arange(len(self)), batch_size)


def prepare_stream(ds, train_idx, val_idx, test_idx, device: torch.device, *, splits=None, stats=None):
    if stats is not None:  # the normalization pretrained weights expect
        mean, std = stats
    else:
        rng = np.random.default_rng(0)
        sample = np.sort(rng.choice(train_idx, size=min(STATS_SAMPLES, len(train_idx)), replace=False))
        raw = torch.cat([fetch(ds.x, sample[s : s + 256].tolist()) for s in range(0, len(sample), 256)])
        mean, std = channel_stats(raw)

    def split(idx: np.ndarray) -> StreamSplit:
        return StreamSplit(ds.x, ds.y, idx, mean, std, device, ds.workers)

    return Prepared.of(ds, split, (train_idx, val_idx, test_idx), mean, std, splits)
