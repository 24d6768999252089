"""The in-memory path: ``prepare`` normalizes with train-split statistics only and moves
every split to the training device once (ARCHITECTURE.md, "Performance habits"); datasets
above ``data.memory_limit_mb`` go to ``streaming.prepare_stream`` instead."""

from __future__ import annotations

import numpy as np
import torch

from nntrain.data.types import Dataset, Prepared, Split, SplitIndices, channel_stats, normalize
from nntrain.errors import DataError


def prepare(
    ds: Dataset,
    train_idx: np.ndarray,
    val_idx: np.ndarray,
    test_idx: np.ndarray,
    device: torch.device,
    *,
    splits: SplitIndices | None = None,
    stats: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> Prepared:
    """Normalize with train-split statistics only (or ``stats``: the (mean, std) pretrained weights expect)
    and move every split to ``device`` once."""
    if len(train_idx) == 0:
        raise DataError("the train split is empty; lower data.val_fraction / data.test_fraction")
    if ds.stream:
        from nntrain.data.streaming import prepare_stream

        return prepare_stream(ds, train_idx, val_idx, test_idx, device, splits=splits, stats=stats)
    mean, std = stats if stats is not None else channel_stats(ds.x[torch.as_tensor(train_idx)])

    def take(idx: np.ndarray) -> Split:
        i = torch.as_tensor(idx, dtype=torch.int64)
        x = normalize(ds.x[i], mean, std)
        return Split(x.to(device).contiguous(), ds.y[i].to(device))

    return Prepared.of(ds, take, (train_idx, val_idx, test_idx), mean, std, splits)
