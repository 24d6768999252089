"""Sanity checks on gradients: numeric gradient check, gradient flow, batch independence.

Like ``checks.py``, each takes the model and the samples it judges and returns a
``CheckResult``; ``sanity.py`` runs them.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from nntrain.config import OptimizerConfig
from nntrain.models.backbones import PREFIX, is_backbone_param
from nntrain.sanity.checks import CheckResult, disable_dropout
from nntrain.training.optim import make_optimizer

EPS64 = torch.finfo(torch.float64).eps


KINKED = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.Hardtanh, nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d)
"""Layers whose output is piecewise: a finite difference across their kink is not a derivative."""
HARD = (nn.Hardswish, nn.Hardsigmoid)
"""MobileNetV3's piecewise activations: kinks where the input crosses -3 and 3. Often in place, so their
pattern is read from the input before the layer runs (a forward pre-hook)."""

BACKBONE_LAYERS = 8
"""A pretrained backbone has tens to hundreds of parameter tensors (11M values for resnet18): the gradient
check takes the head's tensors and those of this many backbone layers, evenly spaced from the first
(whose gradient passes through the whole net) to the last."""


class _Kinks:
    """Records the piecewise choice of every kinked layer in one forward: which ReLU inputs are
    positive (the output's sign pattern), which element each max-pool window picked, and on which
    side of ±3 each hard-swish/hard-sigmoid input lies."""

    def __init__(self, net: nn.Module):
        self.seen: list[torch.Tensor] = []
        self.handles = [m.register_forward_hook(self._hook) for m in net.modules() if isinstance(m, KINKED)]
        self.handles += [m.register_forward_pre_hook(self._pre) for m in net.modules() if isinstance(m, HARD)]

    def _pre(self, module: nn.Module, args: tuple) -> None:
        self.seen.append(torch.sign(args[0] + 3) + torch.sign(args[0] - 3))

    def _hook(self, module: nn.Module, args: tuple, out: torch.Tensor) -> None:
        if isinstance(module, (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d)):
            pool = {nn.MaxPool1d: F.max_pool1d, nn.MaxPool2d: F.max_pool2d, nn.MaxPool3d: F.max_pool3d}[type(module)]
            kw = dict(kernel_size=module.kernel_size, stride=module.stride, padding=module.padding)
            self.seen.append(
                pool(args[0], dilation=module.dilation, ceil_mode=module.ceil_mode, return_indices=True, **kw)[1]
            )
        elif isinstance(module, nn.Hardtanh):
            self.seen.append(torch.sign(out - module.min_val) + torch.sign(out - module.max_val))
        else:
            self.seen.append(out > 0)

    def take(self) -> list[torch.Tensor]:
        seen, self.seen = self.seen, []
        return seen

    def close(self) -> None:
        for h in self.handles:
            h.remove()


_CROSSED = object()  # _relative_error's answer when a kinked layer changes its pattern within ±h


def _relative_error(
    flat: torch.Tensor, i: int, h: float, loss: Any, kinks: _Kinks, base: list, a: float, floor: float
) -> Any:
    """|a − n| / max(|a|, |n|, floor) of entry ``i`` at step ``h``; None: below float64's resolution over 2h;
    ``_CROSSED``: a kinked layer changed its pattern within ±h."""
    old = flat[i].item()
    flat[i] = old + h
    plus, at_plus = loss().item(), kinks.take()
    flat[i] = old - h
    minus, at_minus = loss().item(), kinks.take()
    flat[i] = old
    if not (_same(base, at_plus) and _same(base, at_minus)):
        return _CROSSED
    numeric = (plus - minus) / (2 * h)
    resolution = 64 * EPS64 * max(abs(plus), abs(minus), 1.0) / (2 * h)  # round-off of 2 sums
    if max(abs(a), abs(numeric)) <= 10 * resolution and abs(a - numeric) <= resolution:
        return None
    return abs(a - numeric) / max(abs(a), abs(numeric), floor)


def _same(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return len(a) == len(b) and all(torch.equal(u, v) for u, v in zip(a, b))


def gradient_check(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    entries: int,
    step: float,
    tol: float,
    floor: float,
    seed: int,
) -> CheckResult:
    """Autograd versus centered finite differences, in float64 on CPU, on ``entries`` random
    entries of every trainable parameter tensor (a pretrained backbone: of the head's tensors and those
    of ``BACKBONE_LAYERS`` of its layers, see ``checked_tensors``; the output names them).

    The loss is the mean cross-entropy (λ = 0) of the whole batch ``x`` (2-3 samples) in
    train mode, so BatchNorm's batch statistics are part of the checked function; dropout
    is off (a random mask per forward would make the function itself random).
    Relative error = |a − n| / max(|a|, |n|, ``floor``) (cs231n's).

    Kinks (cs231n): an entry whose ±h moves a ReLU input across 0 or changes a max-pool's
    pick is not differentiable there; it is detected (every kinked layer's pattern at w±h
    must equal the one at w) and replaced by another entry of the tensor. An entry whose
    gradient is below what float64 can resolve over 2h (a few ulps of the loss, e.g. the
    exact-zero gradient of a bias before BatchNorm) carries no figure and is counted apart.
    The reported worst is the real largest relative error over the resolved entries, and where.
    """
    net = disable_dropout(copy.deepcopy(model)).to(device="cpu", dtype=torch.float64).train()
    x64, y = x.detach().to("cpu", torch.float64), y.detach().cpu()
    kinks = _Kinks(net)

    def loss() -> torch.Tensor:
        return F.cross_entropy(net(x64), y)

    net.zero_grad(set_to_none=True)
    loss().backward()
    base = kinks.take()
    chosen, sampled, n_layers = checked_tensors(net)
    gen = torch.Generator().manual_seed(seed)
    worst, worst_name, worst_at, checked, skipped = 0.0, "", -1, 0, []
    crossed, unresolved = 0, 0
    per_tensor: dict[str, float] = {}
    try:
        with torch.no_grad():
            for name, p in net.named_parameters():
                if not p.requires_grad:
                    skipped.append(name)
                    continue
                if name not in chosen:
                    continue
                analytic = p.grad.reshape(-1) if p.grad is not None else torch.zeros(p.numel(), dtype=p.dtype)
                flat = p.data.view(-1)  # parameters are contiguous: writes go to the tensor itself
                tensor_worst, done = 0.0, 0
                for i in torch.randperm(flat.numel(), generator=gen)[: 4 * entries].tolist():
                    if done == entries:
                        break
                    err = _relative_error(flat, i, step, loss, kinks, base, analytic[i].item(), floor)
                    if err is _CROSSED:
                        crossed += 1  # a kink within ±h: the difference quotient is no derivative
                        continue
                    done += 1
                    checked += 1
                    if err is None:
                        unresolved += 1  # below float64's resolution over 2h: no figure to report
                        continue
                    if err > tensor_worst:
                        tensor_worst = err
                    if err > worst:
                        worst, worst_name, worst_at = err, name, i
                per_tensor[name] = tensor_worst
    finally:
        kinks.close()
    values = {
        "worst_rel_error": worst,
        "worst_tensor": worst_name,
        "worst_index": worst_at,
        "entries": checked,
        "kinks_skipped": crossed,
        "below_resolution": unresolved,
        "per_tensor": per_tensor,
        "skipped_frozen": skipped,
        "backbone_layers": n_layers,
        "sampled_layers": sampled,
    }
    where = f"{worst_name}[{worst_at}]" if worst_name else "no entry above float64 resolution"
    which = f"{checked} entries"
    if n_layers:  # say which part of an 11M-value net the figure covers
        short = ", ".join(name.removeprefix(PREFIX + "net.") for name in sampled)
        which += f" of the head and of {len(sampled)} of the backbone's {n_layers} layers ({short})"
    measured = (
        f"worst relative error {worst:.2e} ({where}), {which}, {len(x64)} samples "
        f"({crossed} entries across a kink (ReLU, max-pool, hard-swish) skipped, {unresolved} below resolution)"
    )
    expected = f"< {tol:.0e} in float64"
    passed = worst < tol
    hint = ""
    if not passed:
        hint = (
            f"analytic and numeric gradients disagree for {worst_name} (the gradient is wrong; kinks were "
            "excluded): look for a custom backward, .detach()/.data inside forward, or non-differentiable ops"
        )
    return CheckResult("gradient_check", passed, measured, expected, hint, values)


def checked_tensors(net: nn.Module) -> tuple[set[str], list[str], int]:
    """The trainable parameters the gradient check takes: all, except in a pretrained backbone, where it takes
    every tensor outside the backbone (the head) and those of ``BACKBONE_LAYERS`` evenly spaced backbone
    layers. Returns (parameter names, the sampled backbone layers, how many layers the backbone has)."""
    names = [n for n, p in net.named_parameters() if p.requires_grad]
    layers = list(dict.fromkeys(n.rsplit(".", 1)[0] for n in names if is_backbone_param(n)))
    if len(layers) <= BACKBONE_LAYERS:
        return set(names), layers, len(layers)
    picks = [layers[round(k * (len(layers) - 1) / (BACKBONE_LAYERS - 1))] for k in range(BACKBONE_LAYERS)]
    return {n for n in names if not is_backbone_param(n) or n.rsplit(".", 1)[0] in picks}, picks, len(layers)


def gradient_flow(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    optimizer: OptimizerConfig,
    backbone_lr: float | str | None = None,
) -> CheckResult:
    """After one backward pass every parameter has a finite, non-zero gradient; after one optimizer step
    (the configured one, a backbone at ``backbone_lr``) every trainable parameter changed.

    Judged in both modes, on copies (dropout off), and a tensor is flagged only when it fails in both:
    train mode (BatchNorm on batch statistics) is the function training differentiates, but there
    BatchNorm makes the gradient of the bias just before it exactly zero (it subtracts the batch mean), a
    redundant parameter rather than a broken one; eval mode (running statistics) gives that bias its
    gradient, but in a backbone whose BatchNorm still has its initial statistics (mean 0, variance 1: a
    randomly initialized file) the signal can vanish there (mobilenet_v3_small: ∂out/∂x ~1e-11), so a step
    moves nothing. A detached, unused or frozen tensor, or an optimizer that moves nothing, fails in both.
    """
    in_train = _flow_problems(model, x, y, optimizer, backbone_lr, train=True)
    in_eval = _flow_problems(model, x, y, optimizer, backbone_lr, train=False)
    problems = {name: why for name, why in in_train.items() if name in in_eval}
    n_params = len(list(model.parameters()))
    values = {"tensors": n_params, "problems": problems}
    measured = f"{n_params - len(problems)}/{n_params} tensors get a gradient and move"
    if problems:
        first = list(problems.items())[:4]
        measured += ": " + "; ".join(f"{k} {v}" for k, v in first) + (" ..." if len(problems) > 4 else "")
    hint = ""
    if problems:
        hint = (
            "some layers do not learn: remove .detach()/.data/torch.no_grad() from forward, set requires_grad=True, "
            "and build the optimizer from model.parameters() after the model is complete"
        )
    return CheckResult(
        "gradient_flow",
        not problems,
        measured,
        "every tensor: finite non-zero gradient, changed by a step",
        hint,
        values,
    )


def _flow_problems(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    optimizer: OptimizerConfig,
    backbone_lr: float | str | None,
    *,
    train: bool,
) -> dict[str, str]:
    net = disable_dropout(copy.deepcopy(model)).train(train)
    F.cross_entropy(net(x), y).backward()
    problems: dict[str, str] = {}
    before = {}
    for name, p in net.named_parameters():
        if not p.requires_grad:
            problems[name] = "frozen (requires_grad=False)"
        elif p.grad is None:
            problems[name] = "no gradient (not connected to the loss: detached, or unused in forward)"
        elif not torch.isfinite(p.grad).all():
            problems[name] = "non-finite gradient"
        elif not p.grad.any():
            problems[name] = "gradient exactly zero"
        if p.requires_grad:
            before[name] = p.detach().clone()
    if before:
        opt = make_optimizer(net, optimizer, backbone_lr)
        opt.step()
        lr = {id(p): group["lr"] for group in opt.param_groups for p in group["params"]}  # a backbone's own lr
        for name, p in net.named_parameters():
            if name in before and name not in problems and torch.equal(p.detach(), before[name]):
                at = f"lr {lr[id(p)]:g}" if id(p) in lr else "no lr"
                problems[name] = f"unchanged by one {optimizer.name} step at {at} (not in the optimizer?)"
    return problems


def batch_independence(model: nn.Module, x: torch.Tensor) -> CheckResult:
    """In eval mode, ∂ output_i / ∂ input_j = 0 for every j ≠ i (no op mixes samples)."""
    was_training = model.training
    model.eval()
    try:
        xg = x.detach().clone().requires_grad_(True)
        out = model(xg)  # (B, C)
        worst, self_grad = 0.0, 0.0
        for i in range(len(xg)):
            (g,) = torch.autograd.grad(out[i].sum(), xg, retain_graph=True, allow_unused=True)
            if g is None:
                continue
            g = g.abs().flatten(1).amax(1)  # (B,) largest |∂ out_i / ∂ x_j| per sample j
            self_grad = max(self_grad, float(g[i]))
            g[i] = 0
            worst = max(worst, float(g.max()))
    finally:
        model.train(was_training)
    values = {"max_cross_gradient": worst, "max_self_gradient": self_grad, "samples": len(xg)}
    measured = f"max |∂out_i/∂x_j| for j≠i: {worst:.3g} (self: {self_grad:.3g}), batch of {len(xg)}"
    hint = ""
    if worst != 0:
        hint = (
            "one sample's output depends on other samples of the batch: look for a view/reshape/permute "
            "across dim 0 (e.g. flattening channel-first), or a norm layer using batch statistics in eval mode"
        )
    return CheckResult("batch_independence", worst == 0, measured, "exactly 0", hint, values)
