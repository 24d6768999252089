"""``imagefolder``: ``root/<class>/<image>`` (PNG, JPEG, BMP, ... anything PIL reads).

Class names are the sorted sub-folder names. Every file's header is read first (its size and
mode); the working size follows (``working_size``); then each image is decoded once with
``decode``, the preprocessing ``nntrain predict`` uses too, straight to that size, in a thread
pool (PIL releases the GIL while decoding). A dataset larger than ``data.memory_limit_mb`` is not decoded here: it
becomes an ``ImageFiles`` source that DataLoader workers decode batch by batch.
"""

from __future__ import annotations

import functools
import os
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from nntrain.config import DataConfig
from nntrain.errors import DataError, name_some

LAYOUT = "root/<class>/<image>.png (one sub-folder per class)"
DEFAULT_MAX_SIZE = 32
"""data.image_size null: photos larger than this are resized to DEFAULT_MAX_SIZE² (CIFAR's size: a
CPU-friendly working size the default CNN and lr train well on, 3x faster than 64 px at the same
accuracy on real photos, docs/judgment.md); smaller images keep their size."""


def image_extensions() -> set[str]:
    from PIL import Image

    Image.init()  # registers every plugin's extensions; keep those PIL can open (not save-only, e.g. .pdf)
    return {ext.lower() for ext, fmt in Image.registered_extensions().items() if fmt in Image.OPEN}


def scan(root: Path, notes: Callable[[str], None]) -> tuple[list[Path], np.ndarray, tuple[str, ...]]:
    """(image paths, int64 labels, class names); non-image files are skipped with a note."""
    if not root.exists():
        raise DataError(f"data.root: folder '{root}' does not exist; point it at {LAYOUT}")
    if not root.is_dir():
        raise DataError(f"data.root: '{root}' is a file, not a folder; imagefolder expects {LAYOUT}")
    exts = image_extensions()
    classes = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    loose = [f for f in root.iterdir() if f.is_file() and not f.name.startswith(".")]
    if not classes:
        raise DataError(f"data.root: '{root}' has no class sub-folders; imagefolder expects {LAYOUT}")
    if len(classes) == 1:
        raise DataError(
            f"data.root: '{root}' has a single class folder ('{classes[0]}'); a classifier needs at least 2 "
            "classes: add one sub-folder per class"
        )
    if loose:
        notes(
            f"{len(loose)} file(s) directly in '{root}' ignored (e.g. '{loose[0].name}'): images belong in class "
            "sub-folders"
        )
    paths: list[Path] = []
    labels: list[int] = []
    skipped: list[Path] = []
    for label, name in enumerate(classes):
        found = 0
        for dirpath, dirnames, filenames in os.walk(root / name):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for f in sorted(filenames):
                if f.startswith("."):
                    continue
                p = Path(dirpath) / f
                if p.suffix.lower() in exts:
                    paths.append(p)
                    labels.append(label)
                    found += 1
                else:
                    skipped.append(p)
        if found == 0:
            raise DataError(
                f"class folder '{root / name}' holds no images (PNG, JPEG, ...); add images or remove the folder"
            )
    if skipped:
        shown = ", ".join(f"'{p.relative_to(root)}'" for p in skipped[:3])
        notes(f"skipped {len(skipped)} non-image file(s) in class folders: {shown}{' ...' if len(skipped) > 3 else ''}")
    return paths, np.asarray(labels, dtype=np.int64), tuple(classes)


def image_mode(channels: int | None) -> str:
    """The PIL mode images are converted to: ``L`` for 1 channel, ``RGB`` otherwise."""
    return "L" if channels == 1 else "RGB"


GRAY_MODES = {"1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "F"}
_SWAPPED = {5, 6, 7, 8}  # EXIF orientations that turn the picture by 90 degrees: width and height swap


@functools.cache
def _pil():
    """PIL's Image, with its raw DecompressionBombWarning silenced: nntrain names the file in its own note
    (``bomb_note``) instead of letting a bare library warning reach the terminal."""
    import warnings

    from PIL import Image

    warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)
    return Image


class ImageError(DataError):
    """One image that cannot be used; ``cause`` (a few words) groups many such files into one message."""

    def __init__(self, path: Path, cause: str, what_to_do: str, detail: str = ""):
        super().__init__(f"image '{path}' {cause}{f' ({detail})' if detail else ''}; {what_to_do}")
        self.path, self.cause, self.what_to_do = path, cause, what_to_do


def _unreadable(path: Path, e: BaseException) -> ImageError:
    """Why ``path`` could not be opened or decoded, named as it is: a missing file, a folder, a broken link
    or a permission problem is never called corrupt (deleting a good file is never advised for those)."""
    Image = _pil()
    if isinstance(e, FileNotFoundError) and os.path.islink(path):
        return ImageError(
            path, "is a broken symbolic link", "fix or remove the link", f"it points to '{os.readlink(path)}'"
        )
    if isinstance(e, FileNotFoundError):
        return ImageError(path, "does not exist", "check the path (moved or renamed?)")
    if isinstance(e, IsADirectoryError):
        return ImageError(path, "is a folder, not an image file", "pass the files inside it or the folder itself")
    if isinstance(e, PermissionError):
        return ImageError(path, "cannot be read: permission denied", "make it readable (chmod +r) or move it away")
    if isinstance(e, Image.DecompressionBombError):
        return ImageError(
            path,
            "is refused by Pillow's decompression-bomb guard",
            "if it is a real picture, shrink it, else remove it",
            str(e),
        )
    return ImageError(path, "cannot be decoded", "it is corrupt or truncated: replace or delete it", str(e))


def bomb_note(path: Path | str, size: tuple[int, int]) -> str | None:
    """A note for an image above Pillow's decompression-bomb warning limit (decoded anyway), else None."""
    Image = _pil()
    w, h = size
    limit = Image.MAX_IMAGE_PIXELS
    if limit is None or w * h <= limit:
        return None
    return (
        f"image '{path}' is {w}x{h} ({w * h / 1e6:.0f} megapixels), above Pillow's decompression-bomb warning limit "
        f"of {limit / 1e6:.0f} megapixels: decoded anyway (it costs memory and time); check it is the picture "
        "you meant"
    )


def decode(
    path: Path, mode: str, size: tuple[int, int] | None, *, notes: Callable[[str], None] | None = None
) -> np.ndarray:
    """The one preprocessing of an image file, shared by training's image folder and ``nntrain predict``:
    decode with Pillow at full resolution (no JPEG draft scaling: any Pillow client reproduces it), apply the
    EXIF orientation, convert to ``mode``, resize once, straight to ``size`` (W, H), bilinear → (H, W) or
    (H, W, 3) uint8. Only the small result is kept; the full-size decode is freed on return. ``notes`` hears
    of an image above Pillow's decompression-bomb warning limit."""
    from PIL import ImageOps

    Image = _pil()
    try:
        with Image.open(path) as im:
            if notes is not None and (line := bomb_note(path, im.size)):
                notes(line)
            if im.getexif().get(0x0112, 1) != 1:
                im = ImageOps.exif_transpose(im)  # a camera's "rotate on display" tag, as viewers show it
            im = im.convert(mode)  # also forces the full decode: a truncated file fails here
            if size is not None and im.size != size:
                im = im.resize(size, Image.Resampling.BILINEAR)
            return np.asarray(im, dtype=np.uint8)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise _unreadable(path, e) from None


def header(path: Path) -> tuple[tuple[int, int], str]:
    """((W, H) as displayed, i.e. after the EXIF orientation, PIL mode) from the file's header; no decode."""
    Image = _pil()
    try:
        with Image.open(path) as im:
            w, h = im.size
            if im.getexif().get(0x0112, 1) in _SWAPPED:
                w, h = h, w
            return (w, h), im.mode
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise _unreadable(path, e) from None


def _each(fn: Callable[[Path], Any], paths: list[Path]) -> list[Any]:
    """``fn`` over ``paths`` in a thread pool (PIL releases the GIL), in chunks of 256 files per task (one
    future per file costs more than decoding a 32x32 PNG); order is preserved. Every file that fails is
    named in one DataError."""
    chunks = [paths[i : i + 256] for i in range(0, len(paths), 256)]
    workers = min(16, os.cpu_count() or 1, len(chunks))

    def attempt(p: Path) -> Any:
        try:
            return fn(p)
        except DataError as e:
            return e

    if workers <= 1:
        out = [attempt(p) for p in paths]
    else:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            out = [a for chunk in pool.map(lambda c: [attempt(p) for p in c], chunks) for a in chunk]
    bad = [e for e in out if isinstance(e, DataError)]
    if len(bad) == 1:
        raise DataError(str(bad[0]))
    if bad:
        raise DataError(many_bad(bad))
    return out


def many_bad(bad: list[DataError]) -> str:
    """Several unusable images in one line: grouped by cause, each group naming its files (up to 10)."""
    groups: dict[tuple[str, str], list[str]] = {}
    for e in bad:
        key = (e.cause, e.what_to_do) if isinstance(e, ImageError) else ("cannot be read", str(e))
        groups.setdefault(key, []).append(f"'{e.path}'" if isinstance(e, ImageError) else "")
    parts = [f"{len(names)} {cause} ({todo}): {name_some(names)}" for (cause, todo), names in groups.items()]
    if len(parts) == 1:
        (cause, todo), names = next(iter(groups.items()))
        return f"{len(bad)} images {cause} ({todo}): {name_some(names)}"
    return f"{len(bad)} images cannot be used: " + "; ".join(parts)


def decode_all(paths: list[Path], mode: str, size: tuple[int, int] | None) -> list[np.ndarray]:
    return _each(lambda p: decode(p, mode, size), paths)


def to_tensor(arrays: list[np.ndarray]) -> torch.Tensor:
    """list of (H, W) or (H, W, C) uint8 → (N, C, H, W) uint8."""
    x = torch.from_numpy(np.stack(arrays))
    return x.unsqueeze(1) if x.ndim == 3 else x.permute(0, 3, 1, 2).contiguous()


def read_images(paths: list[Path], channels: int | None, size: tuple[int, int] | None) -> torch.Tensor:
    """Image files → (N, C, H, W) uint8 through ``decode`` (``data.types.normalize`` follows)."""
    return to_tensor(decode_all(paths, image_mode(channels), size))


def working_size(sizes: list[tuple[int, int]]) -> tuple[int, int]:
    """data.image_size null: the most common (W, H); a tie goes to the largest of the tied sizes (by area, then
    height, then width: the same whatever the file order); a size with a side above DEFAULT_MAX_SIZE becomes
    DEFAULT_MAX_SIZE x DEFAULT_MAX_SIZE."""
    counts = Counter(sizes)
    top = max(counts.values())
    w, h = max((s for s, n in counts.items() if n == top), key=lambda s: (s[0] * s[1], s[1], s[0]))
    return (DEFAULT_MAX_SIZE, DEFAULT_MAX_SIZE) if max(w, h) > DEFAULT_MAX_SIZE else (w, h)


def size_notes(paths: list[Path], sizes: list[tuple[int, int]], target: tuple[int, int], chosen: bool) -> list[str]:
    """What resizing does to this folder, counted: how many images change size, how many change shape."""
    notes = []
    counts = Counter(sizes)
    tw, th = target
    moved = [i for i, s in enumerate(sizes) if s != target]
    if not chosen and len(counts) > 1:
        (cw, ch), n = max(counts.items(), key=lambda kv: (kv[1], kv[0][0] * kv[0][1], kv[0][1], kv[0][0]))
        capped = (cw, ch) != target
        notes.append(
            f"images have {len(counts)} different sizes; the most common, {ch}x{cw}, is shared by {n} of "
            f"{len(sizes)}: {len(moved)} resized to {th}x{tw}"
            + (f" (data.image_size is null: larger than {DEFAULT_MAX_SIZE} px trains at {th}x{tw})" if capped else "")
            + f", e.g. '{paths[moved[0]]}'; set data.image_size to choose the size"
        )
    elif not chosen and moved:
        (w, h), side = sizes[0], DEFAULT_MAX_SIZE
        notes.append(
            f"images of {h}x{w} resized to {side}x{side} (data.image_size is null: photos larger than "
            f"{side} px train at {side}x{side}); set data.image_size to choose the size"
        )
    squashed = [i for i, (w, h) in enumerate(sizes) if abs(w * th - h * tw) > 0.02 * h * tw]
    if squashed:
        w, h = sizes[squashed[0]]
        notes.append(
            f"{len(squashed)} of {len(sizes)} images have another shape than {th}x{tw} (e.g. '{paths[squashed[0]]}', "
            f"{h}x{w}): they are squashed to it, not cropped; crop them beforehand to keep their proportions"
        )
    return notes


class ImageFiles:
    """A lazy (N, C, H, W) uint8 image source for streaming: ``source[idx_list]`` decodes a batch.

    Decode errors come back as a message string (not an exception) so that the main
    process can raise a clean ``DataError`` instead of a worker traceback.
    """

    def __init__(self, paths: list[Path], mode: str, size: tuple[int, int]):
        self.paths, self.mode, self.size = [str(p) for p in paths], mode, size  # size: (W, H)

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return (len(self.paths), 1 if self.mode == "L" else 3, self.size[1], self.size[0])

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, idx: list[int]) -> torch.Tensor | str:
        try:
            return to_tensor([decode(Path(self.paths[i]), self.mode, self.size) for i in idx])
        except DataError as e:
            return str(e)

    def file_bytes(self, i: int) -> bytes:
        return Path(self.paths[i]).read_bytes()


def load(cfg: DataConfig, notes: Callable[[str], None]):
    from nntrain.data.types import Dataset, footprint_mb

    if cfg.root is None:
        raise DataError(f"data.root: required for imagefolder; set it to the folder holding {LAYOUT}")
    root = Path(cfg.root).expanduser()
    paths, y, classes = scan(root, notes)
    channels = cfg.channels or 3
    mode = image_mode(channels)
    heads = _each(header, paths)  # every file's size and mode from its header: nothing is decoded twice
    sizes = [s for s, _ in heads]
    target = (cfg.image_size, cfg.image_size) if cfg.image_size else working_size(sizes)
    for line in size_notes(paths, sizes, target, chosen=bool(cfg.image_size)):
        notes(line)
    if cfg.channels is None and all(m in GRAY_MODES for _, m in heads):
        notes(
            f"all {len(paths)} images are grayscale: they train as 3 identical channels (RGB, the default); set "
            "data.channels=1 to train on one (a third of the memory, the same information)"
        )
    huge = [(p, s) for p, s in zip(paths, sizes) if bomb_note(p, s)]
    if len(huge) == 1:
        notes(bomb_note(*huge[0]) or "")
    elif huge:
        notes(f"{len(huge)} images are above Pillow's decompression-bomb warning limit, e.g. {bomb_note(*huge[0])}")
    name = f"imagefolder:{root}"
    common = {"y": torch.from_numpy(y), "classes": classes, "name": name, "sources": tuple(map(str, paths))}
    if footprint_mb((len(paths), channels, target[1], target[0])) > cfg.memory_limit_mb:
        return Dataset(x=ImageFiles(paths, mode, target), stream=True, **common)
    return Dataset(x=to_tensor(decode_all(paths, mode, target)), **common)
