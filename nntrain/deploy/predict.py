"""``nntrain predict``: inputs → one row per input (``path, predicted, probability, label, error``,
then ``top2, top2_probability, ...``), and a summary (accuracy and per-class counts when the
inputs carry labels). A bad input fills its row's ``error``; the others are still predicted."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np

from nntrain.deploy.inputs import Item, expand
from nntrain.deploy.source import Source, open_source
from nntrain.errors import NntrainError


@dataclass
class PredictResult:
    columns: list[str]
    rows: list[dict[str, Any]]
    summary: dict[str, Any]
    source: Source
    notes: list[str]  # about inputs that were predicted (an image above Pillow's decompression-bomb limit)


def columns(top_k: int) -> list[str]:
    cols = ["path", "predicted", "probability", "label", "error"]
    for k in range(2, top_k + 1):
        cols += [f"top{k}", f"top{k}_probability"]
    return cols


def _pixels(items: list[Item], src: Source, notes: Callable[[str], None] | None = None) -> tuple[list[int], Any]:
    """Decode the batch's inputs (failures recorded on their item) → (indices that decoded, uint8
    (n, C, H, W) tensor). Files go through training's ``decode``; the batch is stacked as (n, H, W, C)
    and viewed as (n, C, H, W), the channels-last layout PyTorch's CPU convolutions run fastest on."""
    import torch

    from nntrain.data.formats.conform import to_channels, to_size
    from nntrain.data.formats.imagefolder import decode, image_mode
    from nntrain.errors import DataError

    c, h, w = src.input_shape
    mode = image_mode(c)
    ok, arrays = [], []
    for i, it in enumerate(items):
        if it.error:
            continue
        if it.file is not None:
            try:
                a = decode(it.file, mode, (w, h), notes=notes)
            except DataError as e:
                it.error = str(e)
                continue
            arrays.append(a if a.ndim == 3 else a[:, :, None])
            ok.append(i)
            continue
        x = torch.from_numpy(np.ascontiguousarray(it.array))[None]
        try:
            x = to_size(to_channels(x, c), h) if tuple(x.shape[1:]) != (c, h, w) else x
        except ValueError as e:
            it.error = f"{it.path}: {e}"
            continue
        if tuple(x.shape[1:]) != (c, h, w):
            it.error = f"{it.path}: shape {tuple(x.shape[1:])} cannot be brought to the model's {(c, h, w)}"
            continue
        arrays.append(x[0].permute(1, 2, 0).numpy())
        ok.append(i)
    if not arrays:
        return ok, None
    return ok, torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2)


def predict(
    source: str | Path,
    inputs: Iterable[str],
    *,
    top_k: int = 3,
    batch_size: int = 256,
    stdin=None,
    device: str = "cpu",
    progress: Callable[[int, int], None] | None = None,
) -> PredictResult:
    src = open_source(source, device)
    items = expand(inputs, src.classes, stdin=stdin)
    if all(it.error for it in items):  # nothing that could be decoded: one line, no table of failures
        more = f" (and {len(items) - 1} more input(s) like it)" if len(items) > 1 else ""
        raise NntrainError(f"nothing to predict: {items[0].error}{more}")
    k = max(1, min(top_k, len(src.classes)))
    cols = columns(k)
    rows: list[dict[str, Any]] = []
    notes: list[str] = []
    for start in range(0, len(items), batch_size):
        batch = items[start : start + batch_size]
        ok, x = _pixels(batch, src, notes.append)
        probs = src.probabilities(src.normalize(x)) if x is not None else np.empty((0, len(src.classes)))
        top = np.argsort(-probs, axis=1, kind="stable")[:, :k]
        by_item = dict(zip(ok, range(len(ok))))
        for i, it in enumerate(batch):
            row: dict[str, Any] = dict.fromkeys(cols, "")
            row.update(path=it.path, label=it.label, error=it.error)
            if i in by_item and not it.error:
                j = by_item[i]
                for rank, c in enumerate(top[j], start=1):
                    name, p = ("predicted", "probability") if rank == 1 else (f"top{rank}", f"top{rank}_probability")
                    row[name], row[p] = src.classes[c], float(probs[j, c])
            rows.append(row)
        if progress is not None:
            progress(min(start + batch_size, len(items)), len(items))
    return PredictResult(cols, rows, summarize(rows, src.classes), src, notes)


def summarize(rows: list[dict[str, Any]], classes: tuple[str, ...]) -> dict[str, Any]:
    failed = [r for r in rows if r["error"]]
    done = [r for r in rows if not r["error"]]
    labelled = [r for r in done if r["label"]]
    out: dict[str, Any] = {"inputs": len(rows), "predicted": len(done), "failed": len(failed)}
    if labelled:
        per_class = []
        for name in classes:
            mine = [r for r in labelled if r["label"] == name]
            correct = sum(r["predicted"] == name for r in mine)
            per_class.append(
                {"class": name, "n": len(mine), "correct": correct, "acc": correct / len(mine) if mine else None}
            )
        out["labelled"] = len(labelled)
        out["accuracy"] = sum(r["predicted"] == r["label"] for r in labelled) / len(labelled)
        out["per_class"] = per_class
    return out
