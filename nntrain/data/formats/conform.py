"""Bring any (N, C, H, W) image tensor to the configured channels and size with tensor ops."""

from __future__ import annotations

import torch
import torch.nn.functional as F

_LUMA = (0.299, 0.587, 0.114)  # ITU-R 601, as PIL's convert("L")


def to_channels(x: torch.Tensor, channels: int | None) -> torch.Tensor:
    """(N, C, H, W) → (N, channels, H, W): gray is repeated to RGB, RGB is reduced by luma weights."""
    c = x.shape[1]
    if channels is None or channels == c:
        return x
    if c == 1 and channels == 3:
        return x.expand(-1, 3, -1, -1).contiguous()
    if c == 3 and channels == 1:
        w = torch.tensor(_LUMA).view(1, 3, 1, 1)
        gray = (x.float() * w).sum(1, keepdim=True)
        return gray.round().clamp(0, 255).to(torch.uint8) if x.dtype == torch.uint8 else gray
    raise ValueError(f"cannot convert {c} channels to {channels}")


def to_size(x: torch.Tensor, size: int | None) -> torch.Tensor:
    """(N, C, H, W) → (N, C, size, size), antialiased bilinear; uint8 stays uint8."""
    if size is None or tuple(x.shape[2:]) == (size, size):
        return x
    out = torch.cat(
        [
            F.interpolate(chunk.float(), size=(size, size), mode="bilinear", antialias=True, align_corners=False)
            for chunk in x.split(4096)
        ]
    )
    return out.round().clamp(0, 255).to(torch.uint8) if x.dtype == torch.uint8 else out
