"""scikit-learn calls answered by a helper process: the same results and errors as in this
process, and this process's own call when the helper is gone."""

from __future__ import annotations

import json
import os
import signal

import numpy as np
import pytest
from helpers import TINY_TRAIN, train_main_probe

from nntrain.data import sklearn_calls
from nntrain.pipeline.sklearn_helper import SklearnHelper


@pytest.fixture
def helper():
    with SklearnHelper() as h:
        h.start()
        assert h.pid is not None
        yield h
    assert sklearn_calls._remote is None  # closed: calls run here again


def local(name, *args, **kwargs):
    return sklearn_calls.FUNCTIONS[name](*args, **kwargs)


def test_the_helper_answers_as_this_process_would(helper, monkeypatch):
    calls = []
    real = helper.call
    monkeypatch.setattr(sklearn_calls, "_remote", lambda *a: calls.append(a[0]) or real(*a))
    images, target, names = sklearn_calls.call("load_digits")
    ref = local("load_digits")
    assert np.array_equal(images, ref[0]) and np.array_equal(target, ref[1]) and names == ref[2]
    idx = np.arange(len(target))
    a, b = sklearn_calls.call("train_test_split", idx, test_size=0.15, random_state=3, stratify=target)
    ra, rb = local("train_test_split", idx, test_size=0.15, random_state=3, stratify=target)
    assert np.array_equal(a, ra) and np.array_equal(b, rb)
    pred = np.roll(target, 1)
    assert np.array_equal(
        sklearn_calls.call("confusion_matrix", target, pred, labels=list(range(10))),
        local("confusion_matrix", target, pred, labels=list(range(10))),
    )
    got = sklearn_calls.call("precision_recall_fscore_support", target, pred, labels=np.arange(10), zero_division=0)
    want = local("precision_recall_fscore_support", target, pred, labels=np.arange(10), zero_division=0)
    assert all(np.array_equal(g, w) for g, w in zip(got, want))
    assert calls == ["load_digits", "train_test_split", "confusion_matrix", "precision_recall_fscore_support"]


def test_an_error_of_the_function_is_raised_here_with_its_message(helper):
    y = np.array([0, 0, 0, 1])  # one sample of class 1 cannot be stratified
    with pytest.raises(ValueError) as here:
        local("train_test_split", np.arange(4), test_size=0.5, random_state=0, stratify=y)
    with pytest.raises(ValueError) as there:
        helper.call("train_test_split", (np.arange(4),), {"test_size": 0.5, "random_state": 0, "stratify": y})
    assert str(there.value) == str(here.value)
    assert helper.pid is not None  # still serving
    assert helper.call("confusion_matrix", ([0, 1], [0, 1]), {}).tolist() == [[1, 0], [0, 1]]


def test_a_dead_helper_is_replaced_by_this_process(helper):
    os.killpg(helper.pid, signal.SIGKILL)
    idx = np.arange(20)
    y = np.arange(20) % 2
    a, b = sklearn_calls.call("train_test_split", idx, test_size=0.25, random_state=1, stratify=y)
    ra, rb = local("train_test_split", idx, test_size=0.25, random_state=1, stratify=y)
    assert np.array_equal(a, ra) and np.array_equal(b, rb)
    assert helper.pid is None and sklearn_calls._remote is None  # closed, uninstalled


def test_without_a_helper_calls_run_here():
    assert sklearn_calls._remote is None
    here = sklearn_calls.call("confusion_matrix", [1, 1], [1, 0])
    assert here.tolist() == local("confusion_matrix", [1, 1], [1, 0]).tolist() == [[0, 0], [1, 1]]
    with SklearnHelper() as h:  # never started
        with pytest.raises(sklearn_calls.Unavailable):
            h.call("confusion_matrix", ([1], [1]), {})


def test_a_train_run_never_imports_scikit_learn_or_matplotlib_and_its_splits_are_the_same(tmp_path):
    """The helpers do it; the run's splits and results equal a run whose calls ran in-process."""
    summary, probe = train_main_probe(tmp_path, "'sklearn' in sys.modules, 'matplotlib' in sys.modules")
    assert probe == "False False"

    from nntrain.config import load_config
    from nntrain.pipeline.train import train_run

    cfg = load_config(None, TINY_TRAIN[1::2] + [f"output.runs_dir={tmp_path / 'here'}"])
    _, run = train_run(cfg)  # in this process: no helper
    here = json.loads((run.path / "summary.json").read_text())
    for key in ("split_sizes", "test_acc", "best_val_acc", "test_recall"):
        assert summary[key] == here[key], key
