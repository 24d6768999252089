"""The pipeline every command shares: config → dataset → splits → device tensors → model.

Commands differ only in their ending (ARCHITECTURE.md, "One pipeline, several verbs"):
``train`` calls ``train.train_run``; ``sanity``, ``cv`` and the plots reuse ``setup``."""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from nntrain.config import Config
from nntrain.data.memory import prepare
from nntrain.data.registry import load_dataset
from nntrain.data.splits import make_splits
from nntrain.data.types import Dataset, Prepared, SplitIndices
from nntrain.errors import ConfigError, name_some
from nntrain.models import build_model
from nntrain.training import distributed
from nntrain.training.device import precision_note, resolve_device
from nntrain.training.threads import choose_threads, step_macs, usable_cores


@dataclass
class Setup:
    cfg: Config
    device: torch.device
    dataset: Dataset
    data: Prepared
    threads: int = 1  # torch CPU threads the policy chose for this work (training.threads); applied by the caller

    def fingerprints(self) -> dict[str, dict[str, Any]]:
        """``split_fingerprints``, computed once per set-up (every checkpoint records them)."""
        if "_fingerprints" not in self.__dict__:
            self.__dict__["_fingerprints"] = split_fingerprints(self)
        return self.__dict__["_fingerprints"]

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
    ds = replace(ds, notes=ds.notes + tuple(setting_notes(cfg, device, ds, splits)))
    check_crop(cfg.data.augment.crop_padding, data.input_shape)
    model = build_model(cfg.model, data.input_shape, data.num_classes)  # shape errors surface now
    # processes sharing this machine's cores: torchrun's ranks on this node
    local = int(os.environ.get("LOCAL_WORLD_SIZE", ddp.world)) if ddp is not None else 1
    macs = step_macs(model, data.input_shape, cfg.train.batch_size)
    threads, capped = choose_threads(cfg.threads, macs=macs, cores=usable_cores(), jobs=local)
    ds = replace(ds, notes=ds.notes + (precision_note(cfg.train.amp, device, macs),) + ((capped,) if capped else ()))
    return Setup(cfg, device, ds, data, threads)


def check_crop(padding: int, input_shape: tuple[int, int, int]) -> None:
    side = min(input_shape[1:])
    if 2 * padding >= side:  # a crop shifted by up to `padding` pixels may keep less than half the image
        raise ConfigError(
            f"data.augment.crop_padding={padding} on {input_shape[1]}x{input_shape[2]} images: a random crop can "
            f"keep less than half of an image, so the net learns little; use at most {(side - 1) // 2} "
            f"(commonly about 1/8 of the side: {max(1, side // 8)})"
        )


def setting_notes(cfg: Config, device: torch.device, ds: Dataset, splits: SplitIndices) -> list[str]:
    """What the user should know about how the settings meet this data and device."""
    notes = []
    n_train = len(splits.train)
    if cfg.train.batch_size > n_train:
        notes.append(
            f"train.batch_size={cfg.train.batch_size} > {n_train} train samples: every step uses the whole "
            "train split (full-batch gradient descent, one step per epoch)"
        )
    if cfg.train.compile and device.type != "cuda":
        import logging

        # torch.compile imports cpp_extension, which logs "No CUDA runtime is found" on a CPU machine
        logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
    y = ds.y.numpy()
    for name in ("val", "test"):
        idx = np.asarray(getattr(splits, name))
        if len(idx) == 0:
            continue
        absent = [c for c, k in zip(ds.classes, np.bincount(y[idx], minlength=len(ds.classes))) if k == 0]
        if absent:
            notes.append(
                f"warning: {len(absent)} class(es) have no sample in the {name} split: {name_some(absent)}; "
                f"its {name} accuracy says nothing about them: add images of those classes"
            )
    return notes


def checkpoint_extra(s: Setup) -> dict[str, Any]:
    """What a checkpoint needs besides weights to be used on its own (eval, plots, resume)."""
    return {
        "config": s.cfg.model_dump(mode="json"),
        "classes": list(s.data.classes),
        "input_shape": list(s.data.input_shape),
        "norm_mean": s.data.mean.tolist(),
        "norm_std": s.data.std.tolist(),
        "versions": versions(),
        **({"data_sha256": s.fingerprints()} if s.data.splits is not None else {}),
    }


def split_fingerprints(s: Setup) -> dict[str, dict[str, Any]]:
    """Per split: its size and a SHA-256 of its samples in order (file names as class/file, labels and,
    for in-memory data, the raw values), so ``eval`` can tell that the data changed since training."""
    import hashlib

    ds, out = s.dataset, {}
    for name in ("train", "val", "test"):
        idx = np.asarray(getattr(s.data.splits, name), dtype=np.int64)
        h = hashlib.sha256(ds.y[torch.from_numpy(idx)].numpy().astype("<i8").tobytes())
        if ds.sources is not None:
            for i in idx:
                h.update("/".join(Path(ds.sources[i]).parts[-2:]).encode() + b"\0")
        elif isinstance(ds.x, torch.Tensor) and not ds.stream:
            h.update(ds.x[torch.from_numpy(idx)].contiguous().numpy().tobytes())
        out[name] = {"n": int(len(idx)), "sha256": h.hexdigest()}
    return out


def versions() -> dict[str, str]:
    import nntrain

    return {"nntrain": nntrain.__version__, "torch": str(torch.__version__), "python": platform.python_version()}
