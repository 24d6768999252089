"""Shared test helpers: writers for small datasets in each format's real on-disk layout, CLI drivers, probes."""

from __future__ import annotations

import os
import pickle
import struct
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent


def cli(*args, **kwargs):
    """Run ``nntrain ARGS`` in-process through Typer's CliRunner (paths may be given as Path): the one CLI driver."""
    from typer.testing import CliRunner

    from nntrain.cli.app import app

    return CliRunner().invoke(app, [str(a) for a in args], **kwargs)


def one_error_line(res, *needles: str) -> str:
    """A CliRunner result that is exit 2 with exactly one ``error:`` line on stderr holding every needle."""
    assert res.exit_code == 2, res.output
    assert res.stderr.startswith("error: ") and res.stderr.count("\n") == 1, res.stderr
    assert "Traceback" not in res.output
    for needle in needles:
        assert needle in res.stderr, res.stderr
    return res.stderr


def terminal_console(file, *, columns: int = 120, lines: int = 50, **kwargs):
    """A rich Console that renders as a ``columns`` x ``lines`` colour-less terminal whatever the caller's
    environment says (TERM=dumb makes rich assume 80x25; COLUMNS/LINES would resize it): terminal tests see the
    same output in every shell and CI."""
    from rich.console import Console

    kwargs.setdefault("color_system", None)
    return Console(file=file, force_terminal=True, _environ={"COLUMNS": str(columns), "LINES": str(lines)}, **kwargs)


def run_cli(args: list[str], cwd: Path, timeout: int = 300):
    """Run ``python -m nntrain`` in a real subprocess (not a TTY), with this checkout importable."""
    import subprocess

    env = dict(os.environ, PYTHONPATH=str(REPO), COLUMNS="200")
    return subprocess.run(
        [sys.executable, "-m", "nntrain", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


TINY_TRAIN = [
    "--set",
    "model.channels=[4]",
    "--set",
    "model.hidden=[16]",
    "--set",
    "train.epochs=2",
    "--set",
    "threads=1",
]


def collector_states(monkeypatch, module, name: str) -> list[tuple[bool, int]]:
    """Wrap ``module.name`` to record (collector enabled?, frozen objects) at each call."""
    import gc

    seen: list[tuple[bool, int]] = []
    real = getattr(module, name)

    def wrapper(*args, **kwargs):
        seen.append((gc.isenabled(), gc.get_freeze_count()))
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, wrapper)
    return seen


def write_imagefolder(
    root: Path, per_class: dict[str, int], size=(10, 12), seed=0, ext=".png"
) -> dict[Path, np.ndarray]:
    """root/<class>/<i>.png with random RGB pixels; returns path → (H, W, 3) uint8 written."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    out = {}
    for name, n in per_class.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            a = rng.integers(0, 256, (size[0], size[1], 3), dtype=np.uint8)
            p = root / name / f"{i:03d}{ext}"
            Image.fromarray(a).save(p, quality=100) if ext == ".jpg" else Image.fromarray(a).save(p)
            out[p] = a
    return out


def write_idx(path: Path, array: np.ndarray) -> None:
    """IDX (ubyte) as in yann.lecun.com/exdb/mnist: magic 0x0000 08 <ndim>, big-endian dims, raw bytes."""
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def write_mnist(root: Path, folder: str, n_train: int, n_test: int, hw=(8, 8), seed=0):
    """root/<folder>/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte; returns (x_train, y_train, x_test, y_test)."""
    rng = np.random.default_rng(seed)
    raw = root / folder / "raw"
    raw.mkdir(parents=True)
    xs = [rng.integers(0, 256, (n, *hw), dtype=np.uint8) for n in (n_train, n_test)]
    ys = [np.arange(n, dtype=np.uint8) % 10 for n in (n_train, n_test)]
    for prefix, x, y in (("train", xs[0], ys[0]), ("t10k", xs[1], ys[1])):
        write_idx(raw / f"{prefix}-images-idx3-ubyte", x)
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", y)
    return xs[0], ys[0], xs[1], ys[1]


def write_cifar10(root: Path, per_batch: int, n_test: int, seed=0):
    """root/cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta} (python pickles, rows = R|G|B planes)."""
    rng = np.random.default_rng(seed)
    d = root / "cifar-10-batches-py"
    d.mkdir(parents=True)
    rows, labels = [], []
    for name, n in [(f"data_batch_{i}", per_batch) for i in range(1, 6)] + [("test_batch", n_test)]:
        data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        y = [int(v) for v in rng.integers(0, 10, n)]
        (d / name).write_bytes(pickle.dumps({"data": data, "labels": y}))
        rows.append(data)
        labels += y
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    (d / "batches.meta").write_bytes(pickle.dumps({"label_names": names}))
    return np.concatenate(rows), np.asarray(labels), names


def write_cifar100(root: Path, n_train: int, n_test: int, seed=0):
    rng = np.random.default_rng(seed)
    d = root / "cifar-100-python"
    d.mkdir(parents=True)
    rows, labels = [], []
    for name, n in (("train", n_train), ("test", n_test)):
        data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        y = [int(v) for v in rng.integers(0, 100, n)]
        (d / name).write_bytes(pickle.dumps({"data": data, "fine_labels": y, "coarse_labels": [0] * n}))
        rows.append(data)
        labels += y
    names = [f"class{i}" for i in range(100)]
    (d / "meta").write_bytes(pickle.dumps({"fine_label_names": names, "coarse_label_names": ["c"] * 20}))
    return np.concatenate(rows), np.asarray(labels), names


def imagefolder_run(root: Path, per_class: int, *extra: str) -> Path:
    """A finished 2-epoch run (a tiny CNN) on a 3-class folder of 8x8 RGB PNGs written under ``root``
    (``extra``: more ``--set`` arguments)."""
    write_imagefolder(root / "images", {"cat": per_class, "dog": per_class, "emu": per_class}, size=(8, 8))
    res = cli(
        "train", "--set", "device=cpu", "--set", "data.dataset=imagefolder", "--set", f"data.root={root / 'images'}",
        "--set", "model.channels=[4]", "--set", "model.hidden=[16]", "--set", "train.epochs=2",
        "--set", f"output.runs_dir={root / 'runs'}", "--set", "output.run_name=r", "--json", *extra,
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    (run_dir,) = (root / "runs").iterdir()
    return run_dir


def free_port() -> int:
    """A TCP port nothing listens on at 127.0.0.1 now (for servers the tests start)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
