"""A cv directory's report, read from its files (plan.json, summary.json, refit/summary.json) only,
so it does not depend on how the search was run."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from nntrain.errors import NntrainError
from nntrain.report.html import figure_uri


def _read(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        raise NntrainError(f"cannot read '{path}': {e}; the cv directory is damaged") from None


def confidence_interval(values: list[float], level: float = 0.95) -> tuple[float, float] | None:
    """Student-t interval of the mean over folds (sample std, k−1 degrees of freedom); None for < 2 folds.
    Folds share training data, so this is an optimistic (too narrow) interval: a guide, not a test."""
    from scipy import stats

    v = np.asarray([x for x in values if x is not None and math.isfinite(x)], dtype=float)
    if len(v) < 2:
        return None
    half = stats.t.ppf(0.5 + level / 2, len(v) - 1) * v.std(ddof=1) / math.sqrt(len(v))
    return float(v.mean() - half), float(v.mean() + half)


def cv_context(d: Path) -> dict[str, Any]:
    plan = _read(d / "plan.json") or {}
    summary = _read(d / "summary.json")
    combos = (summary or {}).get("combos", [])
    ranking = (summary or {}).get("ranking") or list(range(len(combos)))
    best = combos[(summary or {}).get("best", ranking[0] if ranking else 0)] if combos else None
    if best is not None:  # folds numbered 1..k as on screen (summaries from before count from 0)
        shift = 1 - (summary or {}).get("first_fold", 0)
        best = {**best, "folds": [{**f, "fold": f["fold"] + shift} for f in best["folds"]]}
    ci = None
    if best is not None:
        # around the headline mean: each fold at the common epoch (summaries from before it: the fold's own best)
        ci = confidence_interval([f.get("val_acc_at", f["best_val_acc"]) for f in best["folds"]])
    refit = _read(d / "refit" / "summary.json")
    keys = list((plan.get("grid") or {}).keys()) + list((plan.get("sample") or {}).keys())
    if not keys and combos:
        keys = list(combos[0]["params"].keys())
    return {
        "name": d.name,
        "path": str(d),  # as given: the resume command works from where `report` was run
        "folds_saved": len(list(d.glob("combo-*/fold-*/result.json"))),
        "folds": (summary or plan).get("folds"),
        "finished": summary is not None,
        "config_yaml": (d / "config.yaml").read_text() if (d / "config.yaml").is_file() else "",
        "best": best,
        "ci": ci,
        "ranked": [{**combos[i], "rank": r + 1} for r, i in enumerate(ranking)],
        "keys": keys,
        "warnings": (summary or {}).get("warnings", []),
        "refit": refit,
        "refit_report": (d / "refit" / "report.html").is_file(),
        "plot": _param_plot(combos, keys) if combos and keys else None,
    }


def _param_plot(combos: list[dict[str, Any]], keys: list[str]) -> str:
    """Mean val accuracy (± std over folds) against each hyperparameter, one panel per key."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(min(4.2 * len(keys), 12.6), 3.4))
    for i, key in enumerate(keys):
        ax = fig.add_subplot(1, len(keys), i + 1)
        vals = [c["params"].get(key) for c in combos]
        mean = np.array([np.nan if c["mean_val_acc"] is None else c["mean_val_acc"] for c in combos], dtype=float)
        std = np.array([0.0 if c["std_val_acc"] is None else c["std_val_acc"] for c in combos], dtype=float)
        numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in vals)
        if numeric:
            x = np.array(vals, dtype=float)
            if (x > 0).all() and x.max() / x.min() >= 10:
                ax.set_xscale("log")
        else:  # categories (lists, strings, booleans): one position each
            labels = sorted({json.dumps(v) for v in vals})
            x = np.array([labels.index(json.dumps(v)) for v in vals], dtype=float)
            ax.set_xticks(range(len(labels)), labels, rotation=30, fontsize=8)
        ax.errorbar(x, mean, yerr=std, fmt="o", ms=5, capsize=3, alpha=0.8)
        b = int(np.nanargmax(mean)) if np.isfinite(mean).any() else None
        if b is not None:
            ax.plot([x[b]], [mean[b]], "*", ms=14, color="tab:red", label="best")
            ax.legend(fontsize=8, loc="lower right")
        ax.set_xlabel(key, fontsize=9)
        ax.set_ylabel("mean val accuracy" if i == 0 else "")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return figure_uri(fig)
