"""The callback protocol of ``fit`` and the sanity runner: hooks are looked up by name on
each callback; ``StopTraining`` raised by a hook ends training after the epoch."""

from __future__ import annotations

from typing import Any, Iterable


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


def dispatch(callbacks: Iterable[Any], hook: str, *args: Any) -> StopTraining | None:
    """Call ``hook`` on every callback; the first ``StopTraining`` raised is returned."""
    stop = None
    for cb in callbacks:
        fn = getattr(cb, hook, None)
        if fn is not None:
            try:
                fn(*args)
            except StopTraining as e:
                stop = stop or e
    return stop
