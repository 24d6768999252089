"""MNIST / Fashion-MNIST (IDX files) and CIFAR-10/100 (python pickles) written in torchvision's
on-disk layout and read through torchvision, as users run it. Only CIFAR's md5 checksum is
bypassed (our files are not the official ones); the file-existence check stays."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from helpers import cli, write_cifar10, write_cifar100, write_mnist

from nntrain.config import load_config
from nntrain.data.registry import load_dataset
from nntrain.data.splits import make_splits


@pytest.fixture
def no_md5(monkeypatch):
    import torchvision.datasets.cifar as cifar

    monkeypatch.setattr(cifar, "check_integrity", lambda fpath, md5=None: os.path.isfile(fpath))


@pytest.mark.parametrize("name,folder", [("mnist", "MNIST"), ("fashion_mnist", "FashionMNIST")])
def test_mnist_idx_files_official_test_set_is_the_test_split(tmp_path, name, folder):
    xtr, ytr, xte, yte = write_mnist(tmp_path, folder, n_train=40, n_test=20)
    cfg = load_config(None, [f"data.dataset={name}", f"data.root={tmp_path}", "data.val_fraction=0.25"])
    ds = load_dataset(cfg.data)
    assert tuple(ds.x.shape) == (60, 1, 8, 8) and ds.x.dtype == torch.uint8
    assert torch.equal(ds.x[:, 0], torch.from_numpy(np.concatenate([xtr, xte])))
    assert ds.y.tolist() == np.concatenate([ytr, yte]).tolist()
    assert len(ds.classes) == 10
    s = make_splits(ds, cfg)
    assert s.test.tolist() == list(range(40, 60))  # exactly the official test set
    assert len(s.val) == 10 and set(s.val) | set(s.train) == set(range(40))  # val carved from train
    assert any("official test set (20 images)" in n and "test_fraction is not used" in n for n in ds.notes)


def test_cifar10_pickles_pixels_layout_and_class_names(tmp_path, no_md5):
    rows, labels, names = write_cifar10(tmp_path, per_batch=6, n_test=10)
    ds = load_dataset(load_config(None, ["data.dataset=cifar10", f"data.root={tmp_path}"]).data)
    assert tuple(ds.x.shape) == (40, 3, 32, 32)
    assert torch.equal(ds.x, torch.from_numpy(rows.reshape(-1, 3, 32, 32)))  # rows are R|G|B planes, row-major
    assert ds.y.tolist() == labels.tolist() and list(ds.classes) == names
    assert ds.fixed_test.tolist() == list(range(30, 40))


def test_cifar100_fine_labels(tmp_path, no_md5):
    rows, labels, names = write_cifar100(tmp_path, n_train=25, n_test=5)
    ds = load_dataset(load_config(None, ["data.dataset=cifar100", f"data.root={tmp_path}", "data.channels=1"]).data)
    assert tuple(ds.x.shape) == (30, 1, 32, 32) and list(ds.classes) == names
    assert ds.y.tolist() == labels.tolist() and ds.fixed_test.tolist() == list(range(25, 30))
    rgb = rows.reshape(-1, 3, 32, 32).astype(float)
    luma = 0.299 * rgb[:, 0] + 0.587 * rgb[:, 1] + 0.114 * rgb[:, 2]
    assert np.abs(ds.x[:, 0].double().numpy() - luma).max() <= 0.5 + 1e-9


@pytest.mark.parametrize(
    "name,where,url",
    [
        ("mnist", "MNIST/raw", "ossci-datasets"),
        ("fashion_mnist", "FashionMNIST/raw", "fashion-mnist"),
        ("cifar10", "cifar-10-batches-py", "cifar-10-python.tar.gz"),
        ("cifar100", "cifar-100-python", "cifar-100-python.tar.gz"),
    ],
)
def test_missing_files_say_where_and_how_to_get_them(tmp_path, name, where, url):
    res = cli(
        "data",
        "--set",
        f"data.dataset={name}",
        "--set",
        f"data.root={tmp_path}",
        "--grid",
        str(tmp_path / "g.png"),
    )
    assert res.exit_code == 2 and isinstance(res.exception, SystemExit), res.output
    assert res.output.startswith("error: ") and res.output.count("\n") == 1
    assert f"'{tmp_path / where}'" in res.output and "data.download: true" in res.output and url in res.output
    assert not list(tmp_path.iterdir())  # nothing downloaded or created without data.download
