"""Never lose a run: resume, interruption, crash-safe files, untrusted checkpoints, bad input."""

from __future__ import annotations

import csv
import errno
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from helpers import REPO, cli

from nntrain.errors import CheckpointError
from nntrain.pipeline.train import resume_run, train_run
from nntrain.runs.files import load_checkpoint


def rows(run_dir: Path) -> list[dict[str, str]]:
    """metrics.csv without the wall-clock column (the only one that may differ)."""
    with open(run_dir / "metrics.csv", newline="") as f:
        return [{k: v for k, v in r.items() if k != "seconds"} for r in csv.DictReader(f)]


class StopAfter:
    """A should_stop that turns true after ``n`` polls (one poll per SGD step)."""

    def __init__(self, n: int):
        self.n = n

    def __call__(self) -> bool:
        self.n -= 1
        return self.n < 0


@pytest.mark.parametrize("stop_after", [3, 12, 25])  # mid-epoch 1, exactly an epoch end, mid-epoch 3
def test_resume_gives_the_same_metrics_as_an_uninterrupted_run(tiny_cfg, stop_after):
    # digits train split: 1257 samples / batch 100 → 13 steps per epoch; dropout uses the global RNG
    cfg = tiny_cfg("train.epochs=4", "train.batch_size=100", "model.dropout=0.3", "train.lr_schedule=step")
    full_hist, full_run = train_run(cfg)
    part_hist, part_run = train_run(cfg, should_stop=StopAfter(stop_after))
    full, part = full_run.path, part_run.path
    assert part_hist.interrupted and not (part / "summary.json").exists()
    last = load_checkpoint(part / "last.pt")
    assert last["epoch"] == len(rows(part)) < 4
    assert (last["partial"] is None) == (stop_after % 13 == 12)  # stopped at an epoch end or inside one
    hist, run, _ = resume_run(part)
    assert run.path == part
    assert rows(part) == rows(full) and len(rows(full)) == 4
    assert hist.test_acc == full_hist.test_acc and hist.best_epoch == full_hist.best_epoch
    assert hist.step_losses == full_hist.step_losses
    # the reported training time is the whole run's, not only the last segment's: at least every epoch's own time
    with open(part / "metrics.csv", newline="") as f:
        epoch_seconds = [float(r["seconds"]) for r in csv.DictReader(f)]
    summary = json.loads((part / "summary.json").read_text())
    assert summary["train_seconds"] == hist.seconds >= sum(epoch_seconds) > 0


def test_resume_interrupted_twice_mid_epoch_gives_the_uninterrupted_metrics(tiny_cfg):
    """Stopped in epoch 1, resumed and stopped again inside epoch 2, resumed to the end: the
    batch order (the generator restored from last.pt each time) and the losses match a run
    that was never stopped."""
    cfg = tiny_cfg("train.epochs=3", "train.batch_size=100", "model.dropout=0.3")  # 13 steps per epoch
    full_hist, full_run = train_run(cfg)
    part_hist, part_run = train_run(cfg, should_stop=StopAfter(5))
    assert part_hist.interrupted and load_checkpoint(part_run.path / "last.pt")["partial"]["step"] == 6
    hist, run, _ = resume_run(part_run.path, should_stop=StopAfter(12))  # 7 steps of epoch 1, 6 of epoch 2
    second = load_checkpoint(run.path / "last.pt")
    assert hist.interrupted and second["epoch"] == 1 and second["partial"]["step"] == 6
    hist, run, _ = resume_run(part_run.path)
    assert rows(run.path) == rows(full_run.path) and len(rows(full_run.path)) == 3
    assert hist.step_losses == full_hist.step_losses and hist.test_acc == full_hist.test_acc


def test_resume_of_a_finished_run_is_refused(tiny_cfg):
    _, run = train_run(tiny_cfg("train.epochs=1"))
    res = cli("train", "--resume", str(run.path))
    assert res.exit_code == 2 and "already finished" in res.stderr


def test_resume_rejects_config_and_set(tmp_path):
    res = cli("train", "--resume", str(tmp_path), "--set", "train.epochs=3")
    assert res.exit_code == 2 and "drop --config/--set" in res.stderr
    res = cli("train", "--resume", str(tmp_path))
    assert res.exit_code == 2 and "not a run directory" in res.stderr


def _spawn_train(tmp_path: Path, *sets: str) -> subprocess.Popen:
    args = [
        sys.executable,
        "-m",
        "nntrain",
        "train",
        "--set",
        "device=cpu",
        "--set",
        f"output.runs_dir={tmp_path / 'runs'}",
        "--set",
        "output.checkpoint_seconds=0",
    ]  # a checkpoint every epoch
    for s in sets:
        args += ["--set", s]
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.Popen(args, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_rows(tmp_path: Path, n: int, proc: subprocess.Popen, timeout: float = 120) -> Path:
    t0 = time.time()
    while time.time() - t0 < timeout:
        runs = list((tmp_path / "runs").glob("*/metrics.csv"))
        if runs and len(runs[0].read_text().splitlines()) > n:
            return runs[0].parent
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.02)
    raise AssertionError("training made no progress")


@pytest.mark.slow
def test_sigterm_checkpoints_prints_resume_and_exits_130(tmp_path):
    sets = ("train.epochs=60", "model.channels=[8]", "model.hidden=[16]", "train.batch_size=32")
    proc = _spawn_train(tmp_path, *sets)
    run = _wait_rows(tmp_path, 2, proc)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert (
        f"Resume with: nntrain train --resume {Path('runs') / run.name}" in err
        or "Resume with: nntrain train --resume" in err
    )
    assert "SIGTERM" in err and "Traceback" not in err
    last = load_checkpoint(run / "last.pt")
    assert last["epoch"] == len(rows(run)) and last["epoch"] < 60
    # resuming finishes the run with the metrics of an uninterrupted one
    res = cli("train", "--resume", str(run))
    assert res.exit_code == 0, res.output
    ref = cli(
        "train",
        *sum((["--set", s] for s in sets), []),
        "--set",
        "device=cpu",
        "--set",
        f"output.runs_dir={tmp_path / 'ref'}",
    )
    assert ref.exit_code == 0
    (ref_run,) = (tmp_path / "ref").iterdir()
    assert rows(run) == rows(ref_run) and len(rows(run)) == 60


@pytest.mark.slow
def test_kill_9_leaves_a_consistent_run_directory(tmp_path):
    """kill -9 at several moments: every checkpoint present loads, metrics.csv has whole rows only."""
    for i, delay in enumerate((0.0, 0.13, 0.37)):
        sub = tmp_path / f"k{i}"
        sub.mkdir()
        proc = _spawn_train(sub, "train.epochs=30", "train.batch_size=16", "model.channels=[8]", "model.hidden=[16]")
        run = _wait_rows(sub, 1, proc)
        time.sleep(delay)
        proc.kill()
        proc.wait()
        header, *body = (run / "metrics.csv").read_text().splitlines(keepends=True)
        assert all(line.endswith("\n") and line.count(",") == header.count(",") for line in body)
        for r in rows(run):
            float(r["train_loss"]), int(r["epoch"])
        for pt in run.glob("*.pt"):  # init.pt (epoch 0), best.pt, last.pt
            ckpt = load_checkpoint(pt)
            assert ckpt["epoch"] >= (1 if pt.name != "init.pt" else 0) and ckpt["model"]
        assert load_checkpoint(run / "last.pt")["epoch"] >= len(body)  # a row never lacks its checkpoint
    # and the last one resumes from where it stood
    hist, _, _ = resume_run(run)
    assert len(hist.records) == 30 and rows(run)[-1]["epoch"] == "30"


def test_untrusted_checkpoint_is_refused_and_its_code_never_runs(tmp_path, monkeypatch):
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (Path.touch, (marker,))

    _, run = train_run_tiny(tmp_path, monkeypatch)
    ckpt = torch.load(run / "last.pt", weights_only=True)
    ckpt["evil"] = Payload()
    ckpt["epoch"] = 0
    torch.save(ckpt, run / "last.pt")
    with pytest.raises(CheckpointError, match="refused: it holds objects other than tensors"):
        load_checkpoint(run / "last.pt")
    (run / "summary.json").unlink()
    res = cli("train", "--resume", str(run))
    assert res.exit_code == 2 and "refused" in res.stderr and "Traceback" not in res.output
    assert not marker.exists()


def train_run_tiny(tmp_path, monkeypatch, *extra):
    monkeypatch.chdir(tmp_path)
    res = cli(
        "train",
        "--set",
        "device=cpu",
        "--set",
        "model.channels=[8]",
        "--set",
        "model.hidden=[16]",
        "--set",
        "train.epochs=2",
        *extra,
    )
    assert res.exit_code == 0, res.output
    (run,) = (tmp_path / "runs").iterdir()
    return res, run


def test_truncated_checkpoint_is_a_clear_error(tmp_path, monkeypatch):
    _, run = train_run_tiny(tmp_path, monkeypatch)
    data = (run / "best.pt").read_bytes()
    (run / "best.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or not a PyTorch file"):
        load_checkpoint(run / "best.pt")


def test_checkpoint_from_another_model_names_layer_and_shapes(tmp_path, monkeypatch):
    _, run = train_run_tiny(tmp_path, monkeypatch)
    (run / "summary.json").unlink()
    cfg_text = (run / "config.yaml").read_text().replace("channels:\n  - 8\n", "channels:\n  - 12\n")
    (run / "config.yaml").write_text(cfg_text.replace("epochs: 2", "epochs: 5"))
    res = cli("train", "--resume", str(run))
    assert res.exit_code == 2
    assert "conv1.weight: checkpoint (8, 1, 3, 3) vs model (12, 1, 3, 3)" in res.stderr
    assert "Traceback" not in res.output


def test_unwritable_output_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "afile").write_text("x")
    res = cli("train", "--set", "output.runs_dir=afile/runs", "--set", "train.epochs=1")
    assert res.exit_code == 2 and "cannot create a run directory under 'afile/runs'" in res.stderr
    assert "Traceback" not in res.output


def test_disk_full_while_saving_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    import nntrain.runs.files as runs

    real_fsync, real_write = os.fsync, runs._write_checkpoints
    state = {"calls": 0, "full": False}

    def fsync(fd):
        if state["full"]:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_fsync(fd)

    def write_checkpoints(paths, obj):
        state["calls"] += 1  # 1: init.pt, 2-3: epoch 1 (last.pt, best.pt), 4: epoch 2 → the disk is full
        state["full"] = state["full"] or state["calls"] >= 4
        return real_write(paths, obj)

    monkeypatch.setattr(runs.os, "fsync", fsync)
    monkeypatch.setattr(runs, "_write_checkpoints", write_checkpoints)
    monkeypatch.chdir(tmp_path)
    res = cli(
        "train",
        "--set",
        "device=cpu",
        "--set",
        "model.channels=[8]",
        "--set",
        "train.epochs=3",
        "--set",
        "output.checkpoint_seconds=0",
    )
    assert res.exit_code == 2, res.output
    assert "No space left on device" in res.stderr and "Traceback" not in res.output
    (run,) = (tmp_path / "runs").iterdir()
    state["full"] = False
    assert load_checkpoint(run / "last.pt")["epoch"] == 1  # the previous checkpoint is intact
    assert load_checkpoint(run / "best.pt")["epoch"] == 1
    assert not list(run.glob(".*.tmp"))  # no half-written temp file left behind


@pytest.mark.parametrize("seconds, last_writes", [(0, 3), (3600, 2)])
def test_checkpoint_interval(tiny_cfg, monkeypatch, seconds, last_writes):
    """0: last.pt every epoch; a long interval: after the first epoch (a killed short run can resume) and the end."""
    import nntrain.runs.files as runs

    written, real = [], runs._write_checkpoints
    monkeypatch.setattr(
        runs, "_write_checkpoints", lambda paths, obj: (written.extend(p.name for p in paths), real(paths, obj))
    )
    h, run = train_run(tiny_cfg("train.epochs=3", f"output.checkpoint_seconds={seconds}", "train.optimizer.lr=0.1"))
    assert written.count("last.pt") == last_writes and written.count("init.pt") == 1
    assert 1 <= written.count("best.pt") <= last_writes
    assert load_checkpoint(run.path / "last.pt")["epoch"] == 3
    assert load_checkpoint(run.path / "best.pt")["epoch"] == h.best_epoch


@pytest.mark.parametrize("step", ["write", "flush", "fsync", "replace"])
def test_a_failure_at_any_step_of_a_checkpoint_write_keeps_the_previous_file(tmp_path, monkeypatch, step):
    """Atomic writes: whatever step fails, the previous file's bytes are intact, no temp file is
    left behind, and the target itself is never opened for writing (only renamed onto)."""
    import builtins
    import io

    import nntrain.runs.files as files

    target = tmp_path / "last.pt"
    target.write_bytes(b"the previous checkpoint")
    opened_for_writing = []

    def boom(*_a, **_k):
        raise OSError(errno.EIO, f"injected failure at {step}")

    class Failing(io.FileIO):  # a real file whose chosen step fails
        def write(self, b):
            return boom() if step == "write" else super().write(b)

        def flush(self):
            return boom() if step == "flush" else super().flush()

    real_os_open, real_open = os.open, builtins.open

    def watch_os_open(path, flags, *a, **k):
        if Path(path) == target and flags & (os.O_WRONLY | os.O_RDWR):
            opened_for_writing.append(path)
        return real_os_open(path, flags, *a, **k)

    def watch_open(file, mode="r", *a, **k):
        if isinstance(file, (str, os.PathLike)) and Path(file) == target and set(mode) & set("wax+"):
            opened_for_writing.append(file)
        return real_open(file, mode, *a, **k)

    monkeypatch.setattr(os, "open", watch_os_open)
    monkeypatch.setattr(builtins, "open", watch_open)
    monkeypatch.setattr(os, "fdopen", lambda fd, mode="r", *a, **k: Failing(fd, mode.replace("b", "")))
    if step == "fsync":
        monkeypatch.setattr(os, "fsync", boom)
    if step == "replace":
        monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(files.NntrainError, match="injected failure"):
        files.save_checkpoint(target, {"model": {"w": torch.ones(3)}, "epoch": 2})
    assert target.read_bytes() == b"the previous checkpoint"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]  # no temp file behind
    assert opened_for_writing == []
    monkeypatch.undo()
    files.save_checkpoint(target, {"model": {"w": torch.ones(3)}, "epoch": 2})  # and a healthy write works
    assert load_checkpoint(target)["epoch"] == 2


def test_every_not_a_run_directory_error_is_a_RunDirError(tmp_path):
    """One class for "this path is not a run directory", whichever command meets it (all exit 2)."""
    from nntrain.errors import RunDirError
    from nntrain.pipeline.reopen import eval_run, read_curves, resolve_checkpoint
    from nntrain.pipeline.train import resume_run

    assert RunDirError.exit_code == 2
    from nntrain.cv.ray_cluster import WORKER_ERRORS

    assert WORKER_ERRORS["RunDirError"] is RunDirError  # raised again under its class on a cv driver
    cases = [
        (lambda: resume_run(tmp_path), "not a run directory (no config.yaml)"),
        (lambda: eval_run(tmp_path), "is not a run directory (no config.yaml)"),
        (lambda: resolve_checkpoint(tmp_path), "holds no best.pt or last.pt"),
        (lambda: read_curves(tmp_path), "has no metrics.csv"),
    ]
    for call, message in cases:
        with pytest.raises(RunDirError, match=re.escape(message)):
            call()


def test_advice_given_before_an_interruption_is_in_the_resumed_runs_summary(tiny_cfg):
    """A too-low lr gets the "flat" advice at epoch 3 (diagnostics.early_epochs); the run is interrupted
    after it and resumed: the resumed run's summary.json keeps that advice, once, with its epoch."""
    import json

    from nntrain.training.advice import Diagnostics

    cfg = tiny_cfg("train.epochs=5", "train.batch_size=100", "train.optimizer.lr=1e-5")  # 13 steps per epoch
    full_diag = Diagnostics(cfg.diagnostics)
    full_hist, full_run = train_run(cfg, callbacks=[full_diag])
    flat = [a.as_dict() for a in full_diag.advice if a.rule == "flat"]
    assert flat and flat[0]["epoch"] == 3  # the oracle: what an uninterrupted run says
    part_hist, part_run = train_run(cfg, callbacks=[Diagnostics(cfg.diagnostics)], should_stop=StopAfter(44))
    assert part_hist.interrupted and load_checkpoint(part_run.path / "last.pt")["epoch"] == 3
    hist, run, _ = resume_run(part_run.path, callbacks=[Diagnostics(cfg.diagnostics)])
    summary = json.loads((run.path / "summary.json").read_text())
    full = json.loads((full_run.path / "summary.json").read_text())
    assert [a for a in summary["advice"] if a["rule"] == "flat"] == flat
    assert summary["advice"] == full["advice"]  # the same advice as the run never stopped, none twice


@pytest.mark.slow
def test_kill_9_after_the_first_epoch_at_the_default_interval_resumes_and_one_writer_at_a_time(tmp_path):
    """The default output.checkpoint_seconds (30) is longer than this run: last.pt must still exist
    after its first epoch. A second `train --resume` while one writes refuses, naming the pid."""
    import shutil

    sets = ("train.epochs=40", "train.batch_size=16", "model.channels=[8]", "model.hidden=[16]")
    proc = _spawn_train(tmp_path, *sets, "output.checkpoint_seconds=30")  # the last --set wins: the default
    run = _wait_rows(tmp_path, 1, proc)  # one epoch's row in metrics.csv
    proc.kill()  # SIGKILL: no handler runs
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert load_checkpoint(run / "last.pt")["epoch"] >= 1
    # a run killed before its first checkpoint says so (exit 2), not "pass a run directory"
    early = tmp_path / "early"
    shutil.copytree(run, early)
    (early / "last.pt").unlink()
    res = cli("train", "--resume", str(early))
    assert res.exit_code == 2 and "killed before its first checkpoint" in res.stderr and "start it again" in res.stderr
    assert "Traceback" not in res.output
    # resume in a subprocess; a second resume meanwhile refuses and leaves metrics.csv alone
    env = dict(os.environ, PYTHONPATH=str(REPO))
    first = subprocess.Popen([sys.executable, "-m", "nntrain", "train", "--resume", str(run)], cwd=tmp_path, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    t0 = time.time()
    while not (run / ".lock").read_text().strip() == str(first.pid) and time.time() - t0 < 60:
        assert first.poll() is None, first.communicate()
        time.sleep(0.05)
    second = cli("train", "--resume", str(run))
    out, err = first.communicate(timeout=300)
    assert first.returncode == 0, err
    assert second.exit_code == 2, second.output
    assert f"being written by process {first.pid}" in second.stderr
    epochs = [int(r["epoch"]) for r in rows(run)]
    assert epochs == list(range(1, 41))  # every epoch once
