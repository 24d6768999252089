"""Two facts about samples, each computed in one place: how many samples each class has
(summary.json, ``nntrain data``, split hygiene, k-fold limits, npz notes) and a digest that
identifies a sample's content (the leakage check of ``nntrain sanity`` and ``nntrain data``)."""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import torch

SPLITS = ("train", "val", "test")


def class_counts(y: Any, num_classes: int = 0) -> np.ndarray:
    """Samples per class label 0..max(num_classes, max label + 1) - 1 (``y``: labels >= 0, array or tensor)."""
    labels = y.cpu().numpy() if isinstance(y, torch.Tensor) else np.asarray(y)
    return np.bincount(labels.astype(np.int64, copy=False), minlength=num_classes)


def split_class_counts(data: Any) -> dict[str, dict[str, int]]:
    """Per split of ``data`` (a ``Prepared``): class name → number of samples."""
    return {
        name: dict(zip(data.classes, class_counts(getattr(data, name).y, data.num_classes).tolist())) for name in SPLITS
    }


def sample_digests(ds: Any) -> list[bytes]:
    """One 16-byte digest per sample of ``ds`` (a ``Dataset``): of the raw pixel bytes in memory,
    of the file bytes when streaming from files. Equal digests: identical samples."""
    if isinstance(ds.x, torch.Tensor):
        flat = ds.x.reshape(len(ds.x), -1).contiguous().numpy()
        return [hashlib.blake2b(row.tobytes(), digest_size=16).digest() for row in flat]
    return [hashlib.blake2b(ds.x.file_bytes(i), digest_size=16).digest() for i in range(len(ds.x))]
