"""Draw a run's pictures in a helper process, on a core the main process leaves idle.

``nntrain train`` starts up on one core (imports, data, model) and ends on one (summary, report),
so on a machine with two cores the other one idles then. ``PictureWorker`` starts ``python -m
nntrain.pipeline.drawer`` as the command starts: that process imports matplotlib and draws a
throw-away picture of each kind while the main process imports torch (a thread could not do it
alongside: imports and matplotlib hold Python's GIL, so they took the main thread's time); its
CPU time is not counted as other load when the thread count is chosen (``count_as_own``).
Once set up, it forks a twin that shares what it built, so a run's two pictures are drawn at
the same time. At the end of the run the main process sends each picture's data
(pickled, plain lists and arrays; the curves to one process, the confusion matrix to the
other) and goes on with summary.json and the report while they draw; ``finish()`` waits for
the pictures before the report reads them.

Whatever goes wrong with the helper (it could not start, died, or a picture failed there),
``finish()`` draws that picture in the main process instead: same function, same bytes, and
the main process's error (e.g. "cannot write ...: free disk space") if it fails there too.
The helpers run in their own session (Ctrl-C in the terminal reaches only nntrain itself),
ignore SIGINT, and exit when the main process closes their pipes or dies.
"""

from __future__ import annotations

import os
import pickle
import select
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from nntrain.pipeline.helper_process import HelperHandle

# a job: ("curves", path, Curves) or ("confusion", path, confusion matrix, class names, title)
Job = tuple[Any, ...]
REPLY_SECONDS = 120.0  # a helper silent this long per picture is taken for stuck: the picture is drawn here
CHANNELS = 2  # drawing processes (the helper and its twin): a run has two pictures


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


class _Channel:
    """One drawing process's two pipes, as nntrain sees them: jobs out, answer lines back."""

    def __init__(self, jobs_fd: int, answers_fd: int) -> None:
        self.jobs = os.fdopen(jobs_fd, "wb")
        self.answers_fd = answers_fd
        self.answers = b""
        self.alive = True

    def send(self, job: Job) -> None:
        try:
            pickle.dump(job, self.jobs, protocol=pickle.HIGHEST_PROTOCOL)
            self.jobs.flush()
        except (OSError, ValueError, pickle.PicklingError):
            self.alive = False

    def reply(self) -> str:
        """The next answer line ("ok" or the error), read straight from the pipe."""
        while b"\n" not in self.answers:
            if not select.select([self.answers_fd], [], [], REPLY_SECONDS)[0]:
                raise TimeoutError
            chunk = os.read(self.answers_fd, 65536)
            if not chunk:
                raise EOFError
            self.answers += chunk
        line, _, self.answers = self.answers.partition(b"\n")
        return line.decode("utf-8", "replace")

    def end_jobs(self) -> None:
        """No more jobs: the drawing process ends once it has read what was sent."""
        try:
            self.jobs.close()
        except OSError:
            pass


class PictureWorker(HelperHandle):
    """The helper processes and the jobs sent to them. ``start()`` never fails (no helper: the
    pictures are drawn in the main process at ``finish()``). As a context manager it closes
    the helpers on the way out (after letting them finish what they were sent).

    One process is started; once matplotlib is set up it forks a twin (sharing what it imported
    and built), so the two pictures of a run are drawn at the same time, one per process. Jobs
    alternate between the two."""

    def __init__(self) -> None:
        self._proc: subprocess.Popen[bytes] | None = None
        self._channels: list[_Channel] = []
        self._sent: list[tuple[Job, _Channel | None]] = []  # jobs not yet answered, and where they went

    def start(self) -> PictureWorker:
        # per drawing process: jobs (they read), answers (they write)
        self._channels = [_Channel(w, r) for w, r in self._spawn("nntrain.pipeline.drawer", CHANNELS)]
        return self

    def submit(self, job: Job) -> None:
        """Send a job to a helper (drawn at ``finish()`` in this process if the helpers are gone)."""
        ch = self._channels[len(self._sent) % len(self._channels)] if self._channels else None
        if ch is not None and ch.alive:
            ch.send(job)
        self._sent.append((job, ch))

    def finish(self) -> int:
        """Wait for every submitted picture; draw here any the helpers did not (and raise its error
        if it fails here too). Returns how many the helpers drew."""
        sent, self._sent = self._sent, []
        done, stuck, here = 0, False, []
        for job, ch in sent:
            answer = None
            if ch is not None and ch.alive:
                try:
                    answer = ch.reply()
                except TimeoutError:  # a helper that hangs: ended below, its pictures drawn here
                    ch.alive, stuck = False, True
                except (OSError, EOFError):  # it died
                    ch.alive = False
            if answer == "ok":
                done += 1
            else:  # not drawn by a helper, or failed there
                here.append(job)
        if stuck:
            self.close()
        for job in here:
            draw(job)
        return done

    def close(self) -> None:
        """End the helpers: at once when nothing is pending, else once they wrote what was sent."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        for ch in self._channels:
            ch.end_jobs()
        if not self._sent:  # nothing they could be writing (still importing, or idle): end them now
            try:
                os.killpg(proc.pid, signal.SIGKILL)  # the helper and its twin (its own session's group)
            except OSError:
                pass
        try:
            proc.wait(timeout=REPLY_SECONDS)  # (the helper waits for its twin)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        for ch in self._channels:
            os.close(ch.answers_fd)
        self._channels, self._sent = [], []

    def __enter__(self) -> PictureWorker:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _warm_up() -> None:
    """What the first picture of each kind costs a fresh process (~0.2 s each: matplotlib's Agg
    backend, fonts, the mathtext parser of a log axis's tick labels, the colorbar, PNG writing),
    paid here on tiny data by the same functions, before the run's pictures are asked for."""
    import io

    import numpy as np

    from nntrain.plots import Curves, confusion_figure, curves_figure

    rows = [{"epoch": e, "train_loss": 1.0 / e, "val_loss": 1.0 / e, "train_acc": 0.5, "val_acc": 0.5} for e in (1, 2)]
    curves = Curves("warm-up", [{**r, "lr": 10.0 ** (1 - 2 * r["epoch"])} for r in rows], [1.0, 0.5], test_acc=0.5)
    for fig in (curves_figure([curves]), confusion_figure(np.array([[2, 1], [0, 3]]), ["a", "b"])):
        fig.savefig(io.BytesIO(), format="png", dpi=fig.dpi)
    import nntrain.runs.files  # noqa: F401  (save's atomic write)


def _serve(jobs_fd: int, answers_fd: int) -> None:
    """Read jobs until the pipe closes; answer each with a line, "ok" or the error."""
    source, reply = os.fdopen(jobs_fd, "rb"), os.fdopen(answers_fd, "wb")
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


def main(fds: list[int]) -> None:
    """The helper: set up matplotlib, fork a twin for the second pair of pipes, serve the first."""
    if len(fds) not in (2, 4):
        sys.exit("nntrain.pipeline.drawer is started by nntrain train, with the pipes it draws for")
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        _warm_up()
    except Exception:  # noqa: BLE001  (the pictures then fail here and are drawn by the main process)
        pass
    mine, twins = fds[:2], fds[2:]
    pid = -1
    if twins:
        try:
            pid = os.fork()
        except OSError:  # no twin: its pipes close, and nntrain draws its pictures itself
            pass
        if pid == 0:
            for fd in mine:
                os.close(fd)
            _serve(*twins)
            os._exit(0)
        for fd in twins:
            os.close(fd)
    _serve(*mine)
    if pid > 0:
        os.waitpid(pid, 0)


if __name__ == "__main__":
    main([int(a) for a in sys.argv[1:]])
