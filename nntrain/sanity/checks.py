"""Sanity checks on the loss and on training behaviour (the lecture's "babysitting" list).

Each check is a small function that takes the model and data it judges as arguments
(so tests can hand it a deliberately broken one) and returns a ``CheckResult``. The
autograd checks (gradient check, gradient flow, batch independence) live in
``gradchecks.py``; ``sanity.py`` runs them all. No printing: progress goes to callbacks.
"""

from __future__ import annotations

import copy
import math
import sys
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from nntrain.config import OptimizerConfig
from nntrain.data.stats import class_counts, sample_digests
from nntrain.data.types import Dataset, Split, SplitIndices
from nntrain.training.engine import evaluate, train_one_epoch
from nntrain.training.optim import make_optimizer


@dataclass
class CheckResult:
    name: str  # short id, e.g. "loss_at_init"
    passed: bool
    measured: str  # what was observed, in words and numbers
    expected: str  # what a healthy setup gives
    hint: str = ""  # for a failure: the likely cause and what to do, in plain words
    values: dict[str, Any] = field(default_factory=dict)  # the raw numbers (for --json and tests)
    seconds: float = 0.0  # wall time of the check (set by sanity.run_sanity)

    def to_dict(self) -> dict[str, Any]:
        """Plain data; ``runs.files.json_text`` writes it (non-finite floats → null)."""
        return asdict(self)


def disable_dropout(model: nn.Module) -> nn.Module:
    """Set every dropout probability to 0, torchvision's stochastic depth (efficientnet's random skipping of
    residual branches) included (train mode stays on for BatchNorm). Mutates ``model``."""
    ops = sys.modules.get("torchvision.ops")  # not imported: no torchvision model exists, nothing to find
    random_layers: tuple[type, ...] = (nn.modules.dropout._DropoutNd,) + ((ops.StochasticDepth,) if ops else ())
    for m in model.modules():
        if isinstance(m, random_layers):
            m.p = 0.0
    return model


# --------------------------------------------------------------------------- 1. loss at init


def loss_at_init(
    model: nn.Module, split: Split, num_classes: int, *, tol: float, batch_size: int, criterion: Any = None
) -> CheckResult:
    """Mean cross-entropy (λ = 0) of the untrained net over ``split`` ≈ ln C. ``criterion`` (a
    ``training.loss.Criterion``: the configured class weights and label smoothing) gives the loss as
    training computes it: still ln C, since a uniform prediction costs ln C per sample, smoothed or not,
    and a weighted mean of equal losses is that loss.

    Measured as training sees it: train mode (BatchNorm on batch statistics) in batches of
    ``batch_size``, dropout off, on a copy (the caller's running statistics stay untouched).
    """
    expected = math.log(num_classes)
    net = disable_dropout(copy.deepcopy(model)).train()
    total, norm = 0.0, 0.0
    probabilities = True
    with torch.no_grad():
        for start in range(0, len(split), batch_size):
            out = net(split.x[start : start + batch_size]).float()  # (B, C) scores
            yb = split.y[start : start + batch_size]
            if criterion is None:
                total, norm = total + float(F.cross_entropy(out, yb, reduction="sum")), norm + len(yb)
            else:
                total, norm = total + float(criterion.sum(out, yb)), norm + float(criterion.norm(yb))
            probabilities &= bool(
                (out >= 0).all() and torch.allclose(out.sum(1), torch.ones(len(out), device=out.device), atol=1e-4)
            )
    loss = total / norm
    values = {"loss": loss, "ln_c": expected, "tolerance": tol * expected}
    measured = f"loss {loss:.4f}"
    want = f"ln {num_classes} = {expected:.4f} ± {tol * expected:.4f}"
    if probabilities:
        return CheckResult(
            "loss_at_init",
            False,
            measured + " (outputs are probabilities)",
            want,
            "the model's outputs are already probabilities (non-negative, rows sum to 1): cross-entropy applies "
            "softmax itself, so softmax is applied twice and the loss cannot fall below ~1.46; "
            "remove the final softmax layer",
            values,
        )
    passed = math.isfinite(loss) and abs(loss - expected) <= tol * expected
    hint = ""
    if not passed:
        hint = (
            f"the untrained net is confidently wrong (loss {loss:.3g} > ln C): initial weights are too large; "
            "use a smaller init scale (model.init_std, e.g. 1e-2) or check the last layer's init"
            if not math.isfinite(loss) or loss > expected
            else f"the untrained net does better than chance (loss {loss:.3g} < ln C): labels may leak into the "
            "inputs, or the loss is not the mean cross-entropy over classes"
        )
    return CheckResult("loss_at_init", passed, measured, want, hint, values)


# --------------------------------------------------------------------------- 2. regularization


LossFn = Callable[[nn.Module, Split, float], float]


def _reported_loss(model: nn.Module, split: Split, reg: float) -> float:
    return evaluate(model, split, reg=reg)[0]


def weight_penalty(model: nn.Module, reg: float) -> float:
    """R(W) = 0.5·λ·Σ‖W‖² over conv/linear weights, in float64, independent of models.regularization."""
    total = 0.0
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            w = m.weight.detach().double().flatten()
            total += float(w @ w)
    return 0.5 * reg * total


def penalty_coverage(model: nn.Module) -> str:
    """Which tensors ``weight_penalty`` sums, in words: the output says what R(W) covers (a pretrained
    backbone's convolutions count like any other; biases and norm layers never do)."""
    from nntrain.models.backbones import is_backbone_param

    names = [n for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    values = sum(m.weight.numel() for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear)))
    body = sum(is_backbone_param(n + ".weight") for n in names)
    size = f"{values / 1e6:.1f}M" if values >= 1e5 else f"{values:,}"
    where = f"; {body} in the backbone, {len(names) - body} in the head" if body else ""
    return f"the {len(names)} conv/linear weights ({size} values{where}), not biases or norm layers"


def regularization_raises_loss(
    model: nn.Module, split: Split, *, high_reg: float, rtol: float, loss_fn: LossFn = _reported_loss
) -> CheckResult:
    """loss(λ = high_reg) > loss(λ = 0), and their difference equals R(W) computed here."""
    penalty = weight_penalty(model, high_reg)
    expected = f"higher by R(W) = {penalty:.6g} (±{rtol:g} relative) over {penalty_coverage(model)}"
    if penalty == 0:
        return CheckResult(
            "regularization",
            False,
            "R(W) = 0",
            expected,
            "the model has no conv/linear weights (or all are zero), so L2 regularization cannot act; "
            "build layers from nn.Conv2d / nn.Linear",
            {"penalty": penalty, "high_reg": high_reg},
        )
    l0, lh = loss_fn(model, split, 0.0), loss_fn(model, split, high_reg)
    diff = lh - l0
    values = {"loss_reg0": l0, "loss_high_reg": lh, "difference": diff, "penalty": penalty, "high_reg": high_reg}
    measured = f"loss {l0:.4f} at λ=0, {lh:.6g} at λ={high_reg:g} (Δ {diff:.6g})"
    if not diff > 0:
        hint = (
            "the loss did not rise with λ: the regularization term is missing from the loss "
            "(is it hidden in the optimizer's weight_decay?)"
        )
        return CheckResult("regularization", False, measured, expected, hint, values)
    if abs(diff - penalty) > rtol * penalty:
        hint = (
            f"the loss rose by {diff:.6g} but R(W) = 0.5·λ·Σ‖W‖² = {penalty:.6g} (ratio {diff / penalty:.4g}): "
            "the penalty uses another formula or other tensors (biases? norm layers? a missing 0.5?)"
        )
        return CheckResult("regularization", False, measured, expected, hint, values)
    return CheckResult("regularization", True, measured, expected, "", values)


# --------------------------------------------------------------------------- 3. overfit a tiny subset

OVERFIT_MAX_LOSS_FRAC = 0.1
"""The overfit check's loss bound as a fraction of ln C (the lecture's log ends at 0.0026 for ln 10 = 2.30)."""


def tiny_subset(split: Split, n: int, *, seed: int) -> Split:
    """``n`` samples of ``split`` with classes as balanced as possible (round-robin over classes)."""
    y = split.y.cpu().numpy()
    order = np.random.default_rng(seed).permutation(len(y))
    seen: dict[int, int] = defaultdict(int)
    rank = np.empty(len(y), dtype=np.int64)  # rank[k]: how many of order[k]'s class came before it
    for k, i in enumerate(order):
        rank[k] = seen[int(y[i])]
        seen[int(y[i])] += 1
    chosen = np.sort(order[np.argsort(rank, kind="stable")[:n]])
    idx = torch.as_tensor(chosen, device=split.y.device)
    return Split(split.x[idx], split.y[idx])


def overfit_tiny(
    model: nn.Module,
    tiny: Split,
    *,
    optimizer: OptimizerConfig,
    epochs: int,
    batch_size: int,
    seed: int,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
    max_loss_frac: float = OVERFIT_MAX_LOSS_FRAC,
    backbone_lr: float | str | None = None,
) -> CheckResult:
    """Train on ``tiny`` (λ = 0, dropout off) until train accuracy is 100% AND the loss is near zero
    (≤ ``max_loss_frac``·ln C), for at most ``epochs``.

    The optimizer is training's, a pretrained backbone in its own group at ``backbone_lr``, and the whole
    net trains from the first step (train.freeze_epochs is not applied): the check asks whether the
    complete net can memorize, the rule is the same for every model and its bound is never relaxed.

    Accuracy and loss are those of the epoch's own forward passes (train mode, before each step's update).
    Accuracy alone is not enough: a net that learned nothing can rank the right class first on a few samples
    by a hair (loss still ln C), as the lecture's 1e-4 init does.
    """
    disable_dropout(model)
    with torch.no_grad():
        was_training = model.training
        model.eval()
        num_classes = int(model(tiny.x[:1]).shape[-1])
        model.train(was_training)
    max_loss = max_loss_frac * math.log(num_classes)
    opt = make_optimizer(model, optimizer, backbone_lr)
    gen = torch.Generator().manual_seed(seed)
    loss, acc, epoch = math.nan, 0.0, 0
    for epoch in range(1, epochs + 1):
        stats = train_one_epoch(model, tiny, optimizer=opt, batch_size=batch_size, reg=0.0, generator=gen)
        loss, acc = stats.loss, stats.acc
        if on_epoch is not None:
            on_epoch({"epoch": epoch, "epochs": epochs, "cost": loss, "train_acc": acc, "lr": optimizer.lr})
        if (acc == 1.0 and loss <= max_loss) or not math.isfinite(loss):
            break
    passed = acc == 1.0 and loss <= max_loss
    values = {
        "epochs": epoch,
        "max_epochs": epochs,
        "train_acc": acc,
        "loss": loss,
        "samples": len(tiny),
        "lr": optimizer.lr,
        "max_loss": max_loss,
    }
    measured = (
        f"100% after {epoch} epochs, loss {loss:.4f}" if passed else f"{acc:.0%} after {epoch} epochs, loss {loss:.4g}"
    )
    hint = ""
    if not passed:
        stalled = (
            f"; train accuracy reached 100% but the loss stayed at {loss:.4g} (ln C = {math.log(num_classes):.4f}): "
            "the right class wins by a hair, nothing was learned"
            if acc == 1.0
            else ""
        )
        hint = (
            f"the net cannot memorize {len(tiny)} samples: the loss became {loss}; lower the lr (sanity.tiny_lr)"
            if not math.isfinite(loss)
            else f"the net cannot memorize {len(tiny)} samples in {epochs} epochs at lr {optimizer.lr:g}{stalled}: "
            "raise the lr (sanity.tiny_lr) or sanity.tiny_epochs, and check that the output depends on the input and "
            "that every layer is trainable (a very small init such as model.init_std 1e-4 also stalls the start)"
        )
    expected = f"100% train accuracy and loss ≤ {max_loss:.3g} ({max_loss_frac:g}·ln C) within {epochs} epochs"
    return CheckResult("overfit_tiny", passed, measured, expected, hint, values)


# --------------------------------------------------------------------------- 7. split hygiene


def split_hygiene(dataset: Dataset, splits: SplitIndices) -> CheckResult:
    """Labels in range, every class in every non-empty split, no identical raw image in two splits."""
    c = dataset.num_classes
    y = dataset.y.cpu().numpy()
    problems: list[str] = []
    bad = int(((y < 0) | (y >= c)).sum())
    if bad:
        problems.append(f"{bad} labels outside 0..{c - 1}")
    parts = {"train": splits.train, "val": splits.val, "test": splits.test}
    missing = {}
    for name, idx in parts.items():
        if len(idx):
            labels = y[idx]
            counts = class_counts(labels[(labels >= 0) & (labels < c)], c)
            absent = [k for k in range(c) if counts[k] == 0]
            if absent:
                missing[name] = absent
                names = ", ".join(dataset.classes[i] if 0 <= i < c else str(i) for i in absent[:5])
                problems.append(f"{name} lacks {len(absent)} class(es): {names}{', ...' if len(absent) > 5 else ''}")
    digests = sample_digests(dataset)
    hashes = {name: {digests[int(i)] for i in idx} for name, idx in parts.items()}
    shared = {}
    for a, b in (("train", "val"), ("train", "test"), ("val", "test")):
        n = len(hashes[a] & hashes[b])
        shared[f"{a}&{b}"] = n
        if n:
            problems.append(f"{n} identical image(s) in both {a} and {b}")
    sizes = {name: len(idx) for name, idx in parts.items()}
    values = {"sizes": sizes, "bad_labels": bad, "missing_classes": missing, "shared_images": shared}
    measured = (
        f"train {sizes['train']} / val {sizes['val']} / test {sizes['test']}, {sum(shared.values())} shared images"
    )
    if problems:
        measured += "; " + "; ".join(problems)
    hint = ""
    if problems:
        hint = (
            "fix the dataset: identical images in two splits leak test answers into training "
            "(deduplicate before splitting); a class missing from a split makes its accuracy meaningless "
            "(use data.stratify: true or more data); labels must be 0..C-1"
        )
    return CheckResult(
        "split_hygiene", not problems, measured, f"labels in 0..{c - 1}, {c} classes per split, 0 shared", hint, values
    )


# --------------------------------------------------------------------------- 8. learning-rate probe


def lr_probe(
    model: nn.Module,
    split: Split,
    *,
    optimizer: OptimizerConfig,
    steps: int,
    batch_size: int,
    reg: float,
    window: int,
    min_drop: float,
    explode_factor: float,
    seed: int,
    backbone_lr: float | str | None = None,
    freeze_epochs: int = 0,
) -> CheckResult:
    """A few hundred SGD steps at the configured lr must lower the train loss (train mode, as configured).

    ``steps`` is rounded up to whole epochs; start = the first step's loss (the net at init),
    end = mean of the last ``window`` step losses. A pretrained backbone trains as in ``train``: at
    ``backbone_lr``, frozen during the first ``freeze_epochs`` epochs.
    """
    from nntrain.models.backbones import backbone_of, set_frozen

    opt = make_optimizer(model, optimizer, backbone_lr)
    gen = torch.Generator().manual_seed(seed)
    losses: list[float] = []
    epoch = 0
    while len(losses) < steps and all(math.isfinite(v) for v in losses[-1:]):
        epoch += 1
        set_frozen(model, epoch <= freeze_epochs)
        losses += train_one_epoch(
            model, split, optimizer=opt, batch_size=batch_size, reg=reg, generator=gen
        ).step_losses
    set_frozen(model, False)
    start = losses[0]
    end = float(np.mean(losses[-window:]))
    worst_step = int(np.nanargmax(np.where(np.isfinite(losses), losses, np.inf)))
    peak = losses[worst_step]
    values = {"lr": optimizer.lr, "steps": len(losses), "start_loss": start, "end_loss": end, "peak_loss": peak}
    measured = f"loss {start:.4f} → {end:.4g} in {len(losses)} steps at lr {optimizer.lr:g}"
    expected = f"falls by ≥ {min_drop:.0%}, never above {explode_factor:g}× the start, finite"
    key = "train.optimizer.lr"
    if backbone_of(model) is not None:
        values["backbone_lr"] = opt.param_groups[-1]["lr"]
        values["frozen_epochs"] = min(freeze_epochs, epoch)
        measured += f", backbone at lr {values['backbone_lr']:g}"
        measured += f", frozen for the first {values['frozen_epochs']} epoch(s)" if values["frozen_epochs"] else ""
    if not math.isfinite(peak) or peak > explode_factor * start or end >= start * (1 + min_drop):
        what = f"became {peak}" if not math.isfinite(peak) else f"rose to {peak:.4g} at step {worst_step + 1}"
        hint = f"lr too high: the loss {what}; lower {key} (now {optimizer.lr:g}), e.g. by 10x"
        if backbone_of(model) is not None:  # fine-tuning: a pretrained backbone usually wants a smaller lr
            hint += f", or the backbone's alone with train.backbone_lr (now {values['backbone_lr']:g}, e.g. 0.1x)"
        return CheckResult("lr_probe", False, measured, expected, hint, values)
    if end > start * (1 - min_drop):
        hint = (
            f"lr too low: the loss barely moved ({start:.4f} → {end:.4f}); raise {key} (now {optimizer.lr:g}), e.g. "
            "by 10x "
            "(or, with a very small init such as model.init_std 1e-4, give it more steps: sanity.lr_probe_steps)"
        )
        return CheckResult("lr_probe", False, measured, expected, hint, values)
    return CheckResult("lr_probe", True, measured, expected, "", values)
