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


def make_photo_folder(root: Path, per_class: int = 100, seed: int = 0) -> Path:
    """A folder of real photos in 3 classes: random 100-300 px JPEG crops of scikit-learn's
    china.jpg and flower.jpg and matplotlib's grace_hopper.jpg (class = which photo)."""
    import numpy as np
    from matplotlib import cbook
    from PIL import Image
    from sklearn.datasets import load_sample_images

    china, flower = (Image.fromarray(a) for a in load_sample_images().images)
    with cbook.get_sample_data("grace_hopper.jpg") as f:
        hopper = Image.open(f).convert("RGB")
    rng = np.random.default_rng(seed)
    for name, im in (("china", china), ("flower", flower), ("hopper", hopper)):
        (root / name).mkdir(parents=True, exist_ok=True)
        w, h = im.size
        for i in range(per_class):
            side = int(rng.integers(100, 301))
            x0, y0 = int(rng.integers(0, w - side + 1)), int(rng.integers(0, h - side + 1))
            im.crop((x0, y0, x0 + side, y0 + side)).save(root / name / f"{i:03d}.jpg", quality=90)
    return root


@pytest.fixture(scope="session")
def photo_folder(tmp_path_factory):
    """300 real photo crops (100-300 px) in 3 class folders."""
    return make_photo_folder(tmp_path_factory.mktemp("photos"))
