"""Where and in which precision training runs: device resolution, the precision choice, autocast settings."""

from __future__ import annotations

import contextlib
import functools
from dataclasses import dataclass
from pathlib import Path

import torch

from nntrain.errors import ConfigError

# train.amp: auto picks bf16 on the CPU only for an SGD step of at least this many forward multiply-accumulates
# (threads.step_macs). Below it the casts to and from bf16 cost about what the matrix units save, and on small
# photo folders (the default CNN at 32 px: ~4e8) bf16 selected a slightly worse epoch: docs/precision.md
BF16_MIN_STEP_MACS = 1e9
# CPU flags (Linux /proc/cpuinfo) of native bf16 matrix instructions that oneDNN's bf16 kernels use
BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")


def resolve_device(spec: str) -> torch.device:
    """auto → CUDA when available, else CPU; an explicit CUDA request must be satisfiable."""
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(spec)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"device: {spec!r} requested but CUDA is not available here; use device: auto or cpu")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ConfigError(
                f"device: {spec!r} but only {torch.cuda.device_count()} CUDA device(s) exist; use "
                f"cuda:0..cuda:{torch.cuda.device_count() - 1}"
            )
    return dev


@functools.cache  # the CPU's flags do not change while a process runs: read them once
def cpu_bf16_support(cpuinfo: str | Path = "/proc/cpuinfo") -> str | None:
    """The CPU's native bf16 matrix flag (amx_bf16 first) when torch's oneDNN backend can use it, else None.
    Linux's CPU flags: torch has no public query for them; elsewhere (no cpuinfo file) None, so fp32."""
    if not torch.backends.mkldnn.is_available():
        return None
    try:
        text = Path(cpuinfo).read_text()
    except OSError:
        return None
    flags = {f for line in text.splitlines() if line.startswith("flags") for f in line.split(":", 1)[-1].split()}
    return next((f for f in BF16_CPU_FLAGS if f in flags), None)


def choose_precision(
    amp: str, device: torch.device | str, macs: float | None = None, bf16_cpu: str | None = None
) -> tuple[str, str]:
    """(precision: fp32 | bf16 | fp16, why) for ``train.amp`` on ``device``. ``macs``: forward multiply-accumulates
    of one SGD step (needed by auto on the CPU); ``bf16_cpu``: the CPU's bf16 matrix flag (``cpu_bf16_support()``).
    auto on CUDA is fp32, as before train.amp had auto."""
    kind = torch.device(device).type
    if amp == "off":
        return "fp32", "train.amp: off"
    if kind == "cuda":
        return ("fp32", "train.amp: auto is fp32 on CUDA") if amp == "auto" else (amp, f"train.amp: {amp}")
    if kind != "cpu":
        return "fp32", f"train.amp: {amp} is ignored on {kind}: autocast there is untested"
    if amp == "fp16":
        return "fp32", "train.amp: fp16 is ignored on the CPU (no fast fp16 matrix kernels there): use bf16"
    if amp == "bf16":
        return "bf16", "train.amp: bf16"
    if bf16_cpu is None:
        return "fp32", "train.amp: auto: this CPU has no native bf16 matrix instructions (amx_bf16, avx512_bf16)"
    if macs is None or macs < BF16_MIN_STEP_MACS:
        shown = "unknown" if macs is None else f"{macs:.1e}"
        return "fp32", f"train.amp: auto: a step's work ({shown} MACs) is below {BF16_MIN_STEP_MACS:.0e}: too small"
    return "bf16", f"train.amp: auto: the CPU has {bf16_cpu} and a step's work ({macs:.1e} MACs) is large enough"


def decide_precision(amp: str, device: torch.device, macs: float | None = None) -> tuple[str, str]:
    """``choose_precision`` on this machine's CPU."""
    return choose_precision(amp, device, macs, cpu_bf16_support() if amp == "auto" and device.type == "cpu" else None)


def precision_note(amp: str, device: torch.device, macs: float | None = None) -> str:
    """The run's note line: the precision it trains in and why."""
    name, reason = decide_precision(amp, device, macs)
    return f"precision: {name} ({reason})"


@dataclass
class Precision:
    """Autocast settings: the parameters stay float32, autocast casts the forward pass's ops (bf16 on CPU or
    CUDA, fp16 on CUDA with a gradient scaler); ``name`` and ``reason`` say which and why."""

    dtype: torch.dtype | None = None
    scaler: torch.amp.GradScaler | None = None
    device_type: str = "cpu"
    name: str = "fp32"
    reason: str = "train.amp: off"

    @classmethod
    def create(cls, amp: str, device: torch.device, macs: float | None = None) -> Precision:
        name, reason = decide_precision(amp, device, macs)
        dtype = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[name]
        scaler = torch.amp.GradScaler("cuda") if name == "fp16" else None
        return cls(dtype, scaler, device.type, name, reason)

    def autocast(self):
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=self.dtype)
