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
from nntrain.pipeline.pretrained import Start, apply_start, effective_config, start_for, start_stats
from nntrain.training import distributed
from nntrain.training.device import precision_note, resolve_device
from nntrain.training.loss import check_class_weights
from nntrain.training.threads import choose_threads, step_macs, usable_cores


@dataclass
class Setup:
    cfg: Config
    device: torch.device
    dataset: Dataset
    data: Prepared
    threads: int = 1  # torch CPU threads the policy chose for this work (training.threads); applied by the caller
    start: Start | None = None  # model.weights, read once; None: random init

    def fingerprints(self) -> dict[str, dict[str, Any]]:
        """``split_fingerprints``, computed once per set-up (every checkpoint records them)."""
        if "_fingerprints" not in self.__dict__:
            self.__dict__["_fingerprints"] = split_fingerprints(self)
        return self.__dict__["_fingerprints"]

    def new_model(self, seed: int | None = None, *, pretrained: bool = True) -> nn.Module:
        """A freshly initialized model, from model.weights unless ``pretrained`` is false (a resume loads
        last.pt instead); same seed → same weights."""
        torch.manual_seed(self.cfg.seed if seed is None else seed)
        model = build_model(self.cfg.model, self.data.input_shape, self.data.num_classes)
        if pretrained and self.start is not None:
            apply_start(model, self.start, self.cfg.model.name, self.data.classes)
        return model


def setup(cfg: Config, *, norm: dict[str, Any] | None = None) -> Setup:
    """Everything that can reject bad input, done before any run directory exists. ``norm``: a checkpoint of
    this config (resume, eval, report): its normalization is used and model.weights is not read again."""
    device = resolve_device(cfg.device)
    ddp = distributed.current()
    if ddp is not None:  # under torchrun: this rank's device; the global batch must reach every rank
        device = ddp.device
        ddp.check(cfg.train.batch_size)
    check_finetune(cfg, ddp is not None)
    start = start_for(cfg) if norm is None else None  # a missing or bad weights file: rejected before the data loads
    asked = cfg.data.channels
    cfg, notes = effective_config(cfg, start)
    ds = load_dataset(cfg.data)
    if asked is None and cfg.data.channels == 3 and _gray(ds):
        notes.append(f"the images are gray: repeated to the 3 (RGB) channels model.name: {cfg.model.name} takes")
    splits = make_splits(ds, cfg)
    stats = start_stats(start, ds) if norm is None else saved_stats(norm)
    data = prepare(ds, splits.train, splits.val, splits.test, device, splits=splits, stats=stats)
    check_crop(cfg.data.augment.crop_padding, data.input_shape)
    check_class_weights(cfg.train, data.num_classes)  # else the first run directory would hold the error
    model = build_model(cfg.model, data.input_shape, data.num_classes)  # shape errors surface now
    if start is not None:  # a start of another architecture is rejected here, before any run directory
        notes += apply_start(model, start, cfg.model.name, data.classes)
    ds = replace(ds, notes=ds.notes + tuple(notes + setting_notes(cfg, device, ds, splits)))
    # processes sharing this machine's cores: torchrun's ranks on this node
    local = int(os.environ.get("LOCAL_WORLD_SIZE", ddp.world)) if ddp is not None else 1
    macs = step_macs(model, data.input_shape, cfg.train.batch_size)
    threads, capped = choose_threads(cfg.threads, macs=macs, cores=usable_cores(), jobs=local)
    ds = replace(ds, notes=ds.notes + (precision_note(cfg.train.amp, device, macs),) + ((capped,) if capped else ()))
    return Setup(cfg, device, ds, data, threads, start)


def _gray(ds: Dataset) -> bool:
    x = ds.x
    return not ds.stream and x.shape[1] == 3 and torch.equal(x[:, 0], x[:, 1]) and torch.equal(x[:, 1], x[:, 2])


def check_finetune(cfg: Config, torchrun: bool) -> None:
    from nntrain.config.model import BACKBONES

    t = cfg.train
    if (t.freeze_epochs or t.backbone_lr is not None) and cfg.model.name not in BACKBONES:
        key = "freeze_epochs" if t.freeze_epochs else "backbone_lr"
        raise ConfigError(
            f"train.{key} applies to a pretrained backbone (model.name: {', '.join(BACKBONES)}); "
            f"model.name: {cfg.model.name} has none: remove it"
        )
    if t.freeze_epochs and cfg.model.weights == "none":
        raise ConfigError(
            "train.freeze_epochs with model.weights: none would train the head on a random backbone's features; "
            "set model.weights (imagenet, a weights file or a run), or drop train.freeze_epochs"
        )
    if t.freeze_epochs >= t.epochs:
        raise ConfigError(
            f"train.freeze_epochs={t.freeze_epochs} of train.epochs={t.epochs}: the backbone would never train; "
            "use fewer frozen epochs (1–3 are common)"
        )
    if t.freeze_epochs and torchrun:
        raise ConfigError(
            "train.freeze_epochs under torchrun: DistributedDataParallel fixes which parameters train when it wraps "
            "the model; train the frozen epochs in one process, then continue from that run with model.weights"
        )


def saved_stats(ckpt: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor] | None:
    """A checkpoint's normalization (as ``checkpoint_extra`` wrote it), None if it has none."""
    if "norm_mean" not in ckpt:
        return None
    return torch.tensor(ckpt["norm_mean"], dtype=torch.float32), torch.tensor(ckpt["norm_std"], dtype=torch.float32)


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
