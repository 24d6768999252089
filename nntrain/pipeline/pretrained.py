"""``model.weights``: where a model's initial weights come from, and what they bring with them.

A start is read once per process and checked before anything is created: torchvision weights from
torchvision's cache (or downloaded, when ``model.download``), a state-dict file (.pth/.pt/.safetensors)
or an nntrain run / ``best.pt``. Pretrained weights expect the inputs they were trained on, so a start
also fixes the data's channels, working size and normalization (``effective_config``, ``stats``); the
run records them like any run (checkpoint, export), so predict and export preprocess the same way."""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nntrain.config import Config
from nntrain.config.model import BACKBONES, is_weights_name
from nntrain.errors import CheckpointError
from nntrain.models.state import mismatch
from nntrain.runs.files import load_checkpoint


def _in_head(key: str, arch: str) -> bool:
    """The head: rebuilt when a start's classes differ. A conv net's whole MLP head (fc1…, out), which is as
    specific to the old classes as the last layer (on digits 0–4 → 5–9 its fc1 features probe at 0.66, the conv
    features at 0.88); an mlp's or a backbone's last Linear (``out``)."""
    return key.startswith("out.") or (arch in ("cnn", "resnet") and re.match(r"fc\d+\.", key) is not None)


@dataclass(frozen=True)
class Start:
    kind: str  # "torchvision" (weights name), "file" (a state dict) or "run" (an nntrain checkpoint)
    label: str  # what to call it in messages
    state: dict[str, torch.Tensor] = field(repr=False)
    mean: tuple[float, ...] | None = None  # the weights' normalization: torchvision's in [0, 1] units ...
    std: tuple[float, ...] | None = None
    raw_units: bool = False  # ... an nntrain run's in its data's raw pixel units
    size: int | None = None  # the working size the weights fit (None: the data's own rule)
    channels: int | None = None
    classes: tuple[str, ...] | None = None  # an nntrain run's: its head is kept only for the same classes
    arch: str | None = None  # an nntrain run's model.name


def start_for(cfg: Config) -> Start | None:
    """The configured start (``None``: random init); a missing or unreadable one is a CheckpointError."""
    m = cfg.model
    if m.weights == "none":
        return None
    start = _read(m.name, m.weights, m.download, _stamp(m.name, m.weights))
    if start.arch is not None and start.arch != m.name:
        raise CheckpointError(
            f"model.weights: {start.label} is a {start.arch} run; it does not fit model.name: {m.name}: set "
            f"model.name: {start.arch} (and the model section of that run's config.yaml)"
        )
    return start


def _stamp(arch: str, spec: str) -> tuple[Any, ...]:
    """What a read depends on besides the setting: the identity of the file it reads (a weights name: the file in
    torchvision's cache), so a changed or newly downloaded file is read again."""
    p = Path(spec).expanduser()
    if arch in BACKBONES and is_weights_name(spec) and not p.exists():
        from nntrain.models.backbones import cache_file, weights_enum

        p = cache_file(weights_enum(arch, spec))
    if p.exists():
        st = p.stat()
        return (str(p.resolve()), st.st_mtime_ns, st.st_size)
    return (str(p),)


@functools.lru_cache(maxsize=4)  # sanity, cv folds and the model built by setup share one read
def _read(arch: str, spec: str, download: bool, _stamp: tuple[Any, ...]) -> Start:
    if arch in BACKBONES and is_weights_name(spec) and not Path(spec).exists():
        from nntrain.models.backbones import read_torchvision_weights, weights_enum

        w = weights_enum(arch, spec)
        t = w.transforms()
        state = read_torchvision_weights(w, download=download)
        return Start(
            "torchvision", f"torchvision {w}", state, tuple(t.mean), tuple(t.std), size=t.crop_size[0], channels=3
        )
    p = Path(spec).expanduser()
    if p.is_dir() or p.name in ("best.pt", "last.pt", "init.pt") or _nntrain_checkpoint(p):
        ckpt = load_checkpoint(p / "best.pt" if p.is_dir() else p)
        c, h, _ = (int(v) for v in ckpt.get("input_shape", (None, None, None)))
        return Start(
            "run",
            f"{p}",
            ckpt["model"],
            tuple(ckpt["norm_mean"]),
            tuple(ckpt["norm_std"]),
            raw_units=True,
            size=h,
            channels=c,
            classes=tuple(ckpt.get("classes", ())),
            arch=(ckpt.get("config") or {}).get("model", {}).get("name"),
        )
    state = _state_file(p)
    if arch in BACKBONES:  # a torchvision-format file: ImageNet's inputs, like the architecture's own weights
        from nntrain.models.backbones import weights_enum

        t = weights_enum(arch, "imagenet").transforms()
        return Start("file", f"{p}", state, tuple(t.mean), tuple(t.std), size=t.crop_size[0], channels=3)
    return Start("file", f"{p}", state)


def _nntrain_checkpoint(p: Path) -> bool:
    if p.suffix.lower() not in (".pt", ".pth") or not p.is_file():
        return False
    obj = _torch_load(p)
    return isinstance(obj, dict) and "model" in obj and "config" in obj


def _torch_load(p: Path) -> Any:
    try:
        return torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unreadable file is the same bad input
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        raise CheckpointError(f"model.weights: '{p}' is not a readable PyTorch weights file ({first})") from None


def _state_file(p: Path) -> dict[str, torch.Tensor]:
    if not p.exists():
        raise CheckpointError(
            f"model.weights: '{p}' does not exist; use none, imagenet (torchvision's cache), a torchvision "
            "weights name, a .pth/.safetensors state dict or an nntrain run directory"
        )
    if p.suffix.lower() == ".safetensors":
        try:
            from safetensors.torch import load_file
        except ImportError:
            raise CheckpointError(
                "model.weights: reading .safetensors needs the 'safetensors' package; "
                "run: pip install 'nntrain[export]'"
            ) from None
        try:
            return load_file(str(p))
        except Exception as e:  # noqa: BLE001 - safetensors raises its own error types
            raise CheckpointError(f"model.weights: '{p}' is not a readable .safetensors file ({e})") from None
    obj = _torch_load(p)
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]  # a common wrapper of training scripts
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"model.weights: '{p}' holds no state dict (a mapping of names to tensors)")
    return obj


def effective_config(cfg: Config, start: Start | None) -> tuple[Config, list[str]]:
    """The config with the data settings the model needs: RGB for a torchvision backbone, and a start's
    channels and working size unless data.image_size / data.channels were set. Returns the notes to print."""
    notes: list[str] = []
    data = cfg.data
    channels = start.channels if start is not None and start.channels else (3 if cfg.model.name in BACKBONES else None)
    if channels is not None and data.channels is None:
        data = _with(data, channels=channels)
    if start is not None and start.size is not None and data.image_size is None:
        data = _with(data, image_size=start.size)
        notes.append(
            f"model.weights: images resized to {start.size}x{start.size}, the size the weights were trained at; "
            f"set data.image_size to choose another (half the side trains about 4x faster)"
        )
    return (cfg if data is cfg.data else cfg.model_copy(update={"data": data})), notes


def _with(section: Any, **changes: Any) -> Any:
    """A frozen pydantic section with ``changes``, validated again."""
    return type(section).model_validate({**section.model_dump(), **changes})


def start_stats(start: Start | None, ds: Any) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The normalization ``start``'s weights expect, in the raw units of the dataset ``ds`` (decoded images:
    0–255; other arrays: up to their maximum, e.g. the embedded digits' 16); None: the train split's own."""
    if start is None or start.mean is None:
        return None
    mean, std = torch.tensor(start.mean).float(), torch.tensor(start.std).float()
    if not start.raw_units:
        x = ds.x
        scale = 255.0 if ds.stream or x.dtype == torch.uint8 else max(1.0, float(x.float().max()))
        mean, std = mean * scale, std * scale
    if len(mean) != ds.input_shape[0]:
        raise CheckpointError(
            f"model.weights: {start.label} expects {len(mean)}-channel input, the data has {ds.input_shape[0]}; "
            f"set data.channels: {len(mean)}"
        )
    return mean, std


def apply_start(model: nn.Module, start: Start, arch: str, classes: tuple[str, ...]) -> list[str]:
    """Load ``start`` into a freshly built ``model`` for ``classes``; returns what was loaded, for the output."""
    own = model.state_dict()
    if not any(k in own for k in start.state):  # not nntrain's layout: a torchvision-format file
        if arch not in BACKBONES:
            raise CheckpointError(
                f"model.weights: {start.label} does not fit model.name: {arch} (none of its tensor names is one "
                f"of this model's, e.g. {next(iter(start.state))} vs {next(iter(own))}); use a run of the same "
                "model, or the model.name the file was saved from"
            )
        from nntrain.models.backbones import load_backbone_state

        return load_backbone_state(model, start.state, arch, source=start.label)
    body = {k for k in own if not _in_head(k, arch)}
    why = mismatch({k: v for k, v in own.items() if k in body},
                   {k: v for k, v in start.state.items() if not _in_head(k, arch)}, "there", "this model")  # fmt: skip
    if why is not None:
        raise CheckpointError(
            f"model.weights: {start.label} is another architecture than this model ({why}); "
            "fine-tuning loads every layer but the head: use the model section of that run's config.yaml"
        )
    head = [k for k in own if _in_head(k, arch)]
    same = start.classes is None or tuple(start.classes) == tuple(classes)
    fits = same and all(k in start.state and start.state[k].shape == own[k].shape for k in head)
    load = {k: v for k, v in start.state.items() if k in body or fits}
    model.load_state_dict({**own, **load})
    rebuilt = "" if fits else f"; the head is new (classes {_some(classes)} here, {_some(start.classes)} there)"
    return [f"loaded {len(load)} of {len(own)} tensors from {start.label}{rebuilt}"]


def _some(classes: tuple[str, ...] | None) -> str:
    if not classes:
        return "unknown"
    return ", ".join(classes[:4]) + (f", … ({len(classes)})" if len(classes) > 4 else "")
