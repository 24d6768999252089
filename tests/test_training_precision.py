"""train.amp on the CPU: the precision choice, bf16 training, fp32 checkpoints and exports, sanity unaffected."""

from __future__ import annotations

import json
import re

import pytest
import torch
from helpers import cli, imagefolder_run

from nntrain.config import load_config
from nntrain.models import build_model
from nntrain.pipeline.setup import setup
from nntrain.pipeline.train import train_run
from nntrain.runs.files import load_checkpoint
from nntrain.training.device import BF16_MIN_STEP_MACS, Precision, choose_precision, cpu_bf16_support
from nntrain.training.engine import evaluate
from nntrain.training.threads import step_macs

CPU = torch.device("cpu")


def _macs(*overrides: str, shape=(3, 32, 32)) -> float:
    cfg = load_config(None, list(overrides))
    return step_macs(build_model(cfg.model, shape, 10), shape, cfg.train.batch_size)


def test_auto_picks_bf16_for_cifar_sized_conv_work_on_a_bf16_cpu_and_fp32_for_digits():
    cifar = _macs("model.channels=[64,128,256]", "model.hidden=[256]", "train.batch_size=128")
    digits = _macs(shape=(1, 8, 8))  # the default config: the digits CNN, batch 64
    assert digits < BF16_MIN_STEP_MACS < cifar
    name, why = choose_precision("auto", CPU, cifar, bf16_cpu="amx_bf16")
    assert name == "bf16" and "amx_bf16" in why
    name, why = choose_precision("auto", CPU, digits, bf16_cpu="amx_bf16")
    assert name == "fp32" and "too small" in why


def test_auto_is_fp32_on_a_cpu_without_bf16_matrix_instructions(tmp_path):
    cifar = _macs("model.channels=[64,128,256]", "train.batch_size=128")
    name, why = choose_precision("auto", CPU, cifar, bf16_cpu=None)
    assert name == "fp32" and "no native bf16" in why
    # the detection reads the CPU's flags: a CPU listing only AVX-512 (no bf16) has none; one with AMX has it
    plain = tmp_path / "cpuinfo"
    plain.write_text("processor\t: 0\nflags\t\t: fpu sse avx2 avx512f avx512bw\n\nflags\t\t: fpu avx2\n")
    amx = tmp_path / "cpuinfo-amx"
    amx.write_text("processor\t: 0\nflags\t\t: fpu avx512f avx512_bf16 amx_tile amx_bf16\n")
    assert cpu_bf16_support(plain) is None and cpu_bf16_support(tmp_path / "absent") is None
    if torch.backends.mkldnn.is_available():
        assert cpu_bf16_support(amx) == "amx_bf16"


def test_explicit_settings_and_cuda_keep_their_meaning():
    assert choose_precision("off", CPU, 1e12, "amx_bf16")[0] == "fp32"
    assert choose_precision("bf16", CPU, 1.0, None)[0] == "bf16"  # forced: no work-size test
    name, why = choose_precision("fp16", CPU, 1e12, "amx_bf16")
    assert name == "fp32" and "use bf16" in why
    cuda = torch.device("cuda")  # a device object needs no GPU
    chosen = [choose_precision(a, cuda, 1e12)[0] for a in ("auto", "off", "bf16", "fp16")]
    assert chosen == ["fp32", "fp32", "bf16", "fp16"]


def test_forced_bf16_autocasts_the_forward_pass_on_the_cpu():
    p = Precision.create("bf16", CPU)
    conv = torch.nn.Conv2d(3, 4, 3)
    with p.autocast():
        out = conv(torch.randn(2, 3, 8, 8))
    assert out.dtype == torch.bfloat16 and conv.weight.dtype == torch.float32
    assert Precision.create("off", CPU).autocast().__enter__() is None  # a null context


def test_a_bf16_run_trains_records_why_and_keeps_float32_checkpoints(tiny_cfg):
    s = setup(tiny_cfg("train.amp=bf16"))
    h, run = train_run(s.cfg, s=s)
    assert h.precision == "bf16" and h.precision_reason == "train.amp: bf16"
    summary = json.loads((run.path / "summary.json").read_text())
    assert summary["precision"] == "bf16" and summary["precision_reason"] == "train.amp: bf16"
    for name in ("best.pt", "last.pt"):
        ckpt = load_checkpoint(run.path / name)
        floats = {v.dtype for v in ckpt["model"].values() if v.is_floating_point()}
        assert floats == {torch.float32}, (name, floats)
    # the reported test accuracy is best.pt's float32 weights' (what eval, predict and exports compute)
    model = s.new_model()
    model.load_state_dict(load_checkpoint(run.path / "best.pt")["model"])
    assert evaluate(model, s.data.test)[1] == h.test_acc
    # bf16 trains: the loss falls and differs from the fp32 run's (autocast really was on)
    rows = run.read_metrics()
    assert rows[-1]["train_loss"] < rows[0]["train_loss"]
    h32, _ = train_run(tiny_cfg("train.amp=off"))
    assert h32.precision == "fp32" and h32.records[0]["train_loss"] != h.records[0]["train_loss"]


def test_two_bf16_runs_with_the_same_seed_give_the_same_metrics(tiny_cfg):
    def metrics():
        _, run = train_run(tiny_cfg("train.amp=bf16"))
        return [{k: v for k, v in row.items() if k != "seconds"} for row in run.read_metrics()]

    a, b = metrics(), metrics()
    assert a == b and len(a) == 2


def test_the_run_notes_which_precision_trains_it_and_why():
    notes = setup(load_config(None, ["device=cpu"])).dataset.notes
    (line,) = [n for n in notes if n.startswith("precision:")]
    assert line.startswith("precision: fp32 (train.amp: auto") and "amp" in line
    assert not [n for n in notes if "mixed precision is CUDA only" in n]
    forced_notes = setup(load_config(None, ["device=cpu", "train.amp=bf16"])).dataset.notes
    (forced,) = [n for n in forced_notes if "precision" in n]
    assert forced == "precision: bf16 (train.amp: bf16)"


@pytest.mark.parametrize("fmt", ["onnx", "safetensors"])
def test_a_bf16_run_exports_float32_models_that_pass_the_parity_check(tmp_path, one_torch_thread, fmt):
    run = imagefolder_run(tmp_path, 20, "--set", "train.amp=bf16")
    assert load_checkpoint(run / "best.pt")["model"]["conv1.weight"].dtype == torch.float32
    out = tmp_path / f"m.{fmt}"
    res = cli("export", run, "--format", fmt, "--out", out)
    assert res.exit_code == 0, res.output
    m = re.search(r"max \|Δprobability\| (\S+) .*top-1 agreement 100\.00%", res.stdout)
    assert m and float(m[1]) <= 1e-5, res.stdout
    res = cli("eval", run)  # predict/eval of the fp32 weights reproduce the run's test accuracy
    assert res.exit_code == 0, res.output


def _sanity_values(*overrides: str) -> list[tuple]:
    from nntrain.sanity.runner import CHECKS, run_sanity

    cfg = load_config(None, ["device=cpu", *overrides])
    names = {"loss_at_init", "regularization", "overfit_tiny", "gradient_check", "lr_probe"}
    results = run_sanity(setup(cfg), checks=[c for c in CHECKS if c.name in names])
    return [(r.name, r.passed, r.values) for r in results]


def test_sanity_numbers_under_amp_auto_and_bf16_equal_fp32s():
    # wide enough that auto picks bf16 on a bf16 CPU: sanity must still run in float32 / float64
    big = ("model.channels=[64,128]", "train.batch_size=1024", "sanity.lr_probe_steps=10")
    macs = _macs(*big, shape=(1, 8, 8))
    assert choose_precision("auto", CPU, macs, "amx_bf16")[0] == "bf16"
    fp32 = _sanity_values(*big, "train.amp=off")
    assert fp32 == _sanity_values(*big, "train.amp=auto") == _sanity_values(*big, "train.amp=bf16")
    assert all(p for _, p, _ in fp32) and dict((n, v) for n, _, v in fp32)["gradient_check"], fp32
