"""The pipeline every command shares: config → dataset → splits → device tensors → model.

Commands differ only in their ending (ARCHITECTURE.md, "One pipeline, several verbs"):
``train`` calls ``train.train_run``; ``sanity``, ``cv`` and the plots reuse ``setup``."""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from nntrain.config import Config
from nntrain.data.memory import prepare
from nntrain.data.registry import load_dataset
from nntrain.data.splits import make_splits
from nntrain.data.types import Dataset, Prepared
from nntrain.models import build_model
from nntrain.training import distributed
from nntrain.training.device import resolve_device
from nntrain.training.threads import choose_threads, step_macs, usable_cores


@dataclass
class Setup:
    cfg: Config
    device: torch.device
    dataset: Dataset
    data: Prepared
    threads: int = 1  # torch CPU threads the policy chose for this work (training.threads); applied by the caller

    def new_model(self, seed: int | None = None) -> nn.Module:
        """A freshly initialized model; same seed → same weights."""
        torch.manual_seed(self.cfg.seed if seed is None else seed)
        return build_model(self.cfg.model, self.data.input_shape, self.data.num_classes)


def setup(cfg: Config) -> Setup:
    """Everything that can reject bad input, done before any run directory exists."""
    device = resolve_device(cfg.device)
    ddp = distributed.current()
    if ddp is not None:  # under torchrun: this rank's device; the global batch must reach every rank
        device = ddp.device
        ddp.check(cfg.train.batch_size)
    ds = load_dataset(cfg.data)
    splits = make_splits(ds, cfg)
    data = prepare(ds, splits.train, splits.val, splits.test, device, splits=splits)
    model = build_model(cfg.model, data.input_shape, data.num_classes)  # shape errors surface now
    # processes sharing this machine's cores: torchrun's ranks on this node
    local = int(os.environ.get("LOCAL_WORLD_SIZE", ddp.world)) if ddp is not None else 1
    macs = step_macs(model, data.input_shape, cfg.train.batch_size)
    return Setup(cfg, device, ds, data, choose_threads(cfg.threads, macs=macs, cores=usable_cores(), jobs=local))


def checkpoint_extra(s: Setup) -> dict[str, Any]:
    """What a checkpoint needs besides weights to be used on its own (eval, plots, resume)."""
    return {
        "config": s.cfg.model_dump(mode="json"),
        "classes": list(s.data.classes),
        "input_shape": list(s.data.input_shape),
        "norm_mean": s.data.mean.tolist(),
        "norm_std": s.data.std.tolist(),
        "versions": versions(),
    }


def versions() -> dict[str, str]:
    import nntrain

    return {"nntrain": nntrain.__version__, "torch": str(torch.__version__), "python": platform.python_version()}
