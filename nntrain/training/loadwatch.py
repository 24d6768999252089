"""Noticing that other processes slowed a run down, so the user knows why it took longer.

An epoch slowed by competition for the CPU takes far more wall time than the fastest epoch
while the process gets a far smaller share of the CPU during it (wall ÷ CPU time grows: it
was waiting for a core, not working; sharing a core also costs some CPU time, through cache
misses and switches, so CPU time alone is not the test). An epoch that is slower because it
does more work (a larger epoch, a slower kernel) costs CPU time in proportion, and is not
reported.

A run on several CPU threads is also sent to one thread as soon as its steps slow down: two
windows of ``WINDOW_STEPS`` steps in a row that take ``SLOWDOWN`` times the fastest window's time
per step (or two such epochs in a row: a lone slow window or epoch is a hiccup, not load). Its
waiting threads spin before they sleep (``training.threads``), so its CPU time grows with the wall
time and the test above can miss the load; one thread cannot be stalled by it, and every step does
the same work (data in memory), so slower windows mean the CPU was taken.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

SLOWDOWN = 2.0
"""An epoch counts as slowed when its wall time is at least this many times the fastest epoch's, and so
is its wall ÷ CPU time (the time it waited per unit of work)."""

WINDOW_STEPS = 8
"""Steps per timing window of a multi-threaded run (within one epoch: evaluation and checkpoints excluded)."""


@dataclass
class EpochClock:
    epoch: int
    wall: float  # seconds
    cpu: float  # CPU seconds of this process (all threads)


class LoadWatch:
    """Training callback: wall and CPU time of every epoch; ``verdict()`` says whether and when
    other load slowed the run. The clocks are injectable for tests."""

    def __init__(
        self,
        wall: Callable[[], float] = time.perf_counter,
        cpu: Callable[[], float] = time.process_time,
        *,
        one_thread: Callable[[], bool] | None = None,
        threaded: bool = False,
    ):
        """``one_thread``: called once when an epoch turns out slowed by other load; switches the
        computation to one thread (True when it did: it was on more), so the rest cannot be stalled.
        ``threaded``: the run computes on several CPU threads: slowed steps switch it too (see above)."""
        self._wall, self._cpu = wall, cpu
        self.epochs: list[EpochClock] = []
        self._start: tuple[float, float] | None = None
        self._one_thread = one_thread
        self._threaded = threaded
        self._window: tuple[float, int] | None = None  # (wall, steps done) where the current window began
        self._fastest_step: float | None = None  # the fastest window's seconds per step
        self._slow_windows = 0  # slowed windows in a row
        self.switched_at: int | None = None  # the epoch after (or, with switched_step, in) which it went on one thread
        self.switched_step: int | None = None
        self.step_slowdown: float | None = None  # the window's time per step ÷ the fastest's, when that switched it

    def on_fit_start(self, info: dict[str, Any]) -> None:
        self.epochs = []
        self._start = (self._wall(), self._cpu())
        self._window = None

    def on_step(self, step: int, n_steps: int) -> None:
        if not (self._threaded and self._one_thread) or self.switched_at is not None:
            return
        now = self._wall()
        if self._window is None or step <= self._window[1]:  # an epoch's first step: a new window after it
            self._window = (now, step)
            return
        if step - self._window[1] < WINDOW_STEPS:
            return
        per_step = (now - self._window[0]) / (step - self._window[1])
        self._window = (now, step)
        if self._fastest_step is None or per_step < self._fastest_step:
            self._fastest_step = per_step
        self._slow_windows = self._slow_windows + 1 if per_step >= SLOWDOWN * self._fastest_step else 0
        if self._slow_windows >= 2 and self._one_thread():
            self.switched_at, self.switched_step = len(self.epochs) + 1, step
            self.step_slowdown = per_step / self._fastest_step

    def on_epoch_end(self, record: dict[str, Any]) -> None:
        now = (self._wall(), self._cpu())
        self._window = None
        if self._start is not None:
            self.epochs.append(EpochClock(int(record["epoch"]), now[0] - self._start[0], now[1] - self._start[1]))
            slowed = self.slowed()
            if self._threaded and len(self.epochs) > 2:  # spinning threads: the wall time alone tells
                fastest = min(e.wall for e in self.epochs)
                if min(e.wall for e in self.epochs[-2:]) >= SLOWDOWN * fastest > 0:  # two in a row
                    slowed = [self.epochs[-1]]
            if self._one_thread and self.switched_at is None and slowed and slowed[-1] is self.epochs[-1]:
                if self._one_thread():
                    self.switched_at = self.epochs[-1].epoch
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
        """One line for the summary, or None when no epoch was slowed and nothing switched."""
        if self.switched_step is not None:
            switched = f"training went on with one thread from step {self.switched_step} of epoch {self.switched_at}"
        elif self.switched_at is not None:
            switched = f"training went on with one thread after epoch {self.switched_at}"
        else:
            switched = None
        slow = self.slowed()
        if not slow:
            if switched is None:
                return None
            what = (
                f"its steps took {self.step_slowdown:.1f}x the fastest steps' time"
                if self.step_slowdown is not None
                else "an epoch took twice the fastest epoch's time or more"
            )
            return f"other load slowed this run: {what}; {switched}, which other processes cannot stall"
        fastest = min(self.epochs, key=lambda e: e.wall)
        worst = max(e.wall for e in slow) / fastest.wall
        which = ", ".join(str(e.epoch) for e in slow[:8]) + (f" and {len(slow) - 8} more" if len(slow) > 8 else "")
        return (
            f"other load slowed this run: epoch(s) {which} took up to {worst:.1f}x the fastest epoch's time "
            "while the process got a far smaller share of the CPU (it was waiting for a core); timings of this "
            "run overstate its cost" + (f"; {switched}" if switched else "")
        )
