"""Dataset names → loaders. ``load_dataset`` returns a whole dataset as in-memory tensors
(or a lazy source for streaming), brought to ``data.channels`` / ``data.image_size``."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from nntrain.config import DATASETS, TORCHVISION_SETS, DataConfig
from nntrain.data.types import Dataset, footprint_mb
from nntrain.errors import DataError

DIGITS = Path(__file__).with_name("digits.npz")  # shipped with nntrain (DIGITS.txt: source and licence)


def _load_digits(cfg: DataConfig, notes: Callable[[str], None]) -> Dataset:
    with np.load(DIGITS) as f:
        images, target = f["images"], f["target"]
    x = torch.from_numpy(images.astype(np.float32)).unsqueeze(1)  # (1797, 1, 8, 8), values 0..16
    y = torch.from_numpy(target.astype(np.int64))
    return Dataset(x=x, y=y, classes=tuple(str(c) for c in range(10)), name="digits")


def _imagefolder(cfg: DataConfig, notes: Callable[[str], None]) -> Dataset:
    from nntrain.data.formats import imagefolder  # Pillow: imported when a folder is read

    return imagefolder.load(cfg, notes)


def _npz(cfg: DataConfig, notes: Callable[[str], None]) -> Dataset:
    from nntrain.data.formats import npz

    return npz.load(cfg, notes)


def _torchvision(cfg: DataConfig, notes: Callable[[str], None]) -> Dataset:
    from nntrain.data.formats import torchvision_sets  # torchvision costs seconds to import

    return torchvision_sets.load(cfg, notes)


LOADERS: dict[str, Callable[[DataConfig, Callable[[str], None]], Dataset]] = {
    "digits": _load_digits,
    "imagefolder": _imagefolder,
    "npz": _npz,
    **{name: _torchvision for name in TORCHVISION_SETS},
}
assert set(LOADERS) == set(DATASETS), "config.DATASETS and the loaders disagree"


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
        from nntrain.data.formats.conform import to_channels, to_size

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
