"""``npz``: a NumPy ``.npz`` file with ``x`` (N×H×W, N×H×W×C or N×C×H×W; uint8 or float),
``y`` (N integer labels) and optional ``classes`` (names, one per label value).

Read with ``allow_pickle=False``: an archive holding Python objects is refused, never run.
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from nntrain.config import DataConfig
from nntrain.data.stats import class_counts
from nntrain.errors import DataError, name_some

FORMAT = "np.savez(file, x=images, y=labels[, classes=names])"


def _layout(x: np.ndarray, where: str) -> np.ndarray:
    """→ (N, C, H, W). A 4-D array is channels-last when its last axis is 1 or 3, else channels-first."""
    if x.ndim == 3:
        return x[:, None]
    if x.ndim == 4:
        if x.shape[3] in (1, 3):
            return x.transpose(0, 3, 1, 2)
        if x.shape[1] in (1, 3):
            return x
        raise DataError(
            f"{where}: x has shape {x.shape}: no axis of size 1 or 3 for the channels; "
            "expected N×H×W, N×H×W×C or N×C×H×W with C = 1 or 3"
        )
    raise DataError(f"{where}: x has {x.ndim} dimensions {x.shape}; expected N×H×W, N×H×W×C or N×C×H×W")


def load(cfg: DataConfig, notes: Callable[[str], None]):
    from nntrain.data.types import Dataset

    if cfg.root is None:
        raise DataError(f"data.root: required for npz; set it to a .npz file written by {FORMAT}")
    path = Path(cfg.root).expanduser()
    if not path.is_file():
        what = "is a folder" if path.is_dir() else "does not exist"
        raise DataError(f"data.root: '{path}' {what}; npz expects a .npz file written by {FORMAT}")
    if not zipfile.is_zipfile(path):  # .npz is a zip of .npy arrays; np.load would guess "pickle" for anything else
        raise DataError(
            f"data.root: '{path}' is not a readable .npz file (not a zip archive of arrays); write it with {FORMAT}"
        )
    try:
        with np.load(path, allow_pickle=False) as f:
            keys = set(f.files)
            missing = {"x", "y"} - keys
            if missing:
                raise DataError(
                    f"'{path}' lacks the array(s) {', '.join(sorted(missing))} (it has: "
                    f"{', '.join(sorted(keys)) or 'none'}); "
                    f"write it with {FORMAT}"
                )
            x, y = f["x"], f["y"]
            names = f["classes"] if "classes" in keys else None
    except DataError:
        raise
    except ValueError as e:  # object arrays need pickle: refused
        raise DataError(f"'{path}' holds Python objects ({e}); save plain numeric arrays with {FORMAT}") from None
    except (OSError, zipfile.BadZipFile, EOFError) as e:
        raise DataError(f"'{path}' is not a readable .npz file ({e}); write it with {FORMAT}") from None
    where = f"'{path}'"

    if not (x.dtype == np.uint8 or np.issubdtype(x.dtype, np.floating)):
        raise DataError(f"{where}: x has dtype {x.dtype}; expected uint8 (0..255) or float images")
    x = _layout(x, where)
    if np.issubdtype(x.dtype, np.floating) and not np.isfinite(x).all():
        raise DataError(f"{where}: x contains NaN or infinite values; clean the data first")
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise DataError(f"{where}: y must be a 1-D array of integer labels, got dtype {y.dtype} shape {y.shape}")
    if len(y) != len(x):
        raise DataError(f"{where}: x has {len(x)} images but y has {len(y)} labels; they must match one to one")
    if len(y) == 0:
        raise DataError(f"{where}: x and y are empty")
    if names is not None:
        if names.ndim != 1 or names.dtype.kind not in "US":
            raise DataError(
                f"{where}: classes must be a 1-D array of strings, got dtype {names.dtype} shape {names.shape}"
            )
        classes = tuple(str(c) for c in names)
    else:
        classes = tuple(str(c) for c in range(int(y.max()) + 1)) if y.min() >= 0 else ()
    if y.min() < 0 or y.max() >= len(classes):
        bad = int(y[(y < 0) | (y >= max(len(classes), 1))][0])
        allowed = f"0..{len(classes) - 1} (one per entry of classes)" if names is not None else "non-negative integers"
        raise DataError(f"{where}: label {bad} in y is out of range; allowed: {allowed}")
    if len(classes) < 2:
        raise DataError(f"{where}: only {len(classes)} class; a classifier needs at least 2")
    empty = [c for c, n in zip(classes, class_counts(y, len(classes))) if n == 0]
    if empty:
        notes(f"{len(empty)} class(es) have no samples in '{path}': {name_some(empty)}")
    xt = torch.from_numpy(np.ascontiguousarray(x if x.dtype == np.uint8 else x.astype(np.float32)))
    return Dataset(x=xt, y=torch.from_numpy(y.astype(np.int64)), classes=classes, name=f"npz:{path}")
