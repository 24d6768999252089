"""``nntrain predict``'s INPUT arguments → a flat, ordered list of items: image files, folders
(recursive, sorted), glob patterns, ``.npz`` files with ``x``, or ``-`` for paths on stdin."""

from __future__ import annotations

import glob
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np


@dataclass
class Item:
    """One input: a file to decode, or an image already in memory (one ``x[i]`` of an .npz)."""

    path: str
    file: Path | None = None
    array: np.ndarray | None = None  # (C, H, W) raw values
    label: str = ""
    error: str = ""


def _walk(root: Path, exts: set[str]) -> list[Path]:
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        found += [
            Path(dirpath) / f for f in sorted(filenames) if not f.startswith(".") and Path(f).suffix.lower() in exts
        ]
    return found


def _npz(path: Path, classes: tuple[str, ...]) -> list[Item]:
    from nntrain.data.formats.npz import _layout
    from nntrain.errors import DataError

    try:
        with np.load(path, allow_pickle=False) as f:
            if "x" not in f.files:
                return [Item(str(path), error=f"'{path}' holds no array named x (has: {', '.join(f.files)})")]
            x = _layout(np.asarray(f["x"]), str(path))
            y = np.asarray(f["y"]) if "y" in f.files else None
    except DataError as e:
        return [Item(str(path), error=str(e))]
    except (OSError, ValueError) as e:
        return [Item(str(path), error=f"'{path}' cannot be read as .npz ({e})")]
    items = []
    for i in range(len(x)):
        label = ""
        if y is not None and y.ndim == 1 and len(y) == len(x) and 0 <= int(y[i]) < len(classes):
            label = classes[int(y[i])]
        items.append(Item(f"{path}[{i}]", array=x[i], label=label))
    return items


def expand(inputs: Iterable[str], classes: tuple[str, ...], *, stdin=None) -> list[Item]:
    """Every INPUT argument → items, in argument order; a name that matches nothing becomes an item
    with ``error`` set (so it is reported in its row, and the others still run)."""
    from nntrain.data.formats.imagefolder import image_extensions

    exts = image_extensions()
    known = set(classes)
    files: list[Path | Item] = []
    for arg in inputs:
        if arg == "-":
            names = [line.strip() for line in (stdin or sys.stdin) if line.strip()]
            files += [Path(n) for n in names] or [Item("-", error="stdin ('-') gave no paths: pipe one path per line")]
            continue
        p = Path(arg).expanduser()
        if p.is_dir():
            files += _walk(p, exts) or [
                Item(arg, error=f"folder '{arg}' holds no image files ({', '.join(sorted(exts)[:6])}, ...)")
            ]
        elif p.suffix.lower() == ".npz" and p.is_file():
            files += _npz(p, classes)
        elif p.exists():
            files.append(p)
        elif glob.has_magic(arg):
            matched = sorted(Path(m) for m in glob.glob(os.path.expanduser(arg), recursive=True))
            hits = [m for m in matched if m.is_file() and m.suffix.lower() in exts]
            files += hits or [Item(arg, error=f"pattern '{arg}' matches no image file")]
        else:
            files.append(Item(arg, error=f"'{arg}' does not exist"))
    items = []
    for f in files:
        if isinstance(f, Item):
            items.append(f)
        else:
            label = f.parent.name if f.parent.name in known else ""
            items.append(Item(str(f), file=f, label=label))
    return items
