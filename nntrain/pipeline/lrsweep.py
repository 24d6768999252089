"""The learning-rate study: a fresh net per learning rate, same init and batches, short runs.

Reproduces the lecture's picture of very high / high / low / good learning rates: a
diverged run is a result (a curve that leaves the plot, a row marked 'diverged'), not a
crash. The recommendation is the lr with the best final val accuracy among the runs that
did not diverge, with a hint when it sits at the edge of the grid (cs231n: widen the
search when the best value is on its border).

Each run is classified by ``train``'s own rules (the ``Diagnostics`` callback, one
implementation): diverged (stopped: loss non-finite or > explode_factor × its initial
value), too high (loss ended an epoch above its initial value, or updates too large),
too low (loss barely moved, or updates too small), else good. Among the runs the rules
call good, the shape of the curve against the best run's separates the lecture's
"high" (falls fast, then plateaus well above the best: a larger lr) from "low" (still far
above the best: a smaller lr, the slow nearly linear descent).
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
    advice: list[str]  # rules the diagnostics saw: 'above_init', 'flat', 'overfit', 'update_ratio.<layer>.<way>'...
    verdict: str = ""
    rule_verdict: str = "good"  # the Diagnostics verdict: diverged | too high | too low | good
    initial_loss: float = math.nan

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
            "advice": list(self.advice),
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
        curves = Curves(f"lr={lr:g}", h.records, h.step_losses)
        rules = [a.rule for a in diag.advice]
        init = diag.initial_loss if diag.initial_loss is not None else math.nan
        verdict = diag.verdict(diverged=h.diverged)
        run = SweepRun(lr, curves, h.diverged, h.stopped, rules, rule_verdict=verdict, initial_loss=init)
        runs.append(run)
        if progress is not None:
            progress(run)
    recommend(runs)
    return runs


PLATEAU = 0.5
"""A good-by-the-rules run whose loss fell by less than this fraction of the best run's drop is
called too high (lr above the best's: it plateaued) or too low (below: it is still descending)."""


def drop(r: SweepRun) -> float:
    """How far the loss fell, as a fraction of its initial value (nan when unknown)."""
    if not (math.isfinite(r.initial_loss) and r.initial_loss > 0 and math.isfinite(r.final_loss)):
        return math.nan
    return (r.initial_loss - r.final_loss) / r.initial_loss


def recommend(runs: list[SweepRun]) -> SweepRun | None:
    """Mark each run's verdict; return the recommended run (None when every run diverged)."""
    alive = [r for r in runs if r.rule_verdict != "diverged" and not r.diverged and math.isfinite(r.final_loss)]
    for r in runs:
        if r not in alive:
            r.verdict = "too high: diverged"
        elif r.rule_verdict == "too high":
            r.verdict = (
                "too high: loss went above its initial value"
                if "above_init" in r.advice
                else ("too high: updates too large")
            )
        elif r.rule_verdict == "too low":
            r.verdict = "too low: loss barely moved" if "flat" in r.advice else "too low: updates too small"
        else:
            r.verdict = "good"
    if not alive:
        return None

    def key(r: SweepRun) -> tuple[float, float]:
        acc = r.val_acc if math.isfinite(r.val_acc) else -1.0  # no val split: lowest loss wins
        return (acc, -r.final_loss)

    # the rules' verdict stands in every verb: a run they call too high/low is never "best" while one is good
    best = max([r for r in alive if r.verdict == "good"] or alive, key=key)
    for r in alive:
        if r is best or r.verdict != "good" or not math.isfinite(drop(best)) or not math.isfinite(drop(r)):
            continue
        if drop(r) < PLATEAU * drop(best):  # the lecture's figure: the shape against the best curve
            r.verdict = (
                "too high: loss plateaued well above the best"
                if r.lr > best.lr
                else "too low: loss still far above the best"
            )
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
