from __future__ import annotations

import os

# One intra-op thread for the test process and every subprocess it starts: faster on a
# shared 2-core machine, and in-process and subprocess runs compute identically.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402


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


@pytest.fixture(scope="module")
def one_torch_thread():
    """One torch intra-op thread for a module of tiny models, whatever OMP_NUM_THREADS says."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
