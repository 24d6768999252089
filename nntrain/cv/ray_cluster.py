"""Run cv jobs as Ray tasks: ``nntrain cv --executor ray [--address ADDR]``.

Each (combination, fold) job becomes one Ray task reserving ``cpus_per_job`` CPUs and
``gpus_per_job`` GPUs (a fraction such as 0.25 packs four jobs on one card). Results come
back as plain dicts in finishing order, exactly as from ``LocalExecutor.map``, so the cv
directory, the tables and ``--resume`` are the same whichever executor ran the folds.

Code: the driver's own ``nntrain`` package is shipped to the cluster (runtime_env
``py_modules``), so every worker runs the same code as the driver; torch and the other
dependencies must be installed on every node (``pip install "nntrain[ray]"``).

Data is not shipped: every worker loads the dataset itself from ``data.root`` (made
absolute here, so a relative path means the driver's working directory on every node).
A worker that cannot read it sends back its ``DataError``, which becomes one message
naming the node.
"""

from __future__ import annotations

import logging
import math
import os
import socket
from pathlib import Path
from typing import Any, Iterable, Iterator

from nntrain import errors
from nntrain.config import TORCHVISION_SETS
from nntrain.cv.local import Job, JobFn, Report
from nntrain.errors import ConfigError, DataError, NntrainError

LOOPBACK = "127.0.0.1"  # the node address of a Ray instance nntrain starts itself


def loopback_only(ray: Any) -> dict[str, Any]:
    """Make a local Ray instance listen on 127.0.0.1, not on the machine's external interface; returns
    the ``ray.init`` arguments. Ray turns ``_node_ip_address="127.0.0.1"`` into the external address
    unless it runs in single-machine mode (its default on macOS and Windows), which is what
    ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` selects: set for the raylet and workers started next, and
    for this process, whose ``ray`` read that setting at import."""
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    constants = getattr(getattr(ray, "_private", None), "ray_constants", None)
    if constants is not None and hasattr(constants, "ENABLE_RAY_CLUSTER"):
        constants.ENABLE_RAY_CLUSTER = False
    return {"_node_ip_address": LOOPBACK}


INSTALL = 'pip install "nntrain[ray]"'
DATA_HINT = (
    "every Ray node must read the data at the same absolute path (a shared filesystem, or a copy "
    "at that path on each node; see the README, 'Scaling out: Ray')"
)


def _resource(flag: str, value: float, *, minimum_exclusive: bool) -> float:
    """Ray's rule: a fraction up to 1, whole numbers above 1."""
    bad = not math.isfinite(value) or value < 0 or (minimum_exclusive and value == 0)
    if bad or (value > 1 and value != int(value)):
        allowed = "a number > 0" if minimum_exclusive else "0 or more"
        raise ConfigError(f"{flag} {value:g}: use {allowed}; fractions only up to 1 (e.g. 0.25, 0.5, 1, 2)")
    return float(value)


def import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ConfigError(f"--executor ray needs Ray, which is not installed here: {INSTALL}") from None
    return ray


class RayExecutor:
    """``map(fn, jobs, report)`` like ``LocalExecutor``, each job one Ray task. Connects to ``address``
    (``auto``: the cluster started on this machine with ``ray start``; ``local``, or None without
    ``RAY_ADDRESS``: a new local instance); reuses a connection the caller already made (pass
    ``runtime_env=runtime_env()`` to that ``ray.init``, or the workers import whatever ``nntrain``
    their nodes have). Every task runs with ``threads`` torch threads (default: its whole CPUs), as
    ``LocalExecutor`` does. A task whose worker or node dies is retried once (``max_retries``)."""

    max_retries = 1  # a lost node is worth one retry; a job that kills its worker twice (memory?) is not

    def __init__(
        self,
        address: str | None = None,
        cpus_per_job: float = 1.0,
        gpus_per_job: float = 0.0,
        threads: int | None = None,
    ):
        self.cpus = _resource("--cpus-per-job", cpus_per_job, minimum_exclusive=True)
        self.gpus = _resource("--gpus-per-job", gpus_per_job, minimum_exclusive=False)
        self.address = address
        self.threads = threads or max(1, int(self.cpus))
        self.ray = import_ray()
        self._started = False  # we called ray.init: we shut it down after map
        self.ran_on: dict[tuple[int, int], tuple[str, int]] = {}  # (combo, fold) → (node IP, worker pid)

    def check_device(self, device: str) -> None:
        """A task sees only the GPUs it reserved (Ray sets CUDA_VISIBLE_DEVICES)."""
        if device == "cpu" and self.gpus > 0:
            raise ConfigError(
                f"--gpus-per-job {self.gpus:g} reserves GPUs but device is 'cpu'; "
                "use --set device=auto (or cuda), or drop --gpus-per-job"
            )
        if device.startswith("cuda") and self.gpus == 0:
            raise ConfigError(
                f"device: {device!r} on Ray needs --gpus-per-job (e.g. 1 or 0.5): a task that reserves no GPU sees none"
            )

    def connect(self) -> None:
        """Join (or start) the cluster and check a node can hold one job; before any training."""
        ray = self.ray
        if not ray.is_initialized():
            os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no usage report over the network
            local = self.address == "local" or (self.address is None and not os.environ.get("RAY_ADDRESS"))
            kwargs: dict[str, Any] = {"include_dashboard": False, **loopback_only(ray)} if local else {}
            self._reachable()
            try:
                ray.init(
                    address="local" if local else self.address,
                    runtime_env=runtime_env(),
                    logging_level=logging.WARNING,
                    log_to_driver=False,
                    **kwargs,
                )
            except (ConnectionError, RuntimeError, ValueError) as e:
                where = f"at '{self.address}'" if self.address else "(RAY_ADDRESS)" if not local else "locally"
                first = str(e).strip().splitlines()[0].rstrip(".") if str(e).strip() else type(e).__name__
                raise ConfigError(
                    f"--executor ray: cannot connect to a Ray cluster {where}: {first}; start one "
                    "with 'ray start --head' and pass --address auto (on its head node) or "
                    "--address <head-ip>:6379 (a cluster with token authentication also needs "
                    "RAY_AUTH_MODE=token and the head's ~/.ray/auth_token here)"
                ) from None
            self._started = True
        nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
        if not any(r.get("CPU", 0) >= self.cpus and r.get("GPU", 0) >= self.gpus for r in nodes):
            largest = max(nodes, key=lambda r: (r.get("GPU", 0), r.get("CPU", 0)), default={})
            self.close()
            raise ConfigError(
                f"--cpus-per-job {self.cpus:g} --gpus-per-job {self.gpus:g}: no node of the Ray cluster has that "
                f"much (largest: {largest.get('CPU', 0):g} CPUs, {largest.get('GPU', 0):g} GPUs); "
                "lower the flags or add a larger node"
            )

    def _reachable(self) -> None:
        """host:port given: fail in seconds when nothing listens there (Ray itself retries for minutes)."""
        if self.address in (None, "auto", "local") or "://" in self.address:
            return
        host, _, port = self.address.rpartition(":") if ":" in self.address else (self.address, "", "6379")
        try:
            socket.create_connection((host, int(port)), timeout=10).close()
        except (OSError, ValueError) as e:
            raise ConfigError(
                f"--address {self.address}: no Ray head node answers there ({e}); start one with "
                "'ray start --head' on that machine, or check the host and port (default 6379)"
            ) from None

    def close(self) -> None:
        if self._started:
            self.ray.shutdown()
            self._started = False

    def map(self, fn: JobFn, jobs: Iterable[Job], report: Report | None = None) -> Iterator[dict[str, Any]]:
        """Progress is per finished job (the caller reports each result); no per-epoch events."""
        ray = self.ray
        jobs = list(jobs)
        if not jobs:
            self.close()
            return
        self.connect()
        task = ray.remote(_run_task).options(
            num_cpus=self.cpus, num_gpus=self.gpus, name="nntrain-cv-fold", max_retries=self.max_retries
        )
        pending = {task.remote(fn, absolute_data_root(job), self.threads): job for job in jobs}
        try:
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1)
                for ref in done:
                    job = pending.pop(ref)
                    yield self._result(ref, job)
        except BaseException:  # Ctrl-C or a failed job: stop the other tasks now
            for ref in pending:
                ray.cancel(ref, force=True)
            raise
        finally:
            self.close()

    def _result(self, ref: Any, job: Job) -> dict[str, Any]:
        ray = self.ray
        which = f"combination {job['combo'] + 1} fold {job['fold'] + 1}"
        try:
            out = ray.get(ref)
        except ray.exceptions.RayTaskError:
            raise  # a bug inside nntrain: its traceback is the useful report
        except ray.exceptions.RayError as e:  # worker or node died, out of memory, runtime env failed
            first = str(e).strip().splitlines()[0] if str(e).strip() else ""
            raise NntrainError(
                f"the Ray task for {which} failed ({type(e).__name__}: {first}); finished folds "
                "are saved: continue with nntrain cv --resume <cv dir> --executor ray"
            ) from None
        self.ran_on[job["combo"], job["fold"]] = (out["node"], out["pid"])
        if "error" in out:
            cls = WORKER_ERRORS.get(out["error"], NntrainError)
            hint = f"; {DATA_HINT}" if issubclass(cls, DataError) else ""
            raise cls(f"Ray worker on node {out['node']} ({out['host']}), {which}: {out['message']}{hint}")
        return out["result"]


WORKER_ERRORS: dict[str, type[NntrainError]] = {
    cls.__name__: cls
    for cls in (
        errors.ConfigError,
        errors.DataError,
        errors.CheckpointError,
        errors.RunDirError,
        errors.CheckFailed,
        errors.Diverged,
        errors.Interrupted,
        NntrainError,
    )
}
"""A worker's error, sent back by class name, raised again under the same class on the driver."""


def runtime_env() -> dict[str, Any]:
    """For ``ray.init``: ship this ``nntrain`` package to every worker (Ray uploads it once per job)."""
    import nntrain

    return {"py_modules": [str(Path(nntrain.__file__).parent)], "env_vars": {"RAY_USAGE_STATS_ENABLED": "0"}}


def absolute_data_root(job: Job) -> Job:
    """``data.root`` as an absolute path: a worker's working directory is not the driver's."""
    data = dict(job["config"]["data"])
    if data.get("root") is not None:
        data["root"] = os.path.abspath(os.path.expanduser(data["root"]))
    elif data.get("dataset") in TORCHVISION_SETS:  # null = ./data of the driver
        data["root"] = os.path.abspath("data")
    return {**job, "config": {**job["config"], "data": data}}


def _run_task(fn: JobFn, job: Job, threads: int) -> dict[str, Any]:
    """Runs on a Ray worker: the job's result, or its NntrainError as plain data with the node's name."""
    import ray
    import torch

    torch.set_num_threads(threads)
    where = {"node": ray.util.get_node_ip_address(), "host": socket.gethostname(), "pid": os.getpid()}
    try:
        return {"result": fn(job, None), **where}
    except NntrainError as e:
        return {"error": type(e).__name__, "message": str(e), **where}
