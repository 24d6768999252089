"""``mnist``, ``fashion_mnist``, ``cifar10``, ``cifar100`` through ``torchvision.datasets``.

Train and official test parts are joined into one dataset whose ``fixed_test`` indices
are the official test set (it becomes the test split; val is carved from train).
Nothing is downloaded unless ``data.download: true``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import torch

from nntrain.config import TORCHVISION_SETS, DataConfig
from nntrain.errors import DataError

# name → (torchvision class, sub-folder torchvision reads, files expected there, download page)
SETS = {
    "mnist": (
        "MNIST",
        "MNIST/raw",
        "train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte",
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
    ),
    "fashion_mnist": (
        "FashionMNIST",
        "FashionMNIST/raw",
        "train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte",
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    ),
    "cifar10": (
        "CIFAR10",
        "cifar-10-batches-py",
        "data_batch_1..5, test_batch, batches.meta",
        "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
    ),
    "cifar100": (
        "CIFAR100",
        "cifar-100-python",
        "train, test, meta",
        "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
    ),
}
assert set(SETS) == set(TORCHVISION_SETS), "config.TORCHVISION_SETS and the torchvision table disagree"


def _images(part) -> torch.Tensor:
    """torchvision's ``.data`` → (N, C, H, W) uint8: MNIST holds (N, 28, 28) tensors, CIFAR (N, 32, 32, 3) arrays."""
    data = part.data
    if isinstance(data, np.ndarray):
        return torch.from_numpy(data).permute(0, 3, 1, 2).contiguous()
    return data.unsqueeze(1).contiguous()


def load(cfg: DataConfig, notes: Callable[[str], None]):
    import torchvision.datasets as tvd

    from nntrain.data.types import Dataset

    cls_name, sub, files, url = SETS[cfg.dataset]
    cls = getattr(tvd, cls_name)
    root = Path(cfg.root or "data").expanduser()
    existed = _existing_dirs(root)
    try:
        train = cls(root=str(root), train=True, download=cfg.download)
        test = cls(root=str(root), train=False, download=cfg.download)
    except (RuntimeError, OSError, ValueError) as e:
        # RuntimeError: torchvision's "Dataset not found or corrupted"; OSError: network down, unreadable files
        _remove_empty_new_dirs(root, existed)
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        by_hand = f"download {url} by hand and unpack it so that '{root / sub}' holds {files}"
        if cfg.download:
            raise DataError(
                f"{cfg.dataset}: downloading into '{root / sub}' failed ({first}); is this machine offline? "
                f"{by_hand[0].upper()}{by_hand[1:]}"
            ) from None
        if isinstance(e, RuntimeError):
            raise DataError(
                f"{cfg.dataset}: files not found or corrupted in '{root / sub}' ({first}); "
                f"expected {files} there. Set data.download: true to fetch them into data.root "
                f"(now '{root}'), or {by_hand}"
            ) from None
        raise DataError(f"{cfg.dataset}: cannot read '{root / sub}' ({first}); {by_hand}") from None
    x = torch.cat([_images(train), _images(test)])
    y = torch.cat([torch.as_tensor(train.targets), torch.as_tensor(test.targets)]).long()
    fixed_test = np.arange(len(train.targets), len(y), dtype=np.int64)
    if cfg.test_fraction > 0:
        notes(
            f"{cfg.dataset} has an official test set ({len(fixed_test)} images): it is the test split; "
            "data.test_fraction is not used"
        )
    return Dataset(x=x, y=y, classes=tuple(str(c) for c in train.classes), name=cfg.dataset, fixed_test=fixed_test)


def _existing_dirs(root: Path) -> set[Path]:
    """``root``, its parents and every folder under it that exists now."""
    dirs = {p for p in [root, *root.parents] if p.is_dir()}
    if root.is_dir():
        dirs.update(p for p in root.rglob("*") if p.is_dir())
    return dirs


def _remove_empty_new_dirs(root: Path, existed: set[Path]) -> None:
    """Undo the folders a failed download created and left empty (deepest first); nothing else is touched."""
    made = [p for p in ([*root.rglob("*"), root] if root.is_dir() else []) if p.is_dir() and p not in existed]
    for p in sorted(made, key=lambda d: len(d.parts), reverse=True):
        try:
            p.rmdir()  # only succeeds on an empty folder
        except OSError:
            pass
