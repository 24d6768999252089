"""Honest scores for a combination: every fold scored at ONE epoch common to all folds.

A fold's best epoch is chosen on that same val split, so the mean of per-fold bests is biased
upward (most for long, noisy runs, and by different amounts for different combinations). Here
the combination's val-accuracy curve is the mean over its folds, epoch by epoch (up to the
shortest fold: early stopping); its score is that curve's maximum, at ``epoch`` (1-based),
reported as the mean ± std over folds at that epoch; ``--refit`` trains for ``epoch`` epochs.
The per-fold best stays in the summary as information only.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

NAN = float("nan")


def curves(folds: list[dict[str, Any]], key: str = "val_acc_curve") -> np.ndarray:
    """(folds, common epochs) array of one per-epoch metric; NaN where a fold diverged."""
    n = min(len(f[key]) for f in folds) if folds else 0
    return np.array([[NAN if v is None else v for v in f[key][:n]] for f in folds], dtype=float).reshape(len(folds), n)


def honest(folds: list[dict[str, Any]]) -> dict[str, Any]:
    """Score of the folds run so far: mean ± std at the argmax of the mean val-accuracy curve, and at
    the last common epoch. A diverged fold (or no epoch at all) makes the score NaN."""
    acc = curves(folds)
    if acc.size == 0 or any(f.get("diverged") for f in folds) or np.isnan(acc).any():
        return {
            "score": NAN,
            "std": NAN,
            "epoch": 0,
            "last": NAN,
            "last_std": NAN,
            "val_loss": NAN,
            "val_loss_std": NAN,
        }
    mean = acc.mean(axis=0)
    e = int(np.argmax(mean))  # first epoch of the maximum: fewer epochs on ties
    loss = curves(folds, "val_loss_curve")[:, e]
    return {
        "score": float(mean[e]),
        "std": float(acc[:, e].std()),  # population std, as scikit-learn
        "epoch": e + 1,
        "last": float(mean[-1]),
        "last_std": float(acc[:, -1].std()),
        "val_loss": float(loss.mean()),
        "val_loss_std": float(loss.std()),
    }


def rank_key(row: dict[str, Any]) -> tuple:
    """Highest score first; ties: smaller std, then earlier trial; NaN (diverged) last."""
    s = row["score"]
    return (math.isnan(s), -np.nan_to_num(s), np.nan_to_num(row["std"]), row["trial"])
