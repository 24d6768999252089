"""The learning-rate study: a fresh net per learning rate, same init and batches, short runs.

Reproduces the lecture's picture of very high / high / low / good learning rates: a
diverged run is a result (a curve that leaves the plot, a row marked 'diverged'), not a
crash. The recommendation is the lr with the best final val accuracy among the runs that
did not diverge, with a hint when it sits at the edge of the grid (cs231n: widen the
search when the best value is on its border).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

from nntrain.config import override
from nntrain.errors import ConfigError
from nntrain.pipeline.setup import Setup
from nntrain.plots import Curves
from nntrain.training.advice import Diagnostics
from nntrain.training.engine import fit


@dataclass
class SweepRun:
    lr: float
    curves: Curves
    diverged: bool
    stopped: str | None
    advice: list[str]  # rules the diagnostics saw: 'flat', 'rising', 'overfit', 'update_ratio.<layer>.<way>'
    verdict: str = ""

    @property
    def final_loss(self) -> float:
        return float(self.curves.records[-1]["train_loss"])

    @property
    def val_acc(self) -> float:
        return float(self.curves.records[-1]["val_acc"])

    def row(self) -> dict[str, object]:
        def num(v: float) -> float | None:
            return v if math.isfinite(v) else None

        return {
            "lr": self.lr,
            "epochs_run": len(self.curves.records),
            "final_loss": num(self.final_loss),
            "val_acc": num(self.val_acc),
            "diverged": self.diverged,
            "verdict": self.verdict,
        }


def parse_lrs(text: str) -> list[float]:
    """'1e-4,1e-3,1e-2' → [1e-4, 1e-3, 1e-2]; every value a positive number."""
    lrs = []
    for part in text.split(","):
        part = part.strip()
        try:
            value = float(part)
        except ValueError:
            raise ConfigError(
                f"--lrs: {part!r} is not a number; give comma-separated values like --lrs 1e-4,1e-3,1e-2"
            ) from None
        if not (math.isfinite(value) and value > 0):
            raise ConfigError(f"--lrs: {part!r} is not a positive learning rate; every value must be > 0")
        lrs.append(value)
    if not lrs:
        raise ConfigError("--lrs: no learning rates given; e.g. --lrs 1e-4,1e-3,1e-2")
    return lrs


def lr_sweep(
    s: Setup, lrs: Sequence[float], *, epochs: int, progress: Callable[[SweepRun], None] | None = None
) -> list[SweepRun]:
    """Train a fresh copy of the model (same seed → same initial weights) once per lr."""
    runs = []
    for lr in lrs:
        cfg = override(s.cfg, {"train.optimizer.lr": lr, "train.epochs": epochs})
        diag = Diagnostics(cfg.diagnostics)  # stops an exploding run; collects advice, prints nothing
        h = fit(s.new_model(), s.data, cfg.train, seed=cfg.seed, device=s.device, callbacks=[diag])
        run = SweepRun(
            lr, Curves(f"lr={lr:g}", h.records, h.step_losses), h.diverged, h.stopped, [a.rule for a in diag.advice]
        )
        runs.append(run)
        if progress is not None:
            progress(run)
    recommend(runs)
    return runs


def recommend(runs: list[SweepRun]) -> SweepRun | None:
    """Mark each run's verdict; return the recommended run (None when every run diverged)."""
    alive = [r for r in runs if not r.diverged and math.isfinite(r.final_loss)]
    for r in runs:
        if r.diverged or r not in alive:
            r.verdict = "too high: diverged"
        elif "rising" in r.advice:
            r.verdict = "too high: loss went up"
        elif "flat" in r.advice:
            r.verdict = "too low: loss barely moved"
    if not alive:
        return None

    def key(r: SweepRun) -> tuple[float, float]:
        acc = r.val_acc if math.isfinite(r.val_acc) else -1.0  # no val split: lowest loss wins
        return (acc, -r.final_loss)

    best = max(alive, key=key)
    best.verdict = "best"
    return best


def recommendation(runs: list[SweepRun]) -> str:
    best = next((r for r in runs if r.verdict == "best"), None)
    if best is None:
        return f"every learning rate diverged; try smaller ones (below {min(r.lr for r in runs):g})"
    acc = f"val accuracy {best.val_acc:.4f}, " if math.isfinite(best.val_acc) else ""
    text = f"recommended train.optimizer.lr: {best.lr:g} ({acc}final loss {best.final_loss:.4f})"
    lrs = sorted(r.lr for r in runs)
    if len(lrs) > 1 and best.lr == lrs[-1]:
        text += "; it is the largest lr tried: also try larger ones"
    elif len(lrs) > 1 and best.lr == lrs[0]:
        text += "; it is the smallest lr tried: also try smaller ones"
    return text
