"""Where and in which precision training runs: device resolution and autocast settings."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch

from nntrain.errors import ConfigError


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


@dataclass
class Precision:
    """Autocast settings; AMP runs on CUDA only (CPU trains in float32)."""

    dtype: torch.dtype | None = None
    scaler: torch.amp.GradScaler | None = None

    @classmethod
    def create(cls, amp: str, device: torch.device) -> Precision:
        if device.type != "cuda" or amp == "off":
            return cls()
        if amp == "bf16":
            return cls(torch.bfloat16)
        return cls(torch.float16, torch.amp.GradScaler("cuda"))

    def autocast(self):
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast("cuda", dtype=self.dtype)
