"""Python's cyclic garbage collector in a command's process (a start-up, some work, an exit).

Importing torch and matplotlib allocates about a million objects that live until exit, and
every full collection walks all of them (docs/speed.md has what that costs a default run).
Commands therefore pause the collector while they start up (``collector_paused``), freeze
what start-up built once the work begins (``settle_heap``, or the ``FreezeHeap`` callback
at fit start, after the optimizer has imported torch._dynamo), and freeze the heap again
before exiting (``before_exit``). Not for long-lived library use: cyclic garbage among
frozen objects stays until exit.
"""

from __future__ import annotations

import contextlib
import gc
from typing import Any, Iterator


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """Collector off until ``settle_heap``; on the way out (also for callers that go on:
    tests, notebooks) it is back as it was and nothing stays frozen. Also a decorator."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.unfreeze()
        if was_enabled:
            gc.enable()


def settle_heap() -> None:
    """Exempt every object alive now from the collector (``gc.freeze``) and turn it (back)
    on: from here it walks only what the work creates."""
    gc.freeze()
    gc.enable()


class FreezeHeap:
    """Callback: ``settle_heap()`` at fit start."""

    def on_fit_start(self, info: dict[str, Any]) -> None:
        settle_heap()


def before_exit() -> None:
    """The work is done and its files are written: spare the shutdown's collections the
    walk over every live object. Objects are still released and atexit handlers still run."""
    gc.freeze()
