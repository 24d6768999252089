"""Train-time augmentation on whole batches with tensor ops (no per-image Python).

``make_augment(cfg.data.augment)`` returns ``fn(xb, generator) -> xb`` for
``engine.fit(..., augment=fn)``, which calls it on each *train* batch only; evaluation
never augments. Random numbers come from the engine's seeded CPU generator, so a run
is reproducible on CPU and CUDA alike.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from nntrain.config import AugmentConfig

Augment = Callable[[torch.Tensor, torch.Generator | None], torch.Tensor]


def random_crop(x: torch.Tensor, padding: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """(B, C, H, W) → (B, C, H, W): zero-pad each side by ``padding``, then crop an H×W window at a
    random offset per image. Applied after normalization, so zero padding is the train mean."""
    if padding <= 0:
        return x
    b, c, h, w = x.shape
    xp = F.pad(x, (padding, padding, padding, padding))  # (B, C, H+2p, W+2p)
    off = torch.randint(0, 2 * padding + 1, (2, b), generator=generator).to(x.device)  # (dy, dx) per image
    rows = (off[0][:, None] + torch.arange(h, device=x.device))[:, None, :, None]  # (B, 1, H, 1)
    cols = (off[1][:, None] + torch.arange(w, device=x.device))[:, None, None, :]  # (B, 1, 1, W)
    batch = torch.arange(b, device=x.device)[:, None, None, None]
    chan = torch.arange(c, device=x.device)[None, :, None, None]
    return xp[batch, chan, rows, cols]


def random_hflip(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Flip each image of (B, C, H, W) left-right with probability 1/2."""
    flip = (torch.rand(x.shape[0], generator=generator) < 0.5).to(x.device)[:, None, None, None]
    return torch.where(flip, x.flip(3), x)


def make_augment(cfg: AugmentConfig) -> Augment | None:
    """None when nothing is enabled (the engine then skips the call)."""
    if cfg.crop_padding == 0 and not cfg.hflip:
        return None

    def augment(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        if cfg.crop_padding:
            x = random_crop(x, cfg.crop_padding, generator)
        if cfg.hflip:
            x = random_hflip(x, generator)
        return x

    return augment
