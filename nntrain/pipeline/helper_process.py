"""Starting the helper processes of ``nntrain train`` (the pictures' drawer, the scikit-learn calls)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def spawn_with_pipes(module: str, channels: int) -> tuple[subprocess.Popen[bytes], list[tuple[int, int]]]:
    """``spawn`` with ``channels`` pairs of pipes: per channel the helper reads requests from one and
    writes answers to the other. Returns the process and this side's (requests_w, answers_r) per
    channel; raises OSError (nothing left open) when it cannot be started."""
    theirs: list[int] = []
    ours: list[tuple[int, int]] = []
    try:
        for _ in range(channels):
            requests_r, requests_w = os.pipe()
            answers_r, answers_w = os.pipe()
            theirs += [requests_r, answers_w]
            ours.append((requests_w, answers_r))
        proc = spawn(module, theirs)
    except OSError:
        for w, r in ours:
            os.close(w)
            os.close(r)
        raise
    finally:
        for fd in theirs:
            os.close(fd)
    return proc, ours


def spawn(module: str, fds: list[int]) -> subprocess.Popen[bytes]:
    """``python -m <module> <fds...>`` with this same nntrain on its path, inheriting ``fds`` (the
    pipes it serves), in its own session (the terminal's Ctrl-C goes to nntrain, which stops the
    run; ``os.killpg(pid)`` ends it and any child of its own), silent (what fails there is redone,
    and reported, in this process). Its CPU time is this command's own, not other load
    (``threads.count_as_own``). Raises OSError when it cannot be started."""
    import nntrain
    from nntrain.training.threads import count_as_own

    here = str(Path(nntrain.__file__).resolve().parent.parent)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (here, os.environ.get("PYTHONPATH")) if p)}
    proc = subprocess.Popen(
        [sys.executable, "-m", module, *map(str, fds)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
        pass_fds=fds,
        start_new_session=True,
    )
    count_as_own(proc.pid)
    return proc


class HelperHandle:
    """What a helper's handle in the main process shares: its process, its pid, starting it."""

    _proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def _spawn(self, module: str, channels: int) -> list[tuple[int, int]]:
        """Start ``module`` (``spawn_with_pipes``); this side's pipe ends, none when it could not start."""
        try:
            self._proc, ours = spawn_with_pipes(module, channels)
        except OSError:
            self._proc, ours = None, []
        return ours
