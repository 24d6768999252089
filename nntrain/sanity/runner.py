"""``nntrain sanity``: every pre-training check on the configured model and data.

Each check gets a freshly initialized model (same seed) so no check sees another's
training; an exception inside a check becomes that check's FAIL and the rest still run,
except bad input (an ``NntrainError``, e.g. a ``DataError`` from a streamed split): that
ends the command with its message (exit 2), as everywhere else.
Progress goes to callbacks (``on_check_start``, ``on_overfit_epoch``, ``on_check_end``).
The checks run eagerly in float32 (train.amp and train.compile do not apply).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable

from torch import nn

from nntrain.errors import ConfigError, NntrainError
from nntrain.models.backbones import set_frozen
from nntrain.pipeline.setup import Setup
from nntrain.sanity.checks import (
    CheckResult,
    loss_at_init,
    lr_probe,
    overfit_tiny,
    regularization_raises_loss,
    split_hygiene,
    tiny_subset,
)
from nntrain.sanity.gradients import batch_independence, gradient_check, gradient_flow
from nntrain.training.callbacks import dispatch

Report = Callable[[dict[str, Any]], None]


@dataclass(frozen=True)
class Check:
    name: str
    title: str  # what the progress display shows while it runs
    run: Callable[[Setup, Report], CheckResult]


def _fresh(s: Setup, *, as_training_starts: bool = False) -> nn.Module:
    """A new model from the configured start; ``as_training_starts``: with its backbone frozen when
    train.freeze_epochs makes training's first epoch a frozen one (the loss at init is then that net's)."""
    model = s.new_model().to(s.device)
    if as_training_starts:
        set_frozen(model, s.cfg.train.freeze_epochs > 0)
    return model


def _loss_at_init(s: Setup, report: Report) -> CheckResult:
    from nntrain.training.loss import Criterion

    criterion = Criterion.create(s.cfg.train, s.data.train.y, s.data.num_classes, s.device)  # weights, smoothing
    return loss_at_init(
        _fresh(s, as_training_starts=True),
        s.data.train,
        s.data.num_classes,
        tol=s.cfg.sanity.init_loss_tol,
        batch_size=s.cfg.train.batch_size,
        criterion=criterion,
    )


def _regularization(s: Setup, report: Report) -> CheckResult:
    sc = s.cfg.sanity
    return regularization_raises_loss(_fresh(s), s.data.train, high_reg=sc.high_reg, rtol=sc.reg_rtol)


def _overfit(s: Setup, report: Report) -> CheckResult:
    sc, opt = s.cfg.sanity, s.cfg.train.optimizer
    if sc.tiny_lr is not None:
        opt = opt.model_copy(update={"lr": sc.tiny_lr})
    tiny = tiny_subset(s.data.train, sc.tiny_samples, seed=s.cfg.seed)
    return overfit_tiny(
        _fresh(s),
        tiny,
        optimizer=opt,
        epochs=sc.tiny_epochs,
        batch_size=s.cfg.train.batch_size,
        seed=s.cfg.seed,
        on_epoch=report,
        backbone_lr=s.cfg.train.backbone_lr,
    )


def _gradient_check(s: Setup, report: Report) -> CheckResult:
    sc = s.cfg.sanity
    few = tiny_subset(s.data.train, sc.gradcheck_samples, seed=s.cfg.seed)  # distinct classes when possible
    return gradient_check(
        _fresh(s),
        few.x,
        few.y,
        entries=sc.gradcheck_entries,
        step=sc.gradcheck_step,
        tol=sc.gradcheck_tol,
        floor=sc.gradcheck_floor,
        seed=s.cfg.seed,
    )


def _gradient_flow(s: Setup, report: Report) -> CheckResult:
    n = s.cfg.train.batch_size
    tc = s.cfg.train
    return gradient_flow(
        _fresh(s), s.data.train.x[:n], s.data.train.y[:n], optimizer=tc.optimizer, backbone_lr=tc.backbone_lr
    )


def _batch_independence(s: Setup, report: Report) -> CheckResult:
    few = tiny_subset(s.data.train, s.cfg.sanity.independence_samples, seed=s.cfg.seed)
    return batch_independence(_fresh(s), few.x)


def _split_hygiene(s: Setup, report: Report) -> CheckResult:
    if s.data.splits is None:
        raise ValueError("the prepared data carries no split indices")
    return split_hygiene(s.dataset, s.data.splits)


def _lr_probe(s: Setup, report: Report) -> CheckResult:
    sc, tc = s.cfg.sanity, s.cfg.train
    return lr_probe(
        _fresh(s),
        s.data.train,
        optimizer=tc.optimizer,
        steps=sc.lr_probe_steps,
        batch_size=tc.batch_size,
        reg=tc.reg,
        window=sc.lr_probe_window,
        min_drop=sc.lr_min_drop,
        explode_factor=sc.lr_explode_factor,
        seed=s.cfg.seed,
        backbone_lr=tc.backbone_lr,
        freeze_epochs=tc.freeze_epochs,
    )


CHECKS: tuple[Check, ...] = (
    Check("loss_at_init", "loss at init ≈ ln C", _loss_at_init),
    Check("regularization", "regularization raises the loss", _regularization),
    Check("overfit_tiny", "overfit a tiny subset", _overfit),
    Check("gradient_check", "gradient check (float64)", _gradient_check),
    Check("gradient_flow", "gradient flow", _gradient_flow),
    Check("batch_independence", "batch independence", _batch_independence),
    Check("split_hygiene", "split hygiene", _split_hygiene),
    Check("lr_probe", "learning-rate probe", _lr_probe),
)


def check_sizes(s: Setup) -> None:
    """Sizes the train split cannot supply are bad input (exit 2), not a failed check."""
    n = len(s.data.train)
    for key in ("tiny_samples", "gradcheck_samples", "independence_samples"):
        want = getattr(s.cfg.sanity, key)
        if want > n:
            raise ConfigError(f"sanity.{key}: {want} samples requested but the train split has {n}; use at most {n}")


def run_sanity(s: Setup, *, callbacks: Iterable[Any] = (), checks: Iterable[Check] | None = None) -> list[CheckResult]:
    """Run ``checks`` (default: all of ``CHECKS``) in order; one ``CheckResult`` each."""
    check_sizes(s)
    callbacks, checks = list(callbacks), list(CHECKS if checks is None else checks)
    results = []
    for index, check in enumerate(checks, start=1):
        start = {"index": index, "total": len(checks), "name": check.name, "title": check.title}
        dispatch(callbacks, "on_check_start", start)
        t0 = time.perf_counter()
        try:
            result = check.run(s, lambda record: dispatch(callbacks, "on_overfit_epoch", record))
        except NntrainError:  # bad input (config, data files): the command's error, not a failed check
            raise
        except Exception as e:  # a crashing check is a failed check; the others still run
            result = CheckResult(
                check.name,
                False,
                f"error: {type(e).__name__}",
                "the check completes",
                f"the check raised {type(e).__name__}: {e}",
            )
        result.seconds = time.perf_counter() - t0
        results.append(result)
        dispatch(callbacks, "on_check_end", result)
    return results
