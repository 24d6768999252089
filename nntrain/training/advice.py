"""Live diagnostics: cs231n's "babysitting the learning process" rules as a training callback.

Each rule gives its advice once, at the first epoch it holds, through ``report`` (the CLI
passes ``console.advice``; library code never prints). An exploding or non-finite loss
raises ``StopTraining(diverged=True)``: ``fit`` keeps the best checkpoint, tests it, and
the CLI exits 1. The same callback runs in ``train``, in every ``cv`` fold and in every
``lr-sweep`` run; ``verdict`` turns what it saw into the lr-sweep's classes.

The reference of every loss rule is the loss at initialization: measured in
``on_fit_start`` on up to 2048 train samples before any step (a copy of the model in train
mode, dropout off; ≈ ln C for a fresh net), else the first step's loss. It is kept in
``History.initial_loss`` (so in ``last.pt``): a resumed run judges against the same value.

Rules (thresholds in ``DiagnosticsConfig``):

- ``diverged``: an epoch's train loss NaN/Inf or above ``explode_factor`` × the initial loss
  → stop in that epoch, "lower the learning rate"
- ``above_init``: an epoch ends with its train loss above the initial loss (by more than
  flat_drop / 2: the measurement's noise) → "lower the learning rate", whatever else holds
- ``flat``: after ``early_epochs`` (at least 2) epochs the loss fell by less than
  ``flat_drop`` of the initial loss, is not above it and is not rising → "lr may be too low"
- ``overfit``: train accuracy above the best val accuracy so far by more than ``overfit_gap``
  for ``overfit_epochs`` consecutive epochs, in which val accuracy did not improve on its
  earlier best (a gap while val still rises is lag, a val dip below its best is noise or a
  too-high lr: neither is overfitting) → "raise reg or get more data"
- ``update_ratio.<layer>.<high|low>``: a layer's ‖ΔW‖/‖W‖ more than ``update_ratio_factor``
  × above or below ~1e-3 in an early epoch whose train loss fell by less than ``flat_drop`` of the
  initial loss → which layer, and which way to move the lr. The loss is the evidence: while it
  falls well, a far-off ratio is no reason to move the lr (the lr-sweep would rate that lr good)
- ``poor``: at the end, the best val accuracy within ``chance_margin`` of chance, or the last
  epoch's val accuracy fell back to less than half of its best gain over chance → the likely
  causes in order of the evidence (the lr direction the rules said; else, from the curve: a loss
  that never rose reads as "too low" first, the lecture's slow nearly linear descent) and the
  commands that check them

Advice that says "lower the lr" wins: in an epoch where any rule says so, advice to raise
the lr is dropped, and once the loss itself said so (diverged, above its initial value) for
the rest of the run.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any, Callable

from nntrain.config import DiagnosticsConfig
from nntrain.training.callbacks import StopTraining

RATIO_PREFIX = "update_ratio."
LOWER, RAISE = "lower", "raise"


@dataclass(frozen=True)
class Advice:
    rule: str  # "diverged" | "above_init" | "flat" | "overfit" | "update_ratio.<layer>.<high|low>" | "poor"
    epoch: int
    message: str

    @property
    def lr_direction(self) -> str | None:
        """Which way this advice moves the learning rate: LOWER, RAISE or None."""
        if self.rule in ("diverged", "above_init") or self.rule.endswith(".high"):
            return LOWER
        if self.rule == "flat" or self.rule.endswith(".low"):
            return RAISE
        return None

    def as_dict(self) -> dict[str, Any]:
        return {"rule": self.rule, "epoch": self.epoch, "message": self.message}


INIT_SAMPLES = 2048
"""Train samples the initial loss is averaged over (all of a smaller split): an epoch at lr 0 would
report this value, so a too-low lr cannot read as "above its initial value"."""


def initial_loss(model: Any, split: Any, *, batch_size: int, reg: float) -> float:
    """Mean loss (data + R(W)) of ``model`` before any step over the first ``INIT_SAMPLES`` train
    samples in batches of ``batch_size``, as SGD sees them (train mode: BatchNorm on batch
    statistics), on a copy (its running statistics stay untouched) with dropout off (no draw from
    the global generator)."""
    import torch
    import torch.nn.functional as F

    from nntrain.models import reg_weights, regularization

    if len(split) == 0:
        return math.nan
    net = copy.deepcopy(model).train()
    for m in net.modules():
        if isinstance(m, torch.nn.modules.dropout._DropoutNd):
            m.eval()
    total, seen = 0.0, 0
    with torch.no_grad():
        for xb, yb in split.eval_batches(max(2, batch_size)):
            total += float(F.cross_entropy(net(xb).float(), yb, reduction="sum"))
            seen += len(yb)
            if seen >= INIT_SAMPLES:
                break
        r = float(regularization(reg_weights(net), reg)) if reg > 0 else 0.0
    return total / seen + r


class Diagnostics:
    """Training callback; ``advice`` lists everything reported, in order."""

    def __init__(self, cfg: DiagnosticsConfig | None = None, *, report: Callable[[Advice], None] | None = None):
        self.cfg = cfg or DiagnosticsConfig()
        self.report = report
        self.advice: list[Advice] = []
        self.epochs = 0
        self.num_classes: int | None = None
        self.initial_loss: float | None = None
        self.initial_lr: float | None = None
        self.losses: list[float] = []  # train loss per epoch seen
        self.val_accs: list[float] = []
        self._history: Any = None
        self._pending: Advice | None = None
        self._gap_epochs = 0  # consecutive epochs with train acc - val acc > overfit_gap

    # ------------------------------------------------------------------ callback hooks

    def on_fit_start(self, info: dict[str, Any]) -> None:
        self.epochs = int(info.get("epochs", 0))
        self._history = info.get("history")
        self.num_classes = info.get("num_classes")
        if not self.cfg.enabled:
            return
        kept = getattr(self._history, "initial_loss", None)  # a resumed run: measured before its first step
        records = list(getattr(self._history, "records", None) or [])
        if records:  # a resumed run: what the rules saw, and said, before the interruption
            kept_advice = getattr(self._history, "advice", [])
            self.advice = [Advice(a["rule"], int(a["epoch"]), a["message"]) for a in kept_advice]
            self.losses = [float(r["train_loss"]) for r in records]
            self.val_accs = [float(r.get("val_acc", math.nan)) for r in records]
            self.initial_lr = float(records[0]["lr"])
        if info.get("initial_loss") is not None:
            self.initial_loss = float(info["initial_loss"])
        elif kept is not None:
            self.initial_loss = float(kept)
        elif info.get("model") is not None and info.get("train") is not None and info.get("start_epoch", 1) == 1:
            self.initial_loss = initial_loss(
                info["model"], info["train"], batch_size=int(info.get("batch_size", 64)), reg=info.get("reg", 0.0)
            )
        if self._history is not None and self.initial_loss is not None:
            self._history.initial_loss = self.initial_loss  # into last.pt: a resumed run keeps its reference

    def on_epoch_metrics(self, record: dict[str, Any]) -> None:
        """Before fit picks the best model: a diverging epoch stops training and never becomes best.pt."""
        if not self.cfg.enabled:
            return
        if self.initial_loss is None or not math.isfinite(self.initial_loss):
            self.initial_loss = self._first_loss(record)
        if self.initial_lr is None:
            self.initial_lr = float(record["lr"])
        stop = self._diverging(record)
        if stop is not None:
            raise stop

    def on_epoch_end(self, record: dict[str, Any]) -> None:
        if not self.cfg.enabled:
            return
        self.losses.append(float(record["train_loss"]))
        self.val_accs.append(float(record.get("val_acc", math.nan)))
        if self._pending is not None:  # reported after the epoch's own line
            self._emit(self._pending)
            self._pending = None
            return
        if self.initial_loss is None:  # fit calls on_epoch_metrics first; nothing to judge against
            return
        epoch = int(record["epoch"])
        found: list[Advice] = []
        self._above_init(record, found)
        self._flat(record, found)
        self._overfit(record, found)
        self._update_ratios(record, found)
        self._give_all(found)
        if self.epochs and epoch >= self.epochs:
            self._poor(epoch)

    def on_fit_end(self, history: Any) -> None:
        """A run that ended early (patience, a stop) still gets its end-of-run judgment."""
        if self.cfg.enabled and self.losses and not getattr(history, "interrupted", None):
            self._poor(len(self.losses))

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
        advice = Advice("diverged", epoch, message)
        if self._new(advice):
            self._keep(advice)
            self._pending = advice
        return StopTraining(f"diverged: {message}", diverged=True)

    def _above_init(self, r: dict[str, Any], found: list[Advice]) -> None:
        loss, init, epoch = float(r["train_loss"]), self.initial_loss, int(r["epoch"])
        if math.isfinite(init) and loss > init * (1 + self.cfg.flat_drop / 2):
            found.append(
                Advice(
                    "above_init",
                    epoch,
                    f"train loss {loss:.4f} at the end of epoch {epoch} is above its value at initialization "
                    f"({init:.4f}): the learning rate is too high; lower it (train.optimizer.lr = "
                    f"{self.initial_lr:g}; try {self.initial_lr / 10:g})",
                )
            )

    def _flat(self, r: dict[str, Any], found: list[Advice]) -> None:
        epoch, init = int(r["epoch"]), self.initial_loss
        at = max(2, min(self.cfg.early_epochs, self.epochs or epoch))
        if epoch != at or len(self.losses) < 2 or not math.isfinite(init) or init <= 0:
            return  # one point is no trend
        loss = self.losses[-1]
        rising = loss > self.losses[-2] * (1 + self.cfg.flat_drop / 2)  # beyond noise
        drop = (init - loss) / init
        if loss > init or rising or drop >= self.cfg.flat_drop:
            return
        found.append(
            Advice(
                "flat",
                epoch,
                f"train loss barely moved in the first {epoch} epochs ({init:.4f} at initialization -> "
                f"{loss:.4f}, {-drop:+.2%}): the learning rate may be too low (train.optimizer.lr = "
                f"{self.initial_lr:g}; try {self.initial_lr * 10:g})",
            )
        )

    def _overfit(self, r: dict[str, Any], found: list[Advice]) -> None:
        """Against the best val accuracy so far: a val dip (a noisy epoch, a too-high lr) is not a gap."""
        train_acc, val_acc = float(r["train_acc"]), float(r["val_acc"])
        best = max((a for a in self.val_accs if math.isfinite(a)), default=math.nan)
        if math.isnan(val_acc) or math.isnan(best) or train_acc - best <= self.cfg.overfit_gap:
            self._gap_epochs = 0
            return
        self._gap_epochs += 1
        k = self.cfg.overfit_epochs
        if self._gap_epochs < k or not self._val_stalled(k):
            return  # an early gap while val accuracy still rises is BatchNorm/SGD lag, not overfitting
        found.append(
            Advice(
                "overfit",
                int(r["epoch"]),
                f"train accuracy {train_acc:.3f} is {100 * (train_acc - best):.1f} points above the best val "
                f"accuracy {best:.3f}, which has stopped improving: overfitting: raise reg or get more data "
                f"(train.reg, model.dropout, or more training samples)",
            )
        )

    def _val_stalled(self, k: int) -> bool:
        """Val accuracy has not improved on its earlier best in the last ``k`` epochs."""
        accs = [a if math.isfinite(a) else -math.inf for a in self.val_accs]
        return len(accs) > k and max(accs[-k:]) <= max(accs[:-k])

    def _update_ratios(self, r: dict[str, Any], found: list[Advice]) -> None:
        epoch, init = int(r["epoch"]), self.initial_loss
        if epoch > self.cfg.early_epochs:
            return
        loss = float(r["train_loss"])
        if init is not None and math.isfinite(init) and init > 0 and (init - loss) / init >= self.cfg.flat_drop:
            return  # the loss falls well: the evidence says this lr works, whatever the ratio
        target, factor = self.cfg.update_ratio, self.cfg.update_ratio_factor
        ratios = {k[len(RATIO_PREFIX) :]: float(v) for k, v in r.items() if k.startswith(RATIO_PREFIX)}
        ratios = {k: v for k, v in ratios.items() if math.isfinite(v)}  # NaN: a frozen layer took no step
        high = sorted((k for k, v in ratios.items() if v > target * factor), key=lambda k: -ratios[k])
        low = sorted((k for k, v in ratios.items() if v < target / factor), key=lambda k: ratios[k])
        lr = f"train.optimizer.lr = {self.initial_lr:g}"
        for names, side, fix in (
            (high, "high", f"updates are too large; lower the learning rate ({lr})"),
            (low, "low", f"updates are tiny; raise the learning rate ({lr}) or check that gradients do not vanish"),
        ):
            if names:
                far = "far above" if side == "high" else "far below"
                msg = f"{_layers(names, ratios)} {far} ~{target:g}: {fix}"
                found.append(Advice(f"{RATIO_PREFIX}{names[0]}.{side}", epoch, msg))

    def _poor(self, epoch: int) -> None:
        """The end-of-run judgment: val accuracy near chance, or fallen far below its best (a diverged
        run already has its advice). The lr cause the rules pointed at comes first."""
        accs = [a for a in self.val_accs if math.isfinite(a)]
        if not self.num_classes or not accs or self._said("diverged") or self._said("poor"):
            return
        chance = 1.0 / self.num_classes
        best, last = max(accs), accs[-1]
        near_chance = best < chance + self.cfg.chance_margin * (1 - chance)
        fell = best - chance >= self.cfg.chance_margin * (1 - chance) and last - chance < 0.5 * (best - chance)
        if not (near_chance or fell):
            return
        what = (
            f"val accuracy stayed near chance (best {best:.3f}; chance {chance:.3f} for {self.num_classes} classes)"
            if near_chance
            else f"val accuracy fell from {best:.3f} to {last:.3f} (chance {chance:.3f})"
        )
        lr = self.initial_lr or 0.0
        high, low = "the learning rate is too high", "the learning rate is too low"
        causes = [low, high] if self._lr_seems_low() else [high, low]
        causes += [
            "the input scale (inputs not normalized, or images resized far from their native size)",
            "the model is too big for the data (too many weights for the samples: fewer channels/hidden units)",
        ]
        listed = "; ".join(f"{i}) {c}" for i, c in enumerate(causes, start=1))
        message = (
            f"{what}: the run learned little. Likely causes, most likely first: {listed}. "
            f"Check them with `nntrain lr-sweep --lrs {lr / 100:g},{lr / 10:g},{lr:g},{lr * 10:g}` and "
            "`nntrain sanity` (same --config/--set as this run)"
        )
        self._give_all([Advice("poor", epoch, message)])

    # ------------------------------------------------------------------ helpers

    def verdict(self, *, diverged: bool = False) -> str:
        """The lecture's classes of an lr from what the rules saw: diverged | too high | too low | good."""
        if diverged or self._said("diverged"):
            return "diverged"
        if self._said(LOWER):
            return "too high"
        if self._said(RAISE):
            return "too low"
        return "good"

    def _lr_seems_low(self) -> bool:
        """The evidence for "too low" over "too high": the rules said raise (and none said lower), or,
        when none spoke, a loss that never rose above its initial value nor from one epoch to the next."""
        if self._said(LOWER):
            return False
        if self._said(RAISE):
            return True
        init, noise = self.initial_loss, self.cfg.flat_drop / 2
        losses = [v for v in self.losses if math.isfinite(v)]
        if not losses or len(losses) < len(self.losses):
            return False
        never_rose = all(b <= a * (1 + noise) for a, b in zip(losses, losses[1:]))
        return never_rose and (init is None or not math.isfinite(init) or max(losses) <= init * (1 + noise))

    def _said(self, what: str) -> bool:
        return any(a.rule == what or a.lr_direction == what for a in self.advice)

    def _first_loss(self, record: dict[str, Any]) -> float:
        """Fallback when on_fit_start could not measure it: the first SGD step's loss, else the epoch mean."""
        steps = getattr(self._history, "step_losses", None)
        if steps:
            return float(steps[0])
        return float(record["train_loss"])

    def _new(self, advice: Advice) -> bool:
        """Each piece of advice once; the update-ratio rule once per direction, whichever layer leads it."""
        return not any(_same_rule(a.rule, advice.rule) for a in self.advice)

    def _give_all(self, found: list[Advice]) -> None:
        """Report new advice; advice to raise the lr is dropped in an epoch where any says to lower it,
        and for the rest of the run once the loss itself said so (diverged, above its initial value)."""
        loss_said_lower = self._said("diverged") or self._said("above_init")
        lower = loss_said_lower or any(a.lr_direction == LOWER for a in found)
        for advice in found:
            if (lower and advice.lr_direction == RAISE) or not self._new(advice):
                continue
            self._keep(advice)
            self._emit(advice)

    def _keep(self, advice: Advice) -> None:
        """In ``advice`` and in the run's history (saved in last.pt: a resumed run's summary has it all)."""
        self.advice.append(advice)
        if self._history is not None and hasattr(self._history, "advice"):
            self._history.advice.append(advice.as_dict())

    def _emit(self, advice: Advice) -> None:
        if self.report is not None:
            self.report(advice)


def _same_rule(a: str, b: str) -> bool:
    if a.startswith(RATIO_PREFIX) and b.startswith(RATIO_PREFIX):
        return a.rsplit(".", 1)[1] == b.rsplit(".", 1)[1]  # high | low
    return a == b


def _layers(names: list[str], ratios: dict[str, float]) -> str:
    """One advice line for any number of layers (a torchvision backbone has 20–80): the most extreme three named."""
    if len(names) == 1:
        return f"layer {names[0]}: update/weight ratio {ratios[names[0]]:.2g} is"
    shown = ", ".join(f"{n} {ratios[n]:.2g}" for n in names[:3])
    more = f" and {len(names) - 3} more" if len(names) > 3 else ""
    return f"{len(names)} layers ({shown}{more}): update/weight ratios are"
