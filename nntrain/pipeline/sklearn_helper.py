"""Answer ``nntrain train``'s scikit-learn calls in a helper process (``data.sklearn_calls``).

Importing scikit-learn takes ~0.7 s (SciPy's stats among it). ``SklearnHelper.start()`` starts
``python -m nntrain.pipeline.sklearn_helper`` as the command starts: it imports scikit-learn
while the main process imports torch, then answers each call — the digits, the stratified
splits, the confusion matrix, precision/recall — with the same function on the same arguments
(pickled both ways: plain arrays and numbers), so the main process never imports it. An
exception the function raises is raised in the main process; if the helper cannot start, dies,
or does not answer within ``REPLY_SECONDS``, the call runs in the main process instead. The
helper runs in its own session, ignores SIGINT and ends when its pipe closes.
"""

from __future__ import annotations

import os
import pickle
import select
import signal
import subprocess
import sys
from typing import Any

from nntrain.pipeline.helper_process import HelperHandle

REPLY_SECONDS = 60.0  # (its imports take ~1 s; a call then takes milliseconds)


class SklearnHelper(HelperHandle):
    """The helper process and its two pipes; a context manager that ends it on the way out."""

    def __init__(self) -> None:
        self._proc: subprocess.Popen[bytes] | None = None
        self._calls: Any = None
        self._answers: Any = None

    def start(self) -> SklearnHelper:
        """Start it and send ``data.sklearn_calls`` to it; never fails (the calls then run here)."""
        from nntrain.data import sklearn_calls

        for calls_w, answers_r in self._spawn("nntrain.pipeline.sklearn_helper", 1):
            self._calls, self._answers = os.fdopen(calls_w, "wb"), os.fdopen(answers_r, "rb")
            sklearn_calls.set_remote(self.call)
        return self

    def call(self, name: str, args: tuple, kwargs: dict) -> Any:
        """``sklearn_calls.FUNCTIONS[name](*args, **kwargs)`` run by the helper (raises
        ``sklearn_calls.Unavailable`` when it cannot answer: the caller runs it itself)."""
        from nntrain.data.sklearn_calls import Unavailable

        if self._proc is None:
            raise Unavailable
        try:
            pickle.dump((name, args, kwargs), self._calls, protocol=pickle.HIGHEST_PROTOCOL)
            self._calls.flush()
            if not select.select([self._answers], [], [], REPLY_SECONDS)[0]:
                raise TimeoutError
            status, value = pickle.load(self._answers)
        except Exception:  # noqa: BLE001  (dead, hung, or an answer this process cannot unpickle)
            self.close()
            raise Unavailable from None
        if status == "ok":
            return value
        if status == "raise":  # the function's own exception, e.g. train_test_split's ValueError
            raise value
        raise Unavailable  # its answer could not be pickled: run it here

    def close(self) -> None:
        from nntrain.data import sklearn_calls

        proc, self._proc = self._proc, None
        if proc is None:
            return
        sklearn_calls.set_remote(None)  # (one helper per process: this one)
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # nothing of it is worth waiting for
        except OSError:
            pass
        proc.wait()
        for f in (self._calls, self._answers):
            try:
                f.close()
            except OSError:
                pass

    def __enter__(self) -> SklearnHelper:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def main(fds: list[int]) -> None:
    """The helper: import scikit-learn, then answer calls until the pipe closes."""
    if len(fds) != 2:
        sys.exit("nntrain.pipeline.sklearn_helper is started by nntrain train, with the pipes it answers on")
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    from nntrain.data.sklearn_calls import FUNCTIONS, import_all

    try:
        import_all()
    except Exception:  # noqa: BLE001  (each call then fails here and runs in the main process)
        pass
    source, reply = os.fdopen(fds[0], "rb"), os.fdopen(fds[1], "wb")
    while True:
        try:
            name, args, kwargs = pickle.load(source)
        except (EOFError, OSError, pickle.UnpicklingError, ValueError):
            return
        try:
            answer: tuple[str, Any] = ("ok", FUNCTIONS[name](*args, **kwargs))
        except Exception as e:  # noqa: BLE001  (raised again in the main process)
            answer = ("raise", e)
        try:
            data = pickle.dumps(answer, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as e:  # noqa: BLE001
            data = pickle.dumps(("error", repr(e)))
        try:
            reply.write(data)
            reply.flush()
        except OSError:
            return


if __name__ == "__main__":
    main([int(a) for a in sys.argv[1:]])
