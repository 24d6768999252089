"""What a run's best model does on its test split: per-class precision/recall, the test images
it got most wrong (top losses), and its first-layer filters (trained, and at init)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from nntrain.report.html import array_uri, images_uris


def test_predictions(model: Any, split: Any, *, batch_size: int, k: int = 12) -> dict[str, Any]:
    """One pass over ``split``: predictions, and the ``k`` samples with the highest cross-entropy
    (their normalized images, true and predicted class, probabilities)."""
    model.eval()
    preds, losses, probs_true, probs_pred = [], [], [], []
    top_x: list[torch.Tensor] = []
    top_idx: list[torch.Tensor] = []
    offset = 0
    with torch.inference_mode():
        for xb, yb in split.eval_batches(batch_size):
            logits = model(xb).float()
            p = logits.softmax(1)
            loss = F.cross_entropy(logits, yb, reduction="none")
            pred = p.argmax(1)
            preds.append(pred.cpu())
            losses.append(loss.cpu())
            probs_true.append(p.gather(1, yb[:, None])[:, 0].cpu())
            probs_pred.append(p.gather(1, pred[:, None])[:, 0].cpu())
            j = loss.topk(min(k, len(loss))).indices  # this batch's candidates: memory stays O(k)
            top_x.append(xb[j].float().cpu())
            top_idx.append(j.cpu() + offset)
            offset += len(yb)
    if not preds:
        return {"pred": np.zeros(0, dtype=np.int64), "top": []}
    loss_all = torch.cat(losses)
    cand_idx = torch.cat(top_idx)
    cand_x = torch.cat(top_x)
    order = loss_all[cand_idx].argsort(descending=True)[:k]
    pred_all, pt, pp = torch.cat(preds), torch.cat(probs_true), torch.cat(probs_pred)
    y = split.y.cpu()
    uris = images_uris(cand_x[order])
    top = [
        {
            "index": int(cand_idx[o]),
            "true": int(y[cand_idx[o]]),
            "pred": int(pred_all[cand_idx[o]]),
            "p_pred": float(pp[cand_idx[o]]),
            "p_true": float(pt[cand_idx[o]]),
            "loss": float(loss_all[cand_idx[o]]),
            "img": uri,
        }
        for o, uri in zip(order.tolist(), uris)
    ]
    return {"pred": pred_all.numpy(), "top": top}


def per_class_scores(y: np.ndarray, pred: np.ndarray, classes: list[str]) -> list[dict[str, Any]]:
    """Per class: support, precision, recall, F1 (scikit-learn; 0 where undefined)."""
    from nntrain.data import sklearn_calls

    p, r, f, n = sklearn_calls.call(
        "precision_recall_fscore_support", y, pred, labels=np.arange(len(classes)), zero_division=0
    )
    return [
        {"class": c, "n": int(n[i]), "precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i])}
        for i, c in enumerate(classes)
    ]


def filters(run_dir: Path, model: Any, input_shape: Any) -> list[dict[str, Any]]:
    """The first layer's weights as pixel-exact mosaics: trained (``model``), and at init (init.pt) if kept."""
    from nntrain.models import first_layer_weights
    from nntrain.pipeline.reopen import load_model
    from nntrain.plots import filter_tiles, mosaic_rgb, tile_mosaic, tile_scale
    from nntrain.runs.files import load_checkpoint

    panels = [("trained (best model)", filter_tiles(first_layer_weights(model), input_shape))]
    init = run_dir / "init.pt"
    if init.is_file():
        ckpt = load_checkpoint(init)
        panels.insert(0, ("at initialization", filter_tiles(first_layer_weights(load_model(ckpt, init)), input_shape)))
    scale = tile_scale(panels[0][1], 32)
    return [
        {"title": t, "n": len(tiles), "img": array_uri(mosaic_rgb(tile_mosaic(tiles), scale))} for t, tiles in panels
    ]
