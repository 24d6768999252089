"""Fuzz: random YAML documents and random --set overrides at the config loader.

Every outcome is a valid ``Config`` or a ``ConfigError`` with a message — never another exception.
"""

from __future__ import annotations

from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nntrain.config import load_config, to_yaml
from nntrain.errors import ConfigError

KEYS = [
    "seed",
    "device",
    "data",
    "model",
    "train",
    "output",
    "sanity",
    "diagnostics",
    "dataset",
    "root",
    "val_fraction",
    "test_fraction",
    "stratify",
    "name",
    "channels",
    "hidden",
    "batchnorm",
    "dropout",
    "init_std",
    "epochs",
    "batch_size",
    "optimizer",
    "lr",
    "momentum",
    "nesterov",
    "reg",
    "lr_schedule",
    "lr_decay",
    "patience",
    "amp",
    "runs_dir",
    "run_name",
    "augment",
    "tiny_epochs",
    "x",
    "dropot",
    "",
]
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**12), 10**12),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(["cnn", "mlp", "sgd", "adam", "cpu", "auto", "cuda:0", "digits", "3e-4", "nan"]),
)
keys = st.one_of(st.sampled_from(KEYS), st.text(max_size=8), st.integers(-3, 3))
documents = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(keys, inner, max_size=5)),
    max_leaves=25,
)
dotted = st.lists(st.sampled_from(KEYS), min_size=1, max_size=4).map(".".join)
override = st.one_of(
    st.builds(lambda k, v: f"{k}={v}", dotted, st.one_of(st.text(max_size=10), scalars.map(str))),
    st.text(max_size=20),
)


def check(path, overrides) -> None:
    try:
        cfg = load_config(path, overrides)
    except ConfigError as e:
        message = str(e)
        assert message.strip() and "Traceback" not in message  # a message, not an empty error or a dump
    else:
        # an accepted config is validated once and for all: written out and read back it is the same
        again = Path(path).with_name("again.yaml")
        again.write_text(to_yaml(cfg))
        assert load_config(again) == cfg


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(doc=documents, overrides=st.lists(override, max_size=3))
def test_random_yaml_documents_and_overrides(tmp_path, doc, overrides):
    p = tmp_path / "fuzz.yaml"
    p.write_text(yaml.safe_dump(doc, allow_unicode=True))
    check(p, overrides)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(alphabet=st.sampled_from(list("ab:- \n\t[]{},'\"&*!|>%@`#0123456789.e")), max_size=80))
def test_random_yaml_text(tmp_path, text):
    p = tmp_path / "fuzz.yaml"
    p.write_text(text)
    check(p, [])
