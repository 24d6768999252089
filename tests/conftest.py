from __future__ import annotations

import os
import sys
from pathlib import Path

# One intra-op thread for the test process and every subprocess it starts: faster on a
# shared 2-core machine, and in-process and subprocess runs compute identically.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def tiny_cfg(tmp_path):
    """A small, fast config on digits writing runs under tmp_path."""
    from nntrain.config import load_config

    def make(*overrides: str):
        base = [
            "device=cpu",
            "model.channels=[8]",
            "model.hidden=[16]",
            "train.epochs=2",
            f"output.runs_dir={tmp_path / 'runs'}",
        ]
        return load_config(None, base + list(overrides))

    return make


def run_cli(args: list[str], cwd: Path, timeout: int = 300):
    """Run ``python -m nntrain`` in a real subprocess (not a TTY), with this checkout importable."""
    import subprocess

    env = dict(os.environ, PYTHONPATH=str(REPO), COLUMNS="200")
    return subprocess.run(
        [sys.executable, "-m", "nntrain", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture(scope="module")
def one_torch_thread():
    """One torch intra-op thread for a module of tiny models, whatever OMP_NUM_THREADS says."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


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
