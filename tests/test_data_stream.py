"""Streaming: a dataset over data.memory_limit_mb trains through a DataLoader with workers,
seeing the same batches in the same order as the in-memory path."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from helpers import cli, write_imagefolder

from nntrain.config import load_config
from nntrain.data.formats.imagefolder import ImageFiles
from nntrain.data.streaming import StreamSplit
from nntrain.errors import DataError
from nntrain.pipeline.setup import setup
from nntrain.training.engine import fit

CPU = torch.device("cpu")
SMALL = ["device=cpu", "model.channels=[4]", "model.hidden=[8]", "train.epochs=2", "train.batch_size=32"]
STREAM = ["data.memory_limit_mb=0.001", "data.workers=1"]


@pytest.fixture
def npz(tmp_path):
    rng = np.random.default_rng(0)
    p = tmp_path / "d.npz"
    np.savez(p, x=rng.integers(0, 256, (150, 8, 8, 3), dtype=np.uint8), y=np.arange(150) % 3)
    return [*SMALL, "data.dataset=npz", f"data.root={p}"]


def batches(split, seed=0, bs=32):
    perm = torch.randperm(len(split), generator=torch.Generator().manual_seed(seed))
    return (
        list(split.train_batches(perm, bs))
        + list(split.train_batches(perm, bs, start=2))
        + list(split.eval_batches(bs))
    )


def test_streamed_batches_equal_in_memory_batches(npz):
    mem, stream = setup(load_config(None, npz)), setup(load_config(None, npz + STREAM))
    assert not mem.dataset.stream and stream.dataset.stream
    assert isinstance(stream.data.train, StreamSplit) and len(stream.data.train) == len(mem.data.train)
    assert any("streaming batches through a DataLoader with 1 worker" in n for n in stream.dataset.notes)
    assert torch.equal(stream.data.mean, mem.data.mean)  # train < 1024 images: the stats sample is all of train
    with pytest.raises(DataError, match="raise data.memory_limit_mb"):
        _ = stream.data.train.x  # code written for resident tensors gets a clear message, not an AttributeError
    for name in ("train", "val", "test"):
        a, b = batches(getattr(mem.data, name)), batches(getattr(stream.data, name))
        assert len(a) == len(b) > 0
        for (xa, ya), (xb, yb) in zip(a, b):
            assert torch.equal(ya, yb) and torch.allclose(xa, xb, atol=1e-6)


def test_fit_streaming_reproduces_in_memory_training(npz):
    runs = []
    for extra in ([], STREAM):
        s = setup(load_config(None, npz + extra))
        h = fit(s.new_model(), s.data, s.cfg.train, seed=0, device=CPU)
        runs.append(([{k: v for k, v in r.items() if k != "seconds"} for r in h.records], h.test_acc))
    (mem, mem_acc), (stream, stream_acc) = runs
    assert [r.keys() for r in mem] == [r.keys() for r in stream] and len(mem) > 0
    for a, b in zip(mem, stream):  # field by field: pytest.approx takes no nested structures (pytest >= 9)
        for k in a:
            assert b[k] == pytest.approx(a[k], rel=1e-5), (a["epoch"], k)
    assert stream_acc == pytest.approx(mem_acc, rel=1e-5)


def test_imagefolder_streams_files_decoded_by_workers(tmp_path):
    written = write_imagefolder(tmp_path / "d", {"a": 20, "b": 20}, size=(8, 8))
    base = [*SMALL, "data.dataset=imagefolder", f"data.root={tmp_path / 'd'}"]
    mem, stream = setup(load_config(None, base)), setup(load_config(None, base + STREAM))
    assert isinstance(stream.dataset.x, ImageFiles)  # nothing decoded up front
    for (xa, ya), (xb, yb) in zip(batches(mem.data.train), batches(stream.data.train)):
        assert torch.equal(ya, yb) and torch.allclose(xa, xb, atol=1e-6)
    victim = sorted(written)[int(stream.data.splits.train[0])]  # a train image (files are in sorted order)
    assert str(victim) == stream.dataset.x.paths[int(stream.data.splits.train[0])]
    victim.write_bytes(b"broken")
    with pytest.raises(DataError, match=f"image '{victim}' cannot be decoded"):
        batches(stream.data.train)


def test_data_command_says_it_streams(tmp_path):
    write_imagefolder(tmp_path / "d", {"a": 6, "b": 6}, size=(8, 8))
    res = cli(
        "data",
        "--set",
        "data.dataset=imagefolder",
        "--set",
        f"data.root={tmp_path / 'd'}",
        "--set",
        "data.memory_limit_mb=0.001",
        "--set",
        "data.workers=0",
        "--grid",
        str(tmp_path / "g.png"),
        "--json",
    )
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout)
    assert report["storage"] == "streaming" and "note: 12 images 3x8x8" in res.stderr
    assert "> data.memory_limit_mb=0.001: streaming" in res.stderr
