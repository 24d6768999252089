"""What a run's best model does on its test split: per-class precision/recall, the test images
it got most wrong (top losses), and its first-layer filters (trained, and at init)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from nntrain.report.html import array_uri, images_uris


def top_losses(outputs: Any, split: Any, classes: list[str], *, k: int = 12) -> list[dict[str, Any]]:
    """``k`` test samples of ``outputs`` (a ``SplitOutputs`` of ``split``): the misclassified ones by
    cross-entropy, highest first, then (when fewer than ``k`` are wrong) the correct ones with the highest
    loss, marked ``correct``; their normalized images, true and predicted class, probabilities."""
    if not len(outputs):
        return []
    loss = outputs.sample_loss
    pred = np.asarray(outputs.pred)
    y = outputs.y.numpy()
    order = np.lexsort((-loss, pred == y))[:k]  # errors first (False sorts first), each part by loss
    ((x, _),) = split.index_batches([torch.as_tensor(order)])
    probs = outputs.log_probs.exp()
    return [
        {
            "index": int(i),
            "true": classes[int(y[i])],
            "pred": classes[int(pred[i])],
            "p_pred": float(probs[i, pred[i]]),
            "p_true": float(probs[i, y[i]]),
            "loss": float(loss[i]),
            "correct": bool(pred[i] == y[i]),
            "img": uri,
        }
        for i, uri in zip(order.tolist(), images_uris(x.float().cpu()))
    ]


def per_class_scores(cm: np.ndarray, classes: list[str]) -> list[dict[str, Any]]:
    """Per class: support, precision, recall, F1 (0 where undefined), from the test confusion matrix."""
    from nntrain.training.metrics import precision_recall_f1

    p, r, f, n = precision_recall_f1(cm)
    return [
        {"class": c, "n": int(n[i]), "precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i])}
        for i, c in enumerate(classes)
    ]


def start_title(config: dict[str, Any]) -> str:
    """What a run's init.pt holds, for a filter panel's title: a random init, or the pretrained start
    (model.weights) that fine-tuning moved away from."""
    weights = str(config.get("model", {}).get("weights", "none"))
    if weights.lower() == "none":
        return "at initialization"
    return f"at the start (model.weights: {Path(weights).name})"


def filter_kind(weights: Any) -> str:
    """Conv weights (out, C, kh, kw) are filters; a Linear first layer's rows are hidden units shown as images."""
    return "conv filters" if weights.dim() == 4 else "hidden units"


def filters(run_dir: Path, model: Any, input_shape: Any) -> list[dict[str, Any]]:
    """The first layer's weights as pixel-exact mosaics: trained (``model``), and at init (init.pt) if kept
    (a pretrained start: the pretrained filters, so the page shows what fine-tuning changed)."""
    from nntrain.models import first_layer_weights
    from nntrain.pipeline.reopen import load_model
    from nntrain.plots import filter_tiles, mosaic_rgb, tile_mosaic, tile_scale
    from nntrain.runs.files import load_checkpoint

    weights = first_layer_weights(model)
    panels = [("trained (best model)", filter_tiles(weights, input_shape))]
    init = run_dir / "init.pt"
    if init.is_file():
        ckpt = load_checkpoint(init)
        start = filter_tiles(first_layer_weights(load_model(ckpt, init)), input_shape)
        panels.insert(0, (start_title(ckpt.get("config", {})), start))
    scale = tile_scale(panels[0][1], 32)
    return [
        {
            "title": t,
            "n": len(tiles),
            "kind": filter_kind(weights),
            "img": array_uri(mosaic_rgb(tile_mosaic(tiles), scale)),
        }
        for t, tiles in panels
    ]
