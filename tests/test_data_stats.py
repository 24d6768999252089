"""One class counter and one sample digest (nntrain.data.stats), against independent oracles."""

from __future__ import annotations

from collections import Counter

import numpy as np
import torch

from nntrain.data.stats import class_counts, sample_digests, split_class_counts
from nntrain.data.types import Dataset, SplitIndices


def test_class_counts_match_a_counter_for_arrays_and_tensors():
    y = np.random.default_rng(0).integers(0, 7, 500)
    oracle = Counter(y.tolist())
    assert class_counts(y, 9).tolist() == [oracle.get(k, 0) for k in range(9)]  # classes 7, 8 absent: zeros
    assert class_counts(torch.from_numpy(y)).tolist() == [oracle[k] for k in range(7)]


def test_split_class_counts_name_classes_and_sum_to_split_sizes(tiny_cfg):
    from nntrain.pipeline.setup import setup

    s = setup(tiny_cfg())
    counts = split_class_counts(s.data)
    for name in ("train", "val", "test"):
        y = getattr(s.data, name).y.tolist()
        assert counts[name] == {c: y.count(i) for i, c in enumerate(s.data.classes)}


def test_digests_are_equal_exactly_for_identical_samples_and_the_two_leakage_reports_agree():
    from nntrain.data.report import duplicates
    from nntrain.sanity.checks import split_hygiene

    x = torch.randint(0, 256, (12, 1, 4, 4), dtype=torch.uint8)
    x[9] = x[2]  # a train image copied into test
    x[5] = x[1]
    x[5, 0, 0, 0] ^= 1  # one pixel off: a different image
    ds = Dataset(x=x, y=torch.arange(12) % 2, classes=("a", "b"), name="t")
    d = sample_digests(ds)
    assert d[9] == d[2] and d[5] != d[1] and len(set(d)) == 11 and all(len(v) == 16 for v in d)
    splits = SplitIndices(train=np.arange(0, 6), val=np.arange(6, 8), test=np.arange(8, 12))
    assert duplicates(ds, splits)["train/test"]["count"] == 1
    result = split_hygiene(ds, splits)
    assert not result.passed and result.values["shared_images"] == {"train&val": 0, "train&test": 1, "val&test": 0}
