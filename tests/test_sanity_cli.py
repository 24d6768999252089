"""`nntrain sanity` end to end through Typer's CliRunner: exit code AND output."""

from __future__ import annotations

import json
import re

import pytest
from helpers import cli, collector_states, terminal_console

from nntrain.config import Config, SanityConfig, read_yaml
from nntrain.sanity import runner as sanity

NAMES = [c.name for c in sanity.CHECKS]
FAST = ["--set", "device=cpu", "--set", "sanity.lr_probe_steps=20"]  # one epoch of the probe: enough to fail fast
LECTURE_LINE = re.compile(r"^Finished epoch (\d+) / 200: cost \d+\.\d{6}, train: [01]\.\d{6}, lr \d\.\d{6}e[-+]\d\d$")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_default_config_passes_every_check_and_prints_one_row_each(monkeypatch):
    import gc

    import nntrain.sanity.runner

    seen = collector_states(monkeypatch, nntrain.sanity.runner, "run_sanity")  # the checks: collector on, heap frozen
    res = cli("sanity", "--set", "device=cpu", "--verbose")
    assert res.exit_code == 0, res.output
    assert seen[0][0] and seen[0][1] > 10_000
    assert gc.isenabled() and gc.get_freeze_count() == 0  # and nothing stays frozen afterwards
    rows = [line for line in res.output.splitlines() if line.startswith(("PASS", "FAIL"))]
    assert [line.split()[1] for line in rows] == NAMES
    assert all(line.startswith("PASS") for line in rows)
    assert res.output.rstrip().endswith("8/8 checks passed")
    for i, _name in enumerate(NAMES, start=1):  # progress: which check is running
        assert f"[{i}/8] {sanity.CHECKS[i - 1].title} ..." in res.output
    # --verbose: the overfit epochs in the lecture's format, 1..N, ending at 100% train accuracy
    epochs = [LECTURE_LINE.match(line) for line in res.output.splitlines() if line.startswith("Finished epoch")]
    assert epochs and all(epochs)
    assert [int(m.group(1)) for m in epochs] == list(range(1, len(epochs) + 1))
    assert "train: 1.000000" in epochs[-1].group(0)
    assert f"100% after {len(epochs)} epochs" in res.output
    assert "\x1b[" not in res.output  # not a TTY: plain text


def test_json_output_on_the_default_config():
    res = cli("sanity", "--set", "device=cpu", "--json")
    assert res.exit_code == 0, res.output
    doc = json.loads(res.output)  # nothing but the JSON document on stdout
    assert doc["passed"] is True
    assert [c["name"] for c in doc["checks"]] == NAMES
    by = {c["name"]: c for c in doc["checks"]}
    assert set(by["loss_at_init"]) == {"name", "passed", "measured", "expected", "hint", "values", "seconds"}
    assert all(c["seconds"] > 0 for c in doc["checks"])
    assert abs(by["loss_at_init"]["values"]["loss"] - 2.302585) < 0.2303
    assert by["gradient_check"]["values"]["worst_rel_error"] < 1e-4
    assert by["gradient_check"]["values"]["worst_tensor"] in by["gradient_check"]["measured"]
    reg = by["regularization"]["values"]
    assert reg["loss_high_reg"] > reg["loss_reg0"]
    assert abs(reg["difference"] - reg["penalty"]) <= 1e-3 * reg["penalty"]


def test_a_failing_check_exits_1_with_its_hint_and_the_others_still_pass():
    res = cli("sanity", *FAST, "--set", "sanity.tiny_lr=1e-9", "--set", "sanity.tiny_epochs=5")
    assert res.exit_code == 1, res.output
    lines = res.output.splitlines()
    fail = [line for line in lines if line.startswith("FAIL")]
    assert len(fail) == 1 and fail[0].split()[1] == "overfit_tiny" and "after 5 epochs" in fail[0]
    hint = lines[lines.index(fail[0]) + 1]
    assert "hint: the net cannot memorize 20 samples in 5 epochs at lr 1e-09" in hint
    assert res.output.rstrip().endswith("7/8 checks passed")


def test_json_reports_failures_and_exits_1():
    res = cli("sanity", *FAST, "--set", "train.optimizer.lr=1e6", "--json")
    assert res.exit_code == 1, res.output
    doc = json.loads(res.output)
    by = {c["name"]: c for c in doc["checks"]}
    assert doc["passed"] is False and by["lr_probe"]["passed"] is False
    assert by["lr_probe"]["hint"].startswith("lr too high") and "train.optimizer.lr" in by["lr_probe"]["hint"]
    assert by["split_hygiene"]["passed"] is True  # unaffected checks still run and pass


def test_an_exception_inside_a_check_is_its_fail_and_the_rest_still_run(monkeypatch):
    def boom(s, report):
        raise RuntimeError("simulated crash in the gradient check")

    checks = tuple(sanity.Check(c.name, c.title, boom) if c.name == "gradient_check" else c for c in sanity.CHECKS)
    monkeypatch.setattr(sanity, "CHECKS", checks)
    res = cli("sanity", *FAST)
    assert res.exit_code == 1, res.output
    rows = {line.split()[1]: line.split()[0] for line in res.output.splitlines() if line.startswith(("PASS", "FAIL"))}
    assert rows == {name: ("FAIL" if name == "gradient_check" else "PASS") for name in NAMES}
    assert "hint: the check raised RuntimeError: simulated crash in the gradient check" in res.output
    assert "Traceback" not in res.output


@pytest.mark.parametrize(
    "override, message",
    [
        ("sanity.tiny_epochs=0", "sanity.tiny_epochs: Input should be greater than or equal to 1"),
        ("sanity.tiny_epoch=10", "sanity.tiny_epoch: unknown key; did you mean 'tiny_epochs'?"),
        ("sanity.tiny_samples=100000", "sanity.tiny_samples: 100000 samples requested but the train split has 1257"),
        ("sanity.lr_probe_window=500", "lr_probe_window=500 is longer than lr_probe_steps=100"),
    ],
)
def test_bad_sanity_settings_exit_2_naming_the_key(override, message):
    res = cli("sanity", "--set", "device=cpu", "--set", override)
    assert res.exit_code == 2, res.output
    assert message in res.output and "Traceback" not in res.output
    assert "PASS" not in res.output  # rejected before any check ran


def test_default_yaml_sanity_section_matches_the_code_defaults():
    raw = read_yaml("configs/default.yaml")
    assert SanityConfig.model_validate(raw["sanity"]) == SanityConfig()
    assert list(raw["sanity"]) == list(SanityConfig.model_fields)
    assert Config().sanity.init_loss_tol == 0.1 and Config().sanity.high_reg == 1e3
    assert (Config().sanity.tiny_samples, Config().sanity.tiny_epochs) == (20, 200)


def test_terminal_rendering_shows_progress_table_and_hints(monkeypatch):
    """On a TTY: a live status per check, a rich table, the hint of each failure below it."""
    import io

    import nntrain.cli.render as con
    from nntrain.sanity.checks import CheckResult

    buf = io.StringIO()
    monkeypatch.setattr(con, "console", terminal_console(buf, columns=120, highlight=False, color_system="auto"))
    rep = con.SanityReporter(verbose=True, auto_refresh=False)  # no refresh thread: the output is deterministic
    assert rep.live
    rep.on_check_start({"index": 1, "total": 2, "name": "overfit_tiny", "title": "overfit a tiny subset"})
    rep.on_overfit_epoch({"epoch": 1, "epochs": 200, "cost": 2.3, "train_acc": 0.5, "lr": 1e-3})
    bad = CheckResult("overfit_tiny", False, "50% after 200 epochs", "100% train accuracy", "raise [the] lr")
    rep.on_check_end(bad)
    rep.close()
    con.sanity_report([CheckResult("loss_at_init", True, "loss 2.31", "ln 10"), bad])
    out = buf.getvalue()
    assert "\x1b[" in out  # styled for a terminal
    assert "Finished epoch 1 / 200: cost 2.300000, train: 0.500000, lr 1.000000e-03" in out
    assert "FAIL [1/2] overfit a tiny subset" in re.sub(r"\x1b\[[0-9;]*m", "", out)
    plain_out = re.sub(r"\x1b\[[0-9;?]*[a-zA-Z]", "", out)
    assert "sanity checks" in plain_out and "loss_at_init" in plain_out
    assert "overfit_tiny: raise [the] lr" in plain_out  # markup-like text is shown literally
    assert plain_out.rstrip().endswith("1/2 checks passed")


def test_bad_input_met_during_a_check_exits_2_with_its_message_not_a_fail(tmp_path):
    """A streamed split cannot hand over resident tensors: the DataError is bad input (exit 2), not a FAIL."""
    import numpy as np

    rng = np.random.default_rng(0)
    np.savez(tmp_path / "d.npz", x=rng.integers(0, 256, (150, 8, 8, 3), dtype=np.uint8), y=np.arange(150) % 3)
    data = ["--set", "data.dataset=npz", "--set", f"data.root={tmp_path / 'd.npz'}"]
    stream = ["--set", "data.memory_limit_mb=0.001", "--set", "data.workers=0"]
    small = ["--set", "model.channels=[4]", "--set", "model.hidden=[8]", "--set", "sanity.tiny_samples=10"]
    res = cli("sanity", *FAST, *data, *stream, *small)
    assert res.exit_code == 2, res.output
    assert "raise data.memory_limit_mb" in res.output and "Traceback" not in res.output
    assert not any(line.startswith("FAIL") for line in res.output.splitlines())
    errors = [line for line in res.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, res.output


def test_the_lecture_config_passes_every_check_as_its_comment_promises():
    """configs/lecture-two-layer.yaml says `nntrain sanity -c` on it passes: a real run of all 8 checks."""
    assert "all 8 checks pass" in open("configs/lecture-two-layer.yaml").read()
    res = cli("sanity", "-c", "configs/lecture-two-layer.yaml", "--set", "device=cpu")
    assert res.exit_code == 0, res.output
    assert res.output.rstrip().endswith("8/8 checks passed")
    overfit = next(line for line in res.output.splitlines() if line.startswith("PASS  overfit_tiny"))
    loss = float(re.search(r"loss (\d+\.\d+)", overfit).group(1))
    assert loss <= 0.1 * 2.302585  # near zero, not merely 100% accuracy
