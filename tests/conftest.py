from __future__ import annotations

import os

# One intra-op thread for the test process and every subprocess it starts: faster on a
# shared 2-core machine, and in-process and subprocess runs compute identically.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import importlib.util  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402


def pytest_collection_modifyitems(config, items):
    """Skip `cuda` tests without a CUDA GPU and `ray` tests without the ray extra (markers: pyproject.toml)."""
    skips = {}
    if any(item.get_closest_marker("ray") for item in items) and importlib.util.find_spec("ray") is None:
        skips["ray"] = pytest.mark.skip(reason='the ray extra is not installed: pip install ".[dev,ray]"')
    if any(item.get_closest_marker("cuda") for item in items):
        import torch

        if not torch.cuda.is_available():
            skips["cuda"] = pytest.mark.skip(reason="needs a CUDA GPU (run scripts/gpu_check.sh there)")
    for item in items:
        for name, skip in skips.items():
            if item.get_closest_marker(name):
                item.add_marker(skip)


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
