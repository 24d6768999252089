"""Config: typed, validated once, errors name the dotted key, the bad value and what is allowed."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from helpers import cli
from pydantic import ValidationError

from nntrain.config import Config, load_config, override, to_yaml
from nntrain.errors import ConfigError

CONFIGS = sorted((Path(__file__).resolve().parent.parent / "configs").glob("*.yaml"))


def test_default_yaml_is_the_builtin_default():
    assert load_config(CONFIGS[0].parent / "default.yaml") == Config() == load_config(None)


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_every_shipped_config_validates(path):
    cfg = load_config(path)
    # the resolved YAML reproduces the same config (what a run directory saves)
    assert Config.model_validate(yaml.safe_load(to_yaml(cfg))) == cfg


def write(tmp_path, text: str) -> Path:
    p = tmp_path / "c.yaml"
    p.write_text(text)
    return p


def test_unknown_key_suggests_the_close_one(tmp_path):
    with pytest.raises(ConfigError) as e:
        load_config(write(tmp_path, "model:\n  dropot: 0.5\n"))
    msg = str(e.value)
    assert "model.dropot: unknown key; did you mean 'dropout'?" in msg
    assert "allowed keys:" in msg and "init_std" in msg


def test_wrong_type_names_key_value_and_allowed(tmp_path):
    with pytest.raises(ConfigError) as e:
        load_config(write(tmp_path, "train:\n  epochs: many\n"))
    assert "train.epochs" in str(e.value) and "'many'" in str(e.value)


@pytest.mark.parametrize(
    "override_, needle",
    [
        ("train.optimizer.lr=-1", "train.optimizer.lr: Input should be greater than 0 (got -1)"),
        ("model.name=vgg", "'mobilenet_v3_small' or 'efficientnet_b0' (got 'vgg')"),
        ("data.dataset=imagenet", "data.dataset: unknown dataset 'imagenet'; allowed:"),
        ("device=gpu", "device: unknown device 'gpu'; allowed: auto, cpu, cuda, cuda:N"),
        ("train.lr_schedule=linear", "train.lr_schedule: Input should be 'none', 'step' or 'cosine'"),
        ("model.channels=[8,-2]", "every width must be a positive integer"),
        ("train.optimizer.momentum=0", "nesterov=true needs momentum > 0"),
        ("output.run_name=a/b", "must use only letters"),
    ],
)
def test_bad_values_are_rejected_with_the_dotted_key(override_, needle):
    with pytest.raises(ConfigError) as e:
        load_config(None, [override_])
    assert needle in str(e.value)


def test_split_fractions_that_leave_no_train_set():
    with pytest.raises(ConfigError, match="leaves no real train set"):
        load_config(None, ["data.test_fraction=0.5", "data.val_fraction=0.5"])


def test_scientific_notation_is_accepted(tmp_path):
    # YAML 1.1 reads "3e-4" as a string; it must still mean 0.0003
    cfg = load_config(write(tmp_path, "train:\n  reg: 3e-4\n  optimizer: {lr: 1e-2}\n"))
    assert cfg.train.reg == pytest.approx(3e-4) and cfg.train.optimizer.lr == pytest.approx(1e-2)


def test_yaml_syntax_error_gives_file_and_line(tmp_path):
    p = write(tmp_path, "train:\n  epochs: 3\n  reg: [1,\n")
    with pytest.raises(ConfigError) as e:
        load_config(p)
    assert f"{p}:4:" in str(e.value) and "YAML syntax error" in str(e.value)


def test_top_level_must_be_a_mapping(tmp_path):
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(write(tmp_path, "- 1\n- 2\n"))


def test_missing_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="no such file"):
        load_config(tmp_path / "nope.yaml")


def test_set_overrides_are_validated_like_the_file(tmp_path):
    cfg = load_config(write(tmp_path, "train:\n  epochs: 3\n"), ["train.epochs=7", "train.optimizer.lr=0.2"])
    assert cfg.train.epochs == 7 and cfg.train.optimizer.lr == 0.2
    with pytest.raises(ConfigError, match="train.epochz: unknown key; did you mean 'epochs'"):
        load_config(None, ["train.epochz=3"])
    with pytest.raises(ConfigError, match="expected section.key=value"):
        load_config(None, ["train.epochs"])
    with pytest.raises(ConfigError, match="'seed' is a value, not a section; it has no key 'x'"):
        load_config(write(tmp_path, "seed: 1\n"), ["seed.x=1"])


def test_config_is_frozen():
    cfg = Config()
    with pytest.raises(ValidationError, match="frozen"):
        cfg.seed = 3  # type: ignore[misc]


def test_override_returns_a_validated_copy():
    cfg = Config()
    new = override(cfg, {"train.reg": 0.0, "model.hidden": [50]})
    assert new.train.reg == 0.0 and new.model.hidden == (50,) and cfg.train.reg == 1e-4
    with pytest.raises(ConfigError):
        override(cfg, {"train.reg": -1})


def test_amp_off_survives_yaml_boolean_parsing(tmp_path):
    # YAML 1.1 reads a bare `off` as false: both spellings mean "off"
    assert load_config(None, ["train.amp=off"]).train.amp == "off"
    assert load_config(write(tmp_path, "train:\n  amp: off\n")).train.amp == "off"
    assert load_config(None, ["train.amp=bf16"]).train.amp == "bf16"
    with pytest.raises(ConfigError, match="train.amp"):
        load_config(None, ["train.amp=on"])


@pytest.mark.parametrize(
    "args, needle",
    [
        (["config", "show", "--set", "train.epochs=ten"], "train.epochs"),
        (["config", "show", "--set", "model.dropot=0.1"], "did you mean 'dropout'"),
        (["config", "show", "--set", "train.epochs"], "key=value"),
        (["config", "show", "--config", "missing.yaml"], "missing.yaml"),
        (["train", "--set", "data.val_fraction=0.6", "--set", "data.test_fraction=0.5"], "train"),
    ],
)
def test_bad_config_on_the_command_line_exits_2_with_an_error_message(tmp_path, monkeypatch, args, needle):
    monkeypatch.chdir(tmp_path)
    res = cli(*args)
    assert res.exit_code == 2, res.output
    lines = [line for line in res.output.splitlines() if line.strip()]
    assert lines[0].startswith("error:") and needle in res.output, res.output
    assert "Traceback" not in res.output and not (tmp_path / "runs").exists()


def test_config_validate_exits_2_naming_each_invalid_file(tmp_path):
    good, bad = tmp_path / "good.yaml", tmp_path / "bad.yaml"
    good.write_text("train:\n  epochs: 3\n")
    bad.write_text("train:\n  epochs: -1\n")
    res = cli(*["config", "validate", str(good), str(bad)])
    assert res.exit_code == 2
    assert f"ok       {good}" in res.output and f"invalid  {bad}" in res.output and "train.epochs" in res.output
    assert cli(*["config", "validate", str(good)]).exit_code == 0
