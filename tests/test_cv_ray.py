"""nntrain cv --executor ray: the same numbers and files as the local executor, --resume,
and clear exit-2 messages (Ray missing, bad flags, a job no node can hold, a worker that
cannot read the data).

The Ray tests start one real local Ray instance limited to 2 CPUs for the module and shut
it down afterwards; they are skipped only when the ``ray`` extra is not installed
(``.ci/run`` installs it).
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from helpers import cli

from tests.test_cv import TINY, StopAfter, comparable, cv_dirs, metrics_without_time

REPO = Path(__file__).resolve().parent.parent
HAVE_RAY = importlib.util.find_spec("ray") is not None
needs_ray = pytest.mark.ray  # skipped without the ray extra (tests/conftest.py)
# the fold jobs of every run below: 1 torch thread each, as local cv with --threads 1 (bit-identical floats)
CV = ("--folds", "3", "--threads", "1")


def write_tiny(tmp_path: Path, **data) -> Path:
    cfg = json.loads(json.dumps(TINY))
    cfg["model"] = {"name": "cnn", "channels": [8], "hidden": [16]}
    cfg["output"] = {"runs_dir": str(tmp_path / "runs")}
    if data:
        cfg["data"] = data
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    return write_tiny(tmp_path)


# --------------------------------------------------------------------------- without a cluster


def test_readme_test_command_is_what_ci_runs():
    ci = [ln for ln in (REPO / ".ci" / "run").read_text().splitlines() if "pytest" in ln]
    assert len(ci) == 1 and re.search(r"\.\[[^\]]*\bray\b[^\]]*\]", ci[0])  # CI installs the ray extra
    assert ci[0] in (REPO / "README.md").read_text().split("## Quickstart")[1].split("\n## ")[0]


def test_executor_ray_without_ray_says_how_to_install(tiny, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError, as when not installed
    r = cli("cv", "--config", str(tiny), "--executor", "ray")
    assert r.exit_code == 2, r.output
    assert 'needs Ray, which is not installed here: pip install "nntrain[ray]"' in r.output
    assert "Traceback" not in r.output and cv_dirs(tmp_path) == []


@pytest.mark.parametrize(
    "args, message",
    [
        (["--executor", "dask"], "--executor 'dask': use local"),
        (["--address", "auto"], "--address: only with --executor ray"),
        (["--cpus-per-job", "2", "--gpus-per-job", "1"], "--cpus-per-job, --gpus-per-job: only with --executor ray"),
        (["--executor", "ray", "--cpus-per-job", "0"], "--cpus-per-job 0: use a number > 0"),
        (["--executor", "ray", "--gpus-per-job", "-0.5"], "--gpus-per-job -0.5: use 0 or more"),
        (["--executor", "ray", "--gpus-per-job", "1.5"], "fractions only up to 1"),
        (["--executor", "ray", "--cpus-per-job", "nan"], "--cpus-per-job nan"),
        (["--executor", "ray", "--jobs", "2"], "--jobs 2: only with --executor local"),
    ],
)
def test_bad_executor_flags_exit_2_before_anything_runs(tiny, tmp_path, args, message):
    r = cli("cv", "--config", str(tiny), *args)
    assert r.exit_code == 2, r.output
    assert message in r.output
    assert "Traceback" not in r.output and cv_dirs(tmp_path) == []


def test_relative_data_root_is_made_absolute_for_workers(tmp_path, monkeypatch):
    from nntrain.cv.ray_cluster import absolute_data_root

    monkeypatch.chdir(tmp_path)
    job = {"config": {"data": {"dataset": "npz", "root": "sets/x.npz"}, "seed": 0}, "fold": 1}
    out = absolute_data_root(job)
    assert out["config"]["data"]["root"] == str(tmp_path / "sets" / "x.npz")
    assert out["fold"] == 1 and out["config"]["seed"] == 0
    assert job["config"]["data"]["root"] == "sets/x.npz"  # the driver's job is not modified
    mnist = absolute_data_root({"config": {"data": {"dataset": "mnist", "root": None}}})
    assert mnist["config"]["data"]["root"] == str(tmp_path / "data")  # null = ./data of the driver
    digits = absolute_data_root({"config": {"data": {"dataset": "digits", "root": None}}})
    assert digits["config"]["data"]["root"] is None  # embedded: nothing to read


@needs_ray
def test_address_where_nothing_listens_fails_in_seconds_with_exit_2(tiny, tmp_path):
    import socket

    with socket.socket() as s:  # a port that was free a moment ago: nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    r = cli("cv", "--config", str(tiny), "--executor", "ray", "--address", f"127.0.0.1:{port}")
    assert r.exit_code == 2, r.output
    assert f"--address 127.0.0.1:{port}: no Ray head node answers there" in " ".join(r.output.split())
    assert "Traceback" not in r.output and cv_dirs(tmp_path) == []


# --------------------------------------------------------------------------- on a local Ray instance


@pytest.fixture(scope="module")
def ray_cluster():
    if not HAVE_RAY:
        pytest.skip('the ray extra is not installed: pip install ".[dev,ray]"')
    import ray

    from nntrain.cv.ray_cluster import loopback_only, runtime_env

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no usage report over the network
    # address="local": a new instance even if a cluster runs on this machine
    ray.init(
        address="local",
        **loopback_only(ray),  # tests talk to this machine's loopback only
        num_cpus=2,
        include_dashboard=False,
        runtime_env=runtime_env(),
        logging_level=logging.WARNING,
        log_to_driver=False,
    )
    try:
        yield ray
    finally:
        ray.shutdown()


def record_executors(mp: pytest.MonkeyPatch) -> list:
    """Every RayExecutor the cv command makes from now on, to see where its jobs ran."""
    import nntrain.cv.ray_cluster as rx

    made = []

    class Recording(rx.RayExecutor):
        def __init__(self, *a, **k):
            super().__init__(*a, **k)
            made.append(self)

    mp.setattr(rx, "RayExecutor", Recording)
    return made


@pytest.fixture(scope="module")
def two_runs(ray_cluster, tmp_path_factory):
    """The same 3-fold cv, once with the local executor and once on Ray: (local dir, ray dir, executor, output)."""
    tmp = tmp_path_factory.mktemp("cv")
    cfg = write_tiny(tmp)
    r = cli("cv", "--config", str(cfg), *CV)
    assert r.exit_code == 0, r.output
    (local,) = cv_dirs(tmp)
    with pytest.MonkeyPatch.context() as mp:
        made = record_executors(mp)
        r = cli("cv", "--config", str(cfg), *CV, "--executor", "ray")
    assert r.exit_code == 0, r.output
    (ray_dir,) = set(cv_dirs(tmp)) - {local}
    return local, ray_dir, made[0], r.output


@needs_ray
def test_ray_cv_gives_the_local_executors_numbers_and_files(two_runs, ray_cluster):
    local, ray_dir, executor, output = two_runs
    # every job ran as a Ray task in a worker process, on the local instance's node
    assert sorted(executor.ran_on) == [(0, 0), (0, 1), (0, 2)]
    node = ray_cluster.util.get_node_ip_address()
    assert {n for n, _ in executor.ran_on.values()} == {node}
    assert os.getpid() not in {pid for _, pid in executor.ran_on.values()}
    assert "cv fold 3/3: best val" in output and "mean ± std" in output  # progress per finished job, same table
    a, b = (json.loads((d / "summary.json").read_text()) for d in (local, ray_dir))
    assert comparable(a) == comparable(b)  # every per-fold number identical, not just close
    for key in ("mean_val_acc", "std_val_acc", "mean_val_loss", "oof_acc"):
        assert a["combos"][0][key] == b["combos"][0][key]
    assert (local / "plan.json").read_text() == (ray_dir / "plan.json").read_text()
    assert (local / "combo-000" / "oof.csv").read_text() == (ray_dir / "combo-000" / "oof.csv").read_text()
    for f in range(3):
        path = Path("combo-000") / f"fold-{f + 1}" / "metrics.csv"
        assert metrics_without_time(local / path) == metrics_without_time(ray_dir / path)
        assert len(metrics_without_time(ray_dir / path)) == 2  # both epochs recorded


@needs_ray
def test_resume_on_ray_runs_only_the_missing_fold(two_runs, tmp_path, monkeypatch):
    from nntrain.config import load_config
    from nntrain.cv.folds import pool_folds
    from nntrain.cv.plan import Plan
    from nntrain.cv.search import run_search
    from nntrain.cv.store import CvDir
    from nntrain.cv.study import default_storage, open_study

    _, ray_dir, _, _ = two_runs
    before = json.loads((ray_dir / "summary.json").read_text())
    cfg = load_config(write_tiny(tmp_path))
    plan = Plan(cfg, 3)
    _, _, folds = pool_folds(cfg, 3)
    d = CvDir.create(plan, [va for _, va in folds])
    with pytest.raises(KeyboardInterrupt):  # interrupted while fold 3 was running
        run_search(plan, d, folds, open_study(plan, default_storage(d.path), seed=cfg.seed), executor=StopAfter(2))
    recorded = record_executors(monkeypatch)
    r = cli("cv", "--resume", str(d.path), "--executor", "ray", "--threads", "1")
    assert r.exit_code == 0, r.output
    assert "resumed: 2 finished folds were skipped" in r.output
    assert sorted(recorded[0].ran_on) == [(1, 2)]  # one Ray task: the missing fold, in the re-run trial 1
    after = json.loads((d.path / "summary.json").read_text())
    assert comparable(after) == comparable(before)


@needs_ray
def test_ray_workers_make_the_local_pruning_decisions(ray_cluster, tmp_path):
    """Fold 0 with a pruner decides in the Ray task, on the snapshot of the study it was sent (the
    worker never opens the storage): the same decisions and values as in this process."""
    from nntrain.cv.ray_cluster import RayExecutor
    from tests.test_cv_pruning import CANNOT_LEARN, HEALTHY, by_state, decisions, search

    lrs = [*HEALTHY, CANNOT_LEARN]
    _, here, *_ = search(tmp_path / "local", lrs)
    executor = RayExecutor(threads=1)
    _, there, *_ = search(tmp_path / "ray", lrs, executor=executor)
    assert decisions(here) == decisions(there) and by_state(there, "PRUNED")
    assert os.getpid() not in {pid for _, pid in executor.ran_on.values()}


@needs_ray
def test_job_larger_than_any_node_exits_2_before_the_cv_directory(ray_cluster, tiny, tmp_path):
    r = cli("cv", "--config", str(tiny), "--executor", "ray", "--cpus-per-job", "4")
    assert r.exit_code == 2, r.output
    assert (
        "--cpus-per-job 4 --gpus-per-job 0: no node of the Ray cluster has that much (largest: 2 CPUs, 0 GPUs)"
        in r.output
    )
    assert "Traceback" not in r.output and cv_dirs(tmp_path) == []
    assert ray_cluster.is_initialized()  # a connection the caller made is left alone


@needs_ray
def test_gpus_for_a_cpu_config_exit_2(tiny, tmp_path):
    r = cli("cv", "--config", str(tiny), "--executor", "ray", "--gpus-per-job", "0.5")
    assert r.exit_code == 2, r.output
    assert "--gpus-per-job 0.5 reserves GPUs but device is 'cpu'" in r.output
    assert cv_dirs(tmp_path) == []


@needs_ray
def test_worker_that_cannot_read_the_data_names_node_and_path(ray_cluster, tmp_path, monkeypatch):
    import nntrain.cv.folds

    rng = np.random.default_rng(0)
    npz = tmp_path / "shared" / "set.npz"
    npz.parent.mkdir()
    np.savez(npz, x=rng.integers(0, 256, (60, 8, 8), dtype=np.uint8), y=np.arange(60) % 3)
    cfg = write_tiny(tmp_path, dataset="npz", root=str(npz))
    check = nntrain.cv.folds.check

    def driver_reads_then_data_vanishes(plan, **kw):  # the driver could read it; the workers cannot
        folds = check(plan, **kw)
        npz.unlink()
        return folds

    monkeypatch.setattr(nntrain.cv.folds, "check", driver_reads_then_data_vanishes)
    r = cli("cv", "--config", str(cfg), *CV, "--executor", "ray")
    assert r.exit_code == 2, r.output
    out = " ".join(r.output.split())  # the error console wraps long lines
    assert f"Ray worker on node {ray_cluster.util.get_node_ip_address()}" in out
    assert f"'{npz}' does not exist" in out
    assert "every Ray node must read the data at the same absolute path" in out
    assert "Traceback" not in r.output


@needs_ray
def test_a_worker_that_dies_gives_one_message_and_stops_the_cv(ray_cluster):
    from nntrain.cv.ray_cluster import RayExecutor
    from nntrain.errors import NntrainError

    def die(job, report):  # a local function: Ray ships it by value; its worker process exits at once
        os._exit(3)

    jobs = [{"combo": 0, "fold": 1, "config": {"data": {"dataset": "digits", "root": None}}}]
    with pytest.raises(NntrainError) as e:
        list(RayExecutor().map(die, jobs))
    msg = str(e.value)
    assert "the Ray task for combination 1 fold 2 failed" in msg and "WorkerCrashedError" in msg
    assert "continue with nntrain cv --resume <cv dir> --executor ray" in msg


@needs_ray
def test_local_ray_listens_on_loopback_only(ray_cluster, monkeypatch):
    import ipaddress

    # the tests' instance: every node's address is a loopback one
    nodes = [n for n in ray_cluster.nodes() if n.get("Alive")]
    assert nodes and all(ipaddress.ip_address(n["NodeManagerAddress"]).is_loopback for n in nodes), nodes
    assert ipaddress.ip_address(ray_cluster._private.worker.global_worker.node.node_ip_address).is_loopback
    # and the one `cv --executor ray` starts without an address asks Ray for the loopback address
    from nntrain.cv import ray_cluster as rc
    from nntrain.errors import ConfigError

    seen = {}

    class FakeRay:
        def is_initialized(self):
            return False

        def init(self, **kwargs):
            seen.update(kwargs)
            raise RuntimeError("stop here")

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    executor = rc.RayExecutor(None, 1.0, 0.0, None)
    monkeypatch.setattr(executor, "ray", FakeRay(), raising=False)
    with pytest.raises(ConfigError):
        executor.connect()
    assert seen["address"] == "local" and ipaddress.ip_address(seen["_node_ip_address"]).is_loopback
