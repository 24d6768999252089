"""Where predictions come from: a run directory or ``.pt`` checkpoint (PyTorch), or an exported
``.onnx`` file (onnxruntime). Either way: class names, input shape, normalization, and a
function from normalized float32 inputs to class probabilities."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from nntrain.errors import CheckpointError, NntrainError

INSTALL = "pip install 'nntrain[export]'"


def require(*modules: str, what: str) -> None:
    """Import ``modules`` or fail with one line naming the extra that installs them."""
    import importlib

    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError:
            raise NntrainError(f"{what} needs the '{name}' package, which is not installed; run: {INSTALL}") from None


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


@dataclass
class Source:
    """A model ready to predict: ``probabilities(x)`` takes (N, C, H, W) float32, normalized."""

    path: Path
    kind: str  # "torch" or "onnx"
    classes: tuple[str, ...]
    input_shape: tuple[int, int, int]  # (C, H, W)
    mean: np.ndarray  # (C,) per channel, in units of pixel value / scale
    std: np.ndarray
    logits: Callable[[Any], np.ndarray]  # normalized input (tensor or array) → (N, classes)
    meta: dict[str, Any] = field(default_factory=dict)
    scale: float = 1.0  # checkpoints: raw pixel units (as training); .onnx metadata: pixel / 255

    def normalize(self, x: Any) -> Any:
        """(N, C, H, W) raw pixel values (uint8 tensor) → normalized float32 tensor, as the model was trained."""
        import torch

        from nntrain.data.types import normalize

        mean, std = torch.from_numpy(self.mean), torch.from_numpy(self.std)
        x = torch.as_tensor(x)
        if self.scale == 1.0:
            return normalize(x, mean, std)  # the very function training's data goes through
        return normalize(x.float() / self.scale, mean, std)

    def probabilities(self, x: Any) -> np.ndarray:
        """Normalized (N, C, H, W) float32 tensor (any memory layout) → (N, classes) probabilities."""
        return softmax(np.asarray(self.logits(x), dtype=np.float32))


def open_source(source: str | Path, device: str = "cpu") -> Source:
    """``device``: cpu, cuda[:N] or auto (CUDA when available). A checkpoint's model runs there; an .onnx file
    runs on onnxruntime's CUDA provider when the device is CUDA and the installed onnxruntime has it."""
    p = Path(source)
    dev = predict_device(device)
    if p.suffix.lower() == ".onnx" and not p.is_dir():
        return open_onnx(p, dev.type == "cuda")
    return open_checkpoint(p, dev)


def predict_device(spec: str) -> Any:
    """``--device`` → torch.device, with predict's own wording for a bad or unavailable device."""
    import re

    from nntrain.config.sections import DEVICE_PATTERN
    from nntrain.errors import ConfigError
    from nntrain.training.device import resolve_device

    if not re.fullmatch(DEVICE_PATTERN, spec):
        raise NntrainError(f"--device {spec}: not a device nntrain predicts on; use cpu, cuda, cuda:N or auto")
    try:
        return resolve_device(spec)
    except ConfigError as e:
        raise NntrainError(
            f"--device {spec}: {str(e).split(' requested but ')[-1]}".replace("device: ", "--device ")
        ) from None


def open_checkpoint(source: Path, device: Any = "cpu") -> Source:
    import torch

    from nntrain.pipeline.reopen import read_checkpoint
    from nntrain.training.metrics import checkpoint_tta, with_tta

    path, ckpt, model = read_checkpoint(source)
    model = with_tta(model, checkpoint_tta(ckpt)).to(device)  # predict as the run evaluated: eval.tta: flip

    def logits(x) -> np.ndarray:
        with torch.inference_mode():
            return model(torch.as_tensor(x).to(device)).float().cpu().numpy()

    return Source(
        path=path,
        kind="torch",
        classes=tuple(ckpt["classes"]),
        input_shape=tuple(int(v) for v in ckpt["input_shape"]),
        mean=np.asarray(ckpt.get("norm_mean"), dtype=np.float32),
        std=np.asarray(ckpt.get("norm_std"), dtype=np.float32),
        logits=logits,
        meta={"config": ckpt.get("config")},
    )


def open_onnx(path: Path, cuda: bool = False) -> Source:
    require("onnxruntime", what=f"predicting with '{path.name}'")
    import onnxruntime as ort

    if not path.is_file():
        raise CheckpointError(f"'{path}' does not exist; pass a .onnx file written by nntrain export")
    try:
        gpu = ["CUDAExecutionProvider"] if cuda and "CUDAExecutionProvider" in ort.get_available_providers() else []
        session = ort.InferenceSession(str(path), providers=[*gpu, "CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own exception types for unreadable models
        raise CheckpointError(f"'{path}' is not a readable ONNX model ({str(e).splitlines()[0]})") from None
    props = session.get_modelmeta().custom_metadata_map
    try:
        meta = {k: json.loads(props[k]) for k in ("classes", "mean", "std", "input_shape")}
    except (KeyError, ValueError) as e:
        raise CheckpointError(
            f"'{path}' lacks nntrain's metadata ({e}); export it with nntrain export, which records classes and "
            "normalization"
        ) from None
    name = session.get_inputs()[0].name

    def logits(x) -> np.ndarray:
        return session.run(None, {name: np.ascontiguousarray(np.asarray(x, dtype=np.float32))})[0]

    return Source(
        path=path,
        kind="onnx",
        classes=tuple(meta["classes"]),
        input_shape=tuple(int(v) for v in meta["input_shape"]),
        mean=np.asarray(meta["mean"], dtype=np.float32),
        std=np.asarray(meta["std"], dtype=np.float32),
        logits=logits,
        meta={k: v for k, v in props.items() if k not in meta},
        scale=255.0,
    )
