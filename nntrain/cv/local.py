"""Executors for cv jobs: each maps a picklable job function over plain-dict jobs and
yields plain-dict results as they finish. The job function knows nothing of where it
runs, so another executor (e.g. Ray) only has to implement ``map``.

Progress: the job function takes ``report`` (a callable receiving small dicts); in a
worker process it puts them on a queue that the parent drains and forwards.
"""

from __future__ import annotations

import queue as queue_mod
import signal
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Callable, Iterable, Iterator

Job = dict[str, Any]
Report = Callable[[dict[str, Any]], None]
JobFn = Callable[[Job, Report | None], dict[str, Any]]


class LocalExecutor:
    """``jobs=1``: in this process, one job after another (data and torch loaded once).
    ``jobs=N``: N worker processes (forkserver, else spawn). Every job runs with ``threads`` torch threads,
    default ``DEFAULT_THREADS`` whatever ``jobs`` is: on CPU the thread count changes float summation
    order, so a default that followed ``jobs`` would make ``--jobs`` change the scores and the ranking."""

    DEFAULT_THREADS = 1  # per fold job; parallelism across folds comes from --jobs (or --threads)

    def __init__(self, jobs: int = 1, threads: int | None = None):
        self.jobs = jobs
        self.threads = threads or self.DEFAULT_THREADS

    def _context(self):
        import multiprocessing as mp

        # fork after torch's thread pools exist can deadlock. forkserver (Linux, macOS): one clean
        # server imports the heavy libraries once, then forks each worker from it; else spawn.
        # torch._dynamo: the first optimizer imports it (seconds). nntrain itself is not preloaded:
        # the server does not see the parent's sys.path, so it could pick up another nntrain copy.
        if "forkserver" not in mp.get_all_start_methods():
            return mp.get_context("spawn")
        ctx = mp.get_context("forkserver")
        ctx.set_forkserver_preload(["torch", "torch._dynamo", "torch.optim"])
        return ctx

    def warm_up(self) -> None:
        """Start the fork server now, so its imports overlap with the caller's own set-up."""
        if self.jobs > 1 and self._context().get_start_method() == "forkserver":
            from multiprocessing import forkserver

            # started with SIGINT ignored (kept across exec): Ctrl-C during its imports would
            # print a traceback from it; the parent alone handles Ctrl-C
            try:
                previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
            except ValueError:  # not the main thread: leave signals alone
                forkserver.ensure_running()
                return
            try:
                forkserver.ensure_running()
            finally:
                signal.signal(signal.SIGINT, previous)

    def map(self, fn: JobFn, jobs: Iterable[Job], report: Report | None = None) -> Iterator[dict[str, Any]]:
        jobs = list(jobs)
        if self.jobs == 1 or len(jobs) <= 1:
            import torch

            before = torch.get_num_threads()
            torch.set_num_threads(self.threads)
            try:
                for job in jobs:
                    yield fn(job, report)
            finally:
                torch.set_num_threads(before)
            return
        yield from self._pool_map(fn, jobs, report)

    def _pool_map(self, fn: JobFn, jobs: list[Job], report: Report | None) -> Iterator[dict[str, Any]]:
        ctx = self._context()
        self.warm_up()
        messages = ctx.Queue()
        pool = ProcessPoolExecutor(
            max_workers=min(self.jobs, len(jobs)),
            mp_context=ctx,
            initializer=_init_worker,
            initargs=(messages, self.threads),
        )
        try:
            pending = {pool.submit(_run_in_worker, fn, job) for job in jobs}
            while pending:
                done, pending = wait(pending, timeout=0.1, return_when=FIRST_COMPLETED)
                _drain(messages, report)
                for fut in done:
                    try:
                        result = fut.result()  # a job's exception (e.g. DataError) is re-raised here
                    except BrokenProcessPool:
                        from nntrain.errors import NntrainError

                        raise NntrainError(
                            "a cv worker process died (out of memory?); finished folds are saved: "
                            "continue with --resume and fewer --jobs"
                        ) from None
                    yield result
            _drain(messages, report)
        except BaseException:  # Ctrl-C or a failed job: stop the other workers now
            for p in list(getattr(pool, "_processes", {}).values()):
                p.terminate()
            pool.shutdown(wait=False, cancel_futures=True)
            raise
        pool.shutdown(wait=True)


def _drain(messages: Any, report: Report | None) -> None:
    while True:
        try:
            msg = messages.get_nowait()
        except queue_mod.Empty:
            return
        if report is not None:
            report(msg)


_messages: Any = None


def _init_worker(messages: Any, threads: int) -> None:
    global _messages
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and stops the workers
    import torch

    torch.set_num_threads(threads)
    _messages = messages


def _run_in_worker(fn: JobFn, job: Job) -> dict[str, Any]:
    return fn(job, _messages.put)
