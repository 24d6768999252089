"""Draw a run's pictures in a helper process, on the core that training leaves idle.

``nntrain train`` trains small work on one thread (training/threads.py), so on a machine with
two cores one core idles while it trains. ``PictureWorker`` starts ``python -m
nntrain.pipeline.drawer`` as the command starts: that process imports matplotlib and sets up
its fonts and text parser while the main process imports torch and trains (a thread could not
do it alongside: imports and matplotlib hold Python's GIL, so they took the training loop's
time). At the end of the run the main process sends each picture's data (pickled, plain lists
and arrays) and goes on with summary.json and the report while the helper draws;
``finish()`` waits for the pictures before the report reads them.

Whatever goes wrong with the helper (it could not start, died, or a picture failed there),
``finish()`` draws that picture in the main process instead: same function, same bytes, and
the main process's error (e.g. "cannot write ...: free disk space") if it fails there too.
The helper runs in its own session (Ctrl-C in the terminal reaches only nntrain itself),
ignores SIGINT, and exits when the main process closes its pipe or dies.
"""

from __future__ import annotations

import os
import pickle
import select
import subprocess
import sys
from pathlib import Path
from typing import Any

# a job: ("curves", path, Curves) or ("confusion", path, confusion matrix, class names, title)
Job = tuple[Any, ...]
REPLY_SECONDS = 120.0  # a helper silent this long per picture is taken for stuck: the picture is drawn here


def draw(job: Job) -> None:
    """Draw one job's picture and write it (the same call in the helper and in the main process)."""
    from nntrain.plots import confusion_figure, curves_figure, save

    kind, path = job[0], Path(job[1])
    if kind == "curves":
        save(curves_figure([job[2]]), path)
    elif kind == "confusion":
        save(confusion_figure(job[2], job[3], title=job[4]), path)
    else:
        raise ValueError(f"unknown picture job {kind!r}")


class PictureWorker:
    """The helper process and the jobs sent to it. ``start()`` never fails (no helper: the
    pictures are drawn in the main process at ``finish()``). As a context manager it closes
    the helper on the way out (after letting it finish what it was sent)."""

    def __init__(self) -> None:
        self._proc: subprocess.Popen[bytes] | None = None
        self._sent: list[Job] = []  # jobs not yet answered
        self._answers = b""

    def start(self) -> PictureWorker:
        import nntrain

        here = str(Path(nntrain.__file__).resolve().parent.parent)  # the helper runs this same nntrain
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (here, os.environ.get("PYTHONPATH")) if p)}
        try:
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "nntrain.pipeline.drawer"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,  # its failures are redone, and reported, in the main process
                env=env,
                start_new_session=True,  # the terminal's Ctrl-C goes to nntrain, which stops the run
                close_fds=True,
            )
        except OSError:
            self._proc = None
        return self

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def submit(self, job: Job) -> None:
        """Send a job to the helper (drawn at ``finish()`` in this process if the helper is gone)."""
        self._sent.append(job)
        if self._proc is None:
            return
        try:
            pickle.dump(job, self._proc.stdin, protocol=pickle.HIGHEST_PROTOCOL)
            self._proc.stdin.flush()
        except (OSError, ValueError, pickle.PicklingError):
            self._stop()

    def finish(self) -> int:
        """Wait for every submitted picture; draw here any the helper did not (and raise its error
        if it fails here too). Returns how many the helper drew."""
        jobs = list(self._sent)
        done = 0
        if self._proc is not None:
            try:
                while done < len(jobs) and self._reply() == "ok":
                    done += 1
            except TimeoutError:  # a helper that hangs: end it, draw here
                self._sent = []
            except (OSError, EOFError):  # it died
                pass
            if done < len(jobs):
                self._stop()  # (after a failed picture: once it has read what it was sent)
        self._sent = []
        for job in jobs[done:]:
            draw(job)
        return done

    def _reply(self) -> str:
        """The helper's next answer line ("ok" or the error), read straight from the pipe."""
        fd = self._proc.stdout.fileno()
        while b"\n" not in self._answers:
            if not select.select([fd], [], [], REPLY_SECONDS)[0]:
                raise TimeoutError
            chunk = os.read(fd, 65536)
            if not chunk:
                raise EOFError
            self._answers += chunk
        line, _, self._answers = self._answers.partition(b"\n")
        return line.decode("utf-8", "replace")

    def close(self) -> None:
        self._stop()
        self._sent = []

    def _stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        try:
            proc.stdin.close()  # it ends when it has read everything sent
        except OSError:
            pass
        if not self._sent:  # nothing it could be writing (still importing, or idle): end it now
            proc.kill()
        try:
            proc.wait(timeout=REPLY_SECONDS)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        proc.stdout.close()

    def __enter__(self) -> PictureWorker:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _warm_up() -> None:
    """What the first picture of a fresh process pays: matplotlib's Agg backend, the font, the
    mathtext parser of a log axis's tick labels, PNG writing."""
    import io

    from matplotlib.figure import Figure

    fig = Figure(figsize=(2, 1), dpi=100)
    ax, ax_log = fig.subplots(1, 2)
    ax.plot([0, 1], [0, 1], marker="o")
    ax.imshow([[0.0, 1.0]], cmap="Blues")
    ax.set(title="warm-up", xlabel="x")
    ax_log.plot([1, 2], [1e-3, 10.0])
    ax_log.set_yscale("log")
    fig.savefig(io.BytesIO(), format="png", dpi=100)
    import nntrain.plots  # noqa: F401
    import nntrain.runs.files  # noqa: F401


def main() -> None:
    """The helper: read jobs from stdin until it closes; answer each with a line, "ok" or the error."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    source, reply = sys.stdin.buffer, sys.stdout.buffer
    try:
        _warm_up()
    except Exception:  # noqa: BLE001  (the pictures then fail here and are drawn by the main process)
        pass
    while True:
        try:
            job = pickle.load(source)
        except (EOFError, OSError, pickle.UnpicklingError):
            return
        try:
            draw(job)
            answer = "ok"
        except BaseException as e:  # noqa: BLE001  (answered; the main process redraws and reports it)
            answer = f"{type(e).__name__}: {e}".replace("\n", " ")
        try:
            reply.write(answer.encode("utf-8", "replace") + b"\n")
            reply.flush()
        except OSError:
            return


if __name__ == "__main__":
    main()
