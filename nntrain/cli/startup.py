"""Python's cyclic garbage collector in a command's process (a start-up, some work, an exit).

Importing torch, scikit-learn and matplotlib allocates ~10^6 objects that live until exit,
and every full collection walks all of them (~0.2 s each on a 2-core VM; ~0.7 s over a
default ``nntrain train`` start-up, and ~0.5 s more while the interpreter shuts down).
Commands therefore pause the collector while they start up (``collector_paused``), freeze
what start-up built once the work begins (``settle_heap``, or the ``FreezeHeap`` callback
at fit start, after the optimizer has imported torch._dynamo), and freeze the heap again
before exiting (``before_exit``). Not for long-lived library use: cyclic garbage among
frozen objects stays until exit.

Once torch is loaded, the interpreter's own shutdown (tearing down ~10^4 modules and the
objects they hold, then torch's C++ static destructors) takes ~0.2 s more on the same VM
while nothing is left to write: ``quick_exit`` ends the process after what a normal exit
does that matters (threads joined, atexit handlers run, standard streams flushed).
"""

from __future__ import annotations

import atexit
import contextlib
import gc
import os
import sys
import threading
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


def exit_status(code: Any) -> int:
    """The status ``sys.exit(code)`` gives: None → 0, an int as is, anything else printed to stderr → 1."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1


def quick_exit(code: Any) -> None:
    """End the process with ``sys.exit(code)``'s status, skipping the interpreter's teardown.

    What a normal exit does that matters runs first: the atexit handlers (logging's flush,
    temporary directories, multiprocessing and Ray children, ...) and the standard streams'
    flush. Falls back to a normal exit when torch was never loaded (nothing to gain) or
    another non-daemon thread is still running (a normal exit waits for it)."""
    others = [t for t in threading.enumerate() if t is not threading.main_thread() and not t.daemon]
    run_handlers = getattr(atexit, "_run_exitfuncs", None)
    if "torch" not in sys.modules or others or run_handlers is None:
        raise SystemExit(code)
    status = exit_status(code)
    run_handlers()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError, AttributeError):  # closed, or a broken pipe: nothing more can reach it
            pass
    os._exit(status)
