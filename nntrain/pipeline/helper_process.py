"""Starting the helper processes of ``nntrain train`` (the pictures' drawer, the scikit-learn calls)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


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
