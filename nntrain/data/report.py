"""What ``nntrain data`` reports: per-split class counts, image shape, value range after
normalization, exact duplicates across splits, and a grid of training images exactly as
the network sees them (normalized and augmented: "visualize just before the net").
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nntrain.data.stats import SPLITS, sample_digests, split_class_counts


def describe(s: Any) -> dict[str, Any]:
    """``s`` is a ``pipeline.Setup``; returns plain data (JSON-ready)."""
    data = s.data
    counts = split_class_counts(data)
    digests, same = _digests(s.dataset) if data.splits is not None else (None, None)
    return {
        "dataset": s.dataset.name,
        "classes": list(data.classes),
        "image_shape": list(data.input_shape),
        "storage": "streaming" if s.dataset.stream else "in memory",
        "sizes": {name: len(getattr(data, name)) for name in SPLITS},
        "class_counts": counts,
        "value_range": {name: value_range(getattr(data, name), s.cfg.train.eval_batch_size) for name in SPLITS},
        "norm_mean": data.mean.tolist(),
        "norm_std": data.std.tolist(),
        "duplicates": duplicates(s.dataset, data.splits, digests) if data.splits is not None else None,
        "duplicates_are": same,
        "notes": list(s.dataset.notes),
    }


def value_range(split: Any, batch_size: int) -> dict[str, float] | None:
    """min / max / mean / std of the normalized values of a split (as fed to the network)."""
    if len(split) == 0:
        return None
    lo, hi, total, sq, n = np.inf, -np.inf, 0.0, 0.0, 0
    for xb, _ in split.eval_batches(batch_size):
        xb = xb.double()
        lo, hi = min(lo, float(xb.min())), max(hi, float(xb.max()))
        total, sq, n = total + float(xb.sum()), sq + float((xb * xb).sum()), n + xb.numel()
    mean = total / n
    return {"min": lo, "max": hi, "mean": mean, "std": max(sq / n - mean * mean, 0.0) ** 0.5}


def _digests(ds: Any) -> tuple[list[bytes], str]:
    """(one digest per sample, what equal digests mean): the file's bytes when the samples came from files
    (two different pictures resized to the same pixels, e.g. two flat colours, are not copies), else the
    sample's pixel values."""
    if ds.sources is not None and all(Path(p).is_file() for p in ds.sources):
        return [hashlib.blake2b(Path(p).read_bytes(), digest_size=16).digest() for p in ds.sources], "identical files"
    return sample_digests(ds), "identical pixel values"


def duplicates(ds: Any, splits: Any, digests: list[bytes] | None = None) -> dict[str, Any]:
    """For each pair of splits: how many samples of the later split have an exact copy in the earlier
    one (leakage: the model is scored on what it trained on), with up to 5 example pairs of dataset
    indices (and file names when the samples came from files)."""
    digests = digests if digests is not None else _digests(ds)[0]
    first: dict[str, dict[bytes, int]] = {}
    for name in SPLITS:
        seen: dict[bytes, int] = {}
        for i in getattr(splits, name):
            seen.setdefault(digests[i], int(i))
        first[name] = seen
    out: dict[str, Any] = {}
    for a, b in (("train", "val"), ("train", "test"), ("val", "test")):
        pairs = [(first[a][digests[j]], int(j)) for j in getattr(splits, b) if digests[j] in first[a]]
        out[f"{a}/{b}"] = {"count": len(pairs), "examples": pairs[:5]}
        if ds.sources is not None:
            out[f"{a}/{b}"]["files"] = [(ds.sources[i], ds.sources[j]) for i, j in pairs[:5]]
    return out


def network_view(s: Any, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``n`` training images of a seeded epoch, normalized and augmented like in training."""
    from nntrain.data.augment import make_augment

    g = torch.Generator().manual_seed(s.cfg.seed)
    perm = torch.randperm(len(s.data.train), generator=g)  # as the engine draws an epoch's order
    xb, yb = next(iter(s.data.train.train_batches(perm, n)))
    aug = make_augment(s.cfg.data.augment)
    if aug is not None:
        xb = aug(xb, g)
    return xb.float().cpu(), yb.cpu()


def image_grid(x: torch.Tensor, y: torch.Tensor, classes: tuple[str, ...], *, title: str):
    """A Figure of (B, C, H, W) normalized images; one linear map from [min, max] of the whole
    batch to black..white, so the picture shows the values the network receives."""
    from matplotlib.figure import Figure

    b = len(x)
    cols = min(8, b)
    rows = -(-b // cols)
    lo, hi = float(x.min()), float(x.max())
    fig = Figure(figsize=(1.4 * cols, 1.5 * rows + 0.6))
    for i in range(rows * cols):
        ax = fig.add_subplot(rows, cols, i + 1)
        ax.set_axis_off()
        if i >= b:
            continue
        img = ((x[i] - lo) / max(hi - lo, 1e-12)).permute(1, 2, 0).numpy()  # (H, W, C) in [0, 1]
        if img.shape[2] == 1:
            ax.imshow(img[:, :, 0], cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
        else:
            ax.imshow(img, interpolation="nearest")
        ax.set_title(classes[int(y[i])], fontsize=8)
    fig.suptitle(f"{title}\nblack = {lo:.2f}, white = {hi:.2f} (normalized values)", fontsize=9)
    fig.tight_layout()
    return fig


def report_lines(r: dict[str, Any]) -> list[str]:
    """The report as plain text lines (cli.py prints them)."""
    c, h, w = r["image_shape"]
    sizes = r["sizes"]
    lines = [
        f"dataset      {r['dataset']} ({r['storage']})",
        f"image shape  {c}x{h}x{w} (channels x height x width)",
        f"classes      {len(r['classes'])}",
        f"splits       train {sizes['train']}  val {sizes['val']}  test {sizes['test']}",
        "",
        "class counts per split:",
    ]
    width = max(12, *(len(k) for k in r["classes"]))
    lines.append(f"  {'class':<{width}} {'train':>7} {'val':>7} {'test':>7}")
    for k in r["classes"]:
        lines.append(f"  {k:<{width}} " + " ".join(f"{r['class_counts'][s][k]:>7}" for s in SPLITS))
    lines += ["", "values after normalization (what the network receives):"]
    for s in SPLITS:
        v = r["value_range"][s]
        lines.append(
            f"  {s:<5}  (empty)"
            if v is None
            else f"  {s:<5}  min {v['min']:+.3f}  max {v['max']:+.3f}  mean {v['mean']:+.3f}  std {v['std']:.3f}"
        )
    if r["duplicates"] is not None:
        lines += ["", f"exact duplicates across splits ({r['duplicates_are']}):"]
        for pair, d in r["duplicates"].items():
            a, b = pair.split("/")
            lines.append(f"  {pair:<10} {d['count']}")
            for k, (i, j) in enumerate(d["examples"][:3]):
                what = (
                    f"{d['files'][k][0]} = {d['files'][k][1]}" if "files" in d else f"{a} sample #{i} = {b} sample #{j}"
                )
                lines.append(f"    e.g. {what}")
    return lines
