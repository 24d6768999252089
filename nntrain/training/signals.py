"""Graceful stop on Ctrl-C / SIGTERM: the current SGD step finishes, ``last.pt`` records
where training stood, and the command exits 130 with the resume command. A second
signal aborts at once."""

from __future__ import annotations

import signal
import threading
from types import FrameType


class GracefulStop:
    """Context manager and ``should_stop`` callable for ``engine.fit``."""

    def __init__(self) -> None:
        self.requested: str | None = None
        self._old: dict[int, object] = {}

    def __call__(self) -> bool:
        return self.requested is not None

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.requested is not None:  # second signal: stop now
            raise KeyboardInterrupt
        self.requested = signal.Signals(signum).name

    def __enter__(self) -> GracefulStop:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)
        self._old.clear()
