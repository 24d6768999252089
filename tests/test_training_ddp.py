"""Data-parallel training under torchrun (CPU, gloo, 2 processes on 127.0.0.1).

Oracles: a single-process run on the same global batches, which a DDP run that was
stopped by SIGTERM (to one rank) and resumed must match (weights within float tolerance, metrics), and
DDP's gradient average computed by hand.
"""

from __future__ import annotations

import csv
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from helpers import REPO, cli

from nntrain.data.types import Split
from nntrain.errors import ConfigError
from nntrain.models import reg_weights, regularization
from nntrain.runs.files import load_checkpoint
from nntrain.training.distributed import Context, init_from_env

# no batchnorm: on CPU each rank would normalize by its own chunk (SyncBatchNorm needs CUDA).
# 1257 train samples / 32 → the last global batch has 9 samples: chunks of 5 and 4.
SETS = (
    "device=cpu",
    "model.channels=[8]",
    "model.hidden=[16]",
    "model.batchnorm=false",
    "train.epochs=10",
    "train.batch_size=32",
    "train.reg=0.001",
    "train.channels_last=off",  # the single-process reference as torchrun runs on the CPU (auto: contiguous there)
)
EPOCHS = 10


def torchrun(args: list[str], cwd: Path, **kw) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1", COLUMNS="200")
    env.pop("WORLD_SIZE", None)
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        "-m",
        "nntrain",
        "train",
        *args,
    ]
    return subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def workers(agent: int) -> dict[int, int]:
    """{rank: pid} of torchrun's worker processes (Linux /proc)."""
    found = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            env = (stat.parent / "environ").read_bytes().split(b"\0") if ppid == agent else []
        except (OSError, IndexError, ValueError):
            continue
        for entry in env:
            if entry.startswith(b"RANK="):
                found[int(entry[5:])] = int(stat.parent.name)
    return found


def finish(proc: subprocess.Popen, timeout: float) -> tuple[str, str]:
    """communicate(); on a hang (ranks deadlocked) kill the workers and torchrun, then fail."""
    try:
        return proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        for pid in workers(proc.pid).values():  # own sessions: not reached by killing torchrun
            os.kill(pid, signal.SIGKILL)
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError(f"torchrun run hung for {timeout} s (ranks out of step?)\n{err[-3000:]}") from None


def sets(*extra: str) -> list[str]:
    return sum((["--set", s] for s in (*SETS, *extra)), [])


def the_run(runs: Path) -> Path:
    (run,) = runs.iterdir()  # exactly one run directory: only rank 0 creates one
    return run


def metric_rows(run: Path) -> tuple[list[str], list[dict[str, str]]]:
    lines = (run / "metrics.csv").read_text().splitlines()
    with open(run / "metrics.csv", newline="") as f:
        return lines, list(csv.DictReader(f))


def assert_same_weights(a: Path, b: Path, atol: float) -> None:
    wa, wb = load_checkpoint(a)["model"], load_checkpoint(b)["model"]
    assert wa.keys() == wb.keys()
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], atol=atol, rtol=0, msg=f"{a.name}: {k}")


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory) -> dict:
    """A 2-process run of SETS, stopped by SIGTERM to rank 1 soon after it starts, then
    resumed under torchrun (two launches: each costs seconds of interpreter start-up)."""
    cwd = tmp_path_factory.mktemp("ddp")
    proc = torchrun(sets("output.runs_dir=runs"), cwd)
    t0 = time.time()
    while not list((cwd / "runs").glob("*/metrics.csv")):  # header written: training has started
        assert proc.poll() is None, proc.communicate()
        assert time.time() - t0 < 120, "training did not start"
        time.sleep(0.01)
    # the hard case: only rank 1 is asked to stop (torchrun's agent forwards a SIGTERM to every
    # rank, at slightly different steps); rank 0 must stop after the same step and write last.pt
    os.kill(workers(proc.pid)[1], signal.SIGTERM)
    _, stopped_err = finish(proc, timeout=90)
    run = the_run(cwd / "runs")
    stopped = {
        "rc": proc.returncode,
        "err": stopped_err,
        "last_epoch": load_checkpoint(run / "last.pt")["epoch"],
        "rows": len(metric_rows(run)[1]),
        "partial": load_checkpoint(run / "last.pt")["partial"] is not None,
    }
    proc = torchrun(["--resume", str(run)], cwd)
    out, err = finish(proc, timeout=240)
    return {"run": run, "stopped": stopped, "rc": proc.returncode, "out": out, "err": err}


@pytest.mark.ddp
@pytest.mark.slow
def test_sigterm_to_one_rank_stops_every_rank_with_a_consistent_last_pt(ddp_run):
    stopped = ddp_run["stopped"]
    assert stopped["rc"] != 0  # torchrun reports its workers' exit 130 as a failure
    assert stopped["err"].count(": interrupted") == 1, stopped["err"]  # rank 0's message only
    assert "stop requested on another rank: interrupted" in stopped["err"]
    assert "Resume with: nntrain train --resume" in stopped["err"]
    assert stopped["last_epoch"] == stopped["rows"] < EPOCHS  # a row always has its checkpoint, and no more


@pytest.mark.ddp
@pytest.mark.slow
def test_resumed_ddp_run_equals_a_single_process_run_on_the_same_global_batches(ddp_run, tmp_path):
    assert ddp_run["rc"] == 0, ddp_run["err"]
    run, out = ddp_run["run"], ddp_run["out"]
    ref = cli("train", *sets(f"output.runs_dir={tmp_path / 'ref'}"))
    assert ref.exit_code == 0, ref.output
    ref_run = the_run(tmp_path / "ref")
    for name in ("best.pt", "last.pt"):
        assert_same_weights(run / name, ref_run / name, atol=1e-5)
    assert load_checkpoint(run / "best.pt")["epoch"] == load_checkpoint(ref_run / "best.pt")["epoch"]
    # metrics.csv written once: one header, one row per epoch, reduced over ranks = single-process numbers
    lines, rows = metric_rows(run)
    assert lines[0].startswith("epoch,") and sum(line.startswith("epoch,") for line in lines) == 1
    assert [r["epoch"] for r in rows] == [str(e) for e in range(1, EPOCHS + 1)]
    _, ref_rows = metric_rows(ref_run)
    for r, q in zip(rows, ref_rows, strict=True):
        for col in ("train_loss", "train_acc", "val_loss", "val_acc"):
            assert math.isclose(float(r[col]), float(q[col]), rel_tol=1e-4, abs_tol=1e-6), (r["epoch"], col)
    # only rank 0 prints: each epoch line once, the summary once
    assert out.count(f"epoch {EPOCHS}/{EPOCHS}") == 1 and out.count("run directory") == 1, out
    assert "DistributedDataParallel: 2 processes, gloo" in out
    import json

    assert json.loads((run / "summary.json").read_text())["world_size"] == 2


# --------------------------------------------------------------------------- no process group needed


def test_each_global_batch_is_split_into_contiguous_chunks_covering_it_once():
    n, batch = 37, 8
    split = Split(torch.arange(n, dtype=torch.float32)[:, None, None, None], torch.arange(n))
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(0))
    world = 3
    per_rank = [
        list(Context(r, world, r, torch.device("cpu"), "gloo").batches(split, perm, batch, start=1))
        for r in range(world)
    ]
    for step in range(1, math.ceil(n / batch)):
        chunks = [per_rank[r][step - 1][1] for r in range(world)]
        assert torch.equal(torch.cat(chunks), perm[step * batch : (step + 1) * batch])
        sizes = [len(c) for c in chunks]
        assert max(sizes) - min(sizes) <= 1


def test_rank_losses_averaged_like_ddp_give_the_single_process_gradient():
    """DDP averages gradients over ranks; each rank's loss Σ CE(chunk)·world/|batch| + R(W)
    must make that average the gradient of mean CE(batch) + R(W), also for unequal chunks."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 5))
    x, y, reg, world = torch.randn(11, 1, 3, 4), torch.randint(0, 5, (11,)), 0.3, 3

    def grads(loss):
        model.zero_grad()
        loss.backward()
        return [p.grad.clone() for p in model.parameters()]

    ref = grads(F.cross_entropy(model(x), y) + regularization(reg_weights(model), reg))
    split = Split(x, y)
    avg = [torch.zeros_like(g) for g in ref]
    for r in range(world):
        ctx = Context(r, world, r, torch.device("cpu"), "gloo")
        ((xb, yb),) = list(ctx.batches(split, torch.arange(11), 11))  # chunks of 4, 4, 3
        g = grads(ctx.data_loss(model(xb), yb, 0) + regularization(reg_weights(model), reg))
        avg = [a + gi / world for a, gi in zip(avg, g)]
    for a, b in zip(avg, ref):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)


def test_a_global_batch_smaller_than_the_world_is_refused_naming_the_key():
    with pytest.raises(ConfigError, match=r"train\.batch_size: 1 is the global batch .* at least 2"):
        Context(0, 2, 0, torch.device("cpu"), "gloo").check(1)


def test_without_torchrun_training_is_single_process(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert init_from_env("cpu") is None
    monkeypatch.setenv("WORLD_SIZE", "1")  # torchrun --nproc_per_node=1: no process group either
    assert init_from_env("cpu") is None


def test_single_process_has_every_hook_of_a_rank_and_they_are_the_plain_computation():
    import inspect

    from nntrain.training.distributed import SingleProcess, hooks

    hooks_of = {n for n, f in inspect.getmembers(Context, inspect.isfunction) if not n.startswith("_")} - {"check"}
    one = SingleProcess()
    assert hooks_of <= {n for n in dir(one) if not n.startswith("_")}
    assert (one.world, one.rank, one.is_main) == (1, 0, True) and isinstance(hooks(), SingleProcess)
    logits, y = torch.randn(5, 3), torch.tensor([0, 2, 1, 1, 0])
    assert torch.equal(one.data_loss(logits, y, 0), torch.nn.functional.cross_entropy(logits, y))
    t = torch.arange(3.0)
    assert one.reduce(t) is t and one.own(t) is t and one.agree(None) is None


@pytest.mark.ddp
@pytest.mark.slow
def test_ddp_with_every_training_recipe_equals_a_single_process_run(tmp_path):
    """Class weights, label smoothing, EMA and warmup under torchrun: the same weights and metrics
    as one process on the same global batches (the weighted loss is normalized over the global batch)."""
    recipes = (
        "train.epochs=3",
        "train.class_weights=balanced",
        "train.label_smoothing=0.1",
        "train.ema=0.9",
        "train.warmup_epochs=1",
    )
    proc = torchrun(sets("output.runs_dir=runs", *recipes), tmp_path)
    out, err = finish(proc, timeout=600)
    assert proc.returncode == 0, err[-3000:]
    ref = cli("train", *sets(f"output.runs_dir={tmp_path / 'ref'}", *recipes))
    assert ref.exit_code == 0, ref.output
    run, ref_run = the_run(tmp_path / "runs"), the_run(tmp_path / "ref")
    for name in ("best.pt", "last.pt"):
        assert_same_weights(run / name, ref_run / name, atol=1e-5)
    (_, rows), (_, ref_rows) = metric_rows(run), metric_rows(ref_run)
    assert len(rows) == 3
    for r, q in zip(rows, ref_rows, strict=True):
        for col in ("train_loss", "train_acc", "val_loss", "val_acc", "lr"):
            assert math.isclose(float(r[col]), float(q[col]), rel_tol=1e-4, abs_tol=1e-6), (r["epoch"], col)
