"""The callback protocol of ``fit`` and the sanity runner: hooks are looked up by name on
each callback; ``StopTraining`` raised by a hook ends training after the epoch."""

from __future__ import annotations

from typing import Any, Iterable, Protocol

from nntrain.training.history import History


class Callback(Protocol):
    """The hooks ``fit`` calls, in this order. Each is optional: ``dispatch`` looks a hook up by
    name, so a callback defines only those it needs (e.g. a run directory only writes rows)."""

    def on_fit_start(self, info: dict[str, Any]) -> None:
        """Before the first epoch: epochs, device, n_train, history (so far), start_epoch, layers."""

    def on_epoch_metrics(self, record: dict[str, Any]) -> None:
        """The epoch's metrics, before the best-model decision; may raise ``StopTraining``
        (``diverged=True`` keeps this epoch out of ``best.pt``)."""

    def on_epoch_end(self, record: dict[str, Any]) -> None:
        """The epoch's record (with ``best``), after the checkpoint; may raise ``StopTraining``."""

    def on_fit_end(self, history: History) -> None:
        """Once, when training ended (finished, stopped, diverged or interrupted)."""


class StopTraining(Exception):
    """Raised by a callback's ``on_epoch_metrics`` or ``on_epoch_end`` to end training after
    this epoch.

    ``fit`` still gives the epoch's record to every other callback, restores the best
    model and tests it; ``diverged=True`` marks the run as diverged (the CLI exits 1).
    Raised from ``on_epoch_metrics`` (called before the best-model decision), a diverged
    verdict also keeps this epoch out of ``best.pt``.
    """

    def __init__(self, reason: str, *, diverged: bool = False):
        super().__init__(reason)
        self.reason = reason
        self.diverged = diverged


def dispatch(callbacks: Iterable[Callback | object], hook: str, *args: Any) -> StopTraining | None:
    """Call ``hook`` on every callback that has it; the first ``StopTraining`` raised is
    returned (the other callbacks still get the call). The one dispatcher of ``fit`` and of
    the sanity runner (whose hooks are ``on_check_start``, ``on_overfit_epoch``, ``on_check_end``)."""
    stop = None
    for cb in callbacks:
        fn = getattr(cb, hook, None)
        if fn is not None:
            try:
                fn(*args)
            except StopTraining as e:
                stop = stop or e
    return stop
