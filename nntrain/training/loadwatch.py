"""Noticing that other processes slowed a run down, so the user knows why it took longer.

An epoch slowed by competition for the CPU takes far more wall time than the fastest epoch
while the process gets a far smaller share of the CPU during it (wall ÷ CPU time grows: it
was waiting for a core, not working; sharing a core also costs some CPU time, through cache
misses and switches, so CPU time alone is not the test). An epoch that is slower because it
does more work costs CPU time in proportion, and is not reported. Waiting OpenMP threads
sleep (``training.threads``), so their waits do not count as CPU time. Nothing here changes
how the run computes: its numbers never depend on the load.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

SLOWDOWN = 2.0
"""An epoch counts as slowed when its wall time is at least this many times the fastest epoch's, and so
is its wall ÷ CPU time (the time it waited per unit of work)."""


@dataclass
class EpochClock:
    epoch: int
    wall: float  # seconds
    cpu: float  # CPU seconds of this process (all threads)


class LoadWatch:
    """Training callback: wall and CPU time of every epoch; ``verdict()`` says whether and when
    other load slowed the run. The clocks are injectable for tests."""

    def __init__(self, wall: Callable[[], float] = time.perf_counter, cpu: Callable[[], float] = time.process_time):
        self._wall, self._cpu = wall, cpu
        self.epochs: list[EpochClock] = []
        self._start: tuple[float, float] | None = None

    def on_fit_start(self, info: dict[str, Any]) -> None:
        self.epochs = []
        self._start = (self._wall(), self._cpu())

    def on_epoch_end(self, record: dict[str, Any]) -> None:
        now = (self._wall(), self._cpu())
        if self._start is not None:
            self.epochs.append(EpochClock(int(record["epoch"]), now[0] - self._start[0], now[1] - self._start[1]))
        self._start = now

    def slowed(self) -> list[EpochClock]:
        """The epochs that waited for the CPU (see the module docstring); needs 2 epochs or more."""
        if len(self.epochs) < 2:
            return []
        fastest = min(self.epochs, key=lambda e: e.wall)
        if fastest.wall <= 0:
            return []

        def waiting(e: EpochClock) -> float:
            return e.wall / max(e.cpu, 1e-9)

        return [
            e for e in self.epochs if e.wall >= SLOWDOWN * fastest.wall and waiting(e) >= SLOWDOWN * waiting(fastest)
        ]

    def verdict(self) -> str | None:
        """One line for the summary, or None when no epoch was slowed."""
        slow = self.slowed()
        if not slow:
            return None
        fastest = min(self.epochs, key=lambda e: e.wall)
        worst = max(e.wall for e in slow) / fastest.wall
        which = ", ".join(str(e.epoch) for e in slow[:8]) + (f" and {len(slow) - 8} more" if len(slow) > 8 else "")
        return (
            f"other load slowed this run: epoch(s) {which} took up to {worst:.1f}x the fastest epoch's time "
            "while the process got a far smaller share of the CPU (it was waiting for a core); timings of this "
            "run overstate its cost (its numbers are unaffected)"
        )
