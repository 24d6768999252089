"""Live diagnostics: cs231n's "babysitting the learning process" rules as a training callback.

Each rule gives its advice once, at the first epoch it holds, through ``report`` (the CLI
passes ``console.advice``; library code never prints). An exploding or non-finite loss
raises ``StopTraining(diverged=True)``: ``fit`` keeps the best checkpoint, tests it, and
the CLI exits 1.

Rules (thresholds in ``DiagnosticsConfig``):

- loss NaN/Inf, or above ``explode_factor`` × its first value → stop, "lower the learning rate"
- loss fell by less than ``flat_drop`` in the first ``early_epochs`` → "learning rate may be too low"
  (and if it rose instead → "learning rate may be too high")
- train accuracy above val accuracy by more than ``overfit_gap`` for ``overfit_epochs``
  consecutive epochs → "overfitting: raise reg or get more data"
- a layer's ‖ΔW‖/‖W‖ more than ``update_ratio_factor`` × above or below ~1e-3 in the
  early epochs → which layer, and which way to move the learning rate

The update ratio is checked only early: once a net has converged its gradients (and so
its updates) shrink, and a decaying schedule shrinks them further; neither is a problem.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

from nntrain.config import DiagnosticsConfig
from nntrain.training.callbacks import StopTraining

RATIO_PREFIX = "update_ratio."


@dataclass(frozen=True)
class Advice:
    rule: str  # "diverged" | "flat" | "rising" | "overfit" | "update_ratio.<layer>.<high|low>"
    epoch: int
    message: str


class Diagnostics:
    """Training callback; ``advice`` lists everything reported, in order."""

    def __init__(self, cfg: DiagnosticsConfig | None = None, *, report: Callable[[Advice], None] | None = None):
        self.cfg = cfg or DiagnosticsConfig()
        self.report = report
        self.advice: list[Advice] = []
        self.epochs = 0
        self.initial_loss: float | None = None
        self.initial_lr: float | None = None
        self._history: Any = None
        self._pending: Advice | None = None
        self._gap_epochs = 0  # consecutive epochs with train acc - val acc > overfit_gap

    # ------------------------------------------------------------------ callback hooks

    def on_fit_start(self, info: dict[str, Any]) -> None:
        self.epochs = int(info.get("epochs", 0))
        self._history = info.get("history")

    def on_epoch_metrics(self, record: dict[str, Any]) -> None:
        """Before fit picks the best model: a diverging epoch stops training and never becomes best.pt."""
        if not self.cfg.enabled:
            return
        if self.initial_loss is None:
            self.initial_loss = self._first_loss(record)
            self.initial_lr = float(record["lr"])
        stop = self._diverging(record)
        if stop is not None:
            raise stop

    def on_epoch_end(self, record: dict[str, Any]) -> None:
        if not self.cfg.enabled:
            return
        if self._pending is not None:  # reported after the epoch's own line
            self._emit(self._pending)
            self._pending = None
            return
        if self.initial_loss is None:  # fit calls on_epoch_metrics first; nothing to judge against
            return
        self._flat(record)
        self._overfit(record)
        self._update_ratios(record)

    # ------------------------------------------------------------------ rules

    def _diverging(self, r: dict[str, Any]) -> StopTraining | None:
        loss, epoch, init = float(r["train_loss"]), int(r["epoch"]), self.initial_loss
        if math.isfinite(loss) and (init is None or not math.isfinite(init) or loss <= self.cfg.explode_factor * init):
            return None
        what = (
            f"train loss is {loss} at epoch {epoch}"
            if not math.isfinite(loss)
            else f"train loss {loss:.4g} at epoch {epoch} is {loss / init:.1f}x its initial value {init:.4g}"
        )
        lr = self.initial_lr
        message = (
            f"{what}: training is diverging; lower the learning rate "
            f"(train.optimizer.lr = {lr:g}; try {lr / 10:g}). The best checkpoint so far is kept"
        )
        self._give("diverged", epoch, message, defer=True)
        return StopTraining(f"diverged: {message}", diverged=True)

    def _flat(self, r: dict[str, Any]) -> None:
        epoch = int(r["epoch"])
        if epoch != min(self.cfg.early_epochs, self.epochs or epoch) or not self.initial_loss:
            return
        loss, init = float(r["train_loss"]), self.initial_loss
        drop = (init - loss) / abs(init)
        if drop < -self.cfg.flat_drop:
            self._give(
                "rising",
                epoch,
                f"train loss is higher after {epoch} epoch(s) than at the start ({init:.4f} -> {loss:.4f}): "
                f"the learning rate may be too high (train.optimizer.lr = {self.initial_lr:g}; "
                f"try {self.initial_lr / 10:g})",
            )
        elif drop < self.cfg.flat_drop:
            self._give(
                "flat",
                epoch,
                f"train loss barely moved in the first {epoch} epoch(s) ({init:.4f} -> {loss:.4f}, "
                f"{drop:+.2%}): the learning rate may be too low (train.optimizer.lr = {self.initial_lr:g}; "
                f"try {self.initial_lr * 10:g})",
            )

    def _overfit(self, r: dict[str, Any]) -> None:
        train_acc, val_acc = float(r["train_acc"]), float(r["val_acc"])
        if math.isnan(val_acc) or train_acc - val_acc <= self.cfg.overfit_gap:
            self._gap_epochs = 0
            return
        self._gap_epochs += 1
        if self._gap_epochs < self.cfg.overfit_epochs:
            return
        self._give(
            "overfit",
            int(r["epoch"]),
            f"train accuracy {train_acc:.3f} is {100 * (train_acc - val_acc):.1f} points above val accuracy "
            f"{val_acc:.3f}: overfitting: raise reg or get more data (train.reg, model.dropout, "
            f"or more training samples)",
        )

    def _update_ratios(self, r: dict[str, Any]) -> None:
        epoch = int(r["epoch"])
        if epoch > self.cfg.early_epochs:
            return
        target, factor = self.cfg.update_ratio, self.cfg.update_ratio_factor
        for key, value in r.items():
            if not key.startswith(RATIO_PREFIX):
                continue
            layer, ratio = key[len(RATIO_PREFIX) :], float(value)
            if not math.isfinite(ratio):
                continue
            if ratio > target * factor:
                self._give(
                    f"{key}.high",
                    epoch,
                    f"layer {layer}: update/weight ratio {ratio:.2g} is far above ~{target:g}: its updates are "
                    f"too large; lower the learning rate (train.optimizer.lr = {self.initial_lr:g})",
                )
            elif ratio < target / factor:
                self._give(
                    f"{key}.low",
                    epoch,
                    f"layer {layer}: update/weight ratio {ratio:.2g} is far below ~{target:g}: it barely "
                    f"learns; raise the learning rate (train.optimizer.lr = {self.initial_lr:g}) or check "
                    f"that its gradient does not vanish",
                )

    # ------------------------------------------------------------------ helpers

    def _first_loss(self, record: dict[str, Any]) -> float:
        """The loss at the first SGD step (≈ the loss at init), else the first epoch's mean."""
        steps = getattr(self._history, "step_losses", None)
        if steps:
            return float(steps[0])
        return float(record["train_loss"])

    def _give(self, rule: str, epoch: int, message: str, *, defer: bool = False) -> None:
        if any(a.rule == rule for a in self.advice):
            return  # each piece of advice once, when it first holds
        advice = Advice(rule, epoch, message)
        self.advice.append(advice)
        if defer:
            self._pending = advice
        else:
            self._emit(advice)

    def _emit(self, advice: Advice) -> None:
        if self.report is not None:
            self.report(advice)
