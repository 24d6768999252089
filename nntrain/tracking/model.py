"""The best model as an MLflow model (the ``pytorch`` flavor, loadable by ``mlflow.pytorch`` and
``mlflow.pyfunc``): raw pixel values in, class probabilities out, computed as ``nntrain predict``
computes them (the train split's normalization, eval.tta, softmax); classes and normalization in its
metadata, input and output shapes in its signature."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from nntrain.data.types import normalize


class Probabilities(nn.Module):
    """(N, C, H, W) float32 raw pixel values (as the images hold them) → (N, classes) probabilities."""

    def __init__(self, net: nn.Module, mean: torch.Tensor, std: torch.Tensor):
        super().__init__()
        self.net = net
        self.register_buffer("mean", mean.float())
        self.register_buffer("std", std.float())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.net(normalize(x, self.mean, self.std)).float(), dim=1)


def save_model(run_dir: Path, path: Path) -> None:
    """Write the run's best.pt as an MLflow model directory at ``path``."""
    import mlflow.pytorch
    from mlflow.models import ModelSignature
    from mlflow.types import Schema, TensorSpec

    import nntrain
    from nntrain.pipeline.reopen import read_checkpoint
    from nntrain.training.metrics import checkpoint_tta, with_tta

    _, ckpt, model = read_checkpoint(run_dir)
    mean, std = (torch.as_tensor(np.asarray(ckpt[k], dtype=np.float32)) for k in ("norm_mean", "norm_std"))
    wrapped = Probabilities(with_tta(model, checkpoint_tta(ckpt)), mean, std).eval()
    shape = tuple(int(v) for v in ckpt["input_shape"])
    classes = [str(c) for c in ckpt["classes"]]
    signature = ModelSignature(
        inputs=Schema([TensorSpec(np.dtype(np.float32), (-1, *shape))]),
        outputs=Schema([TensorSpec(np.dtype(np.float32), (-1, len(classes)))]),
    )
    import inspect

    # pickle: the whole module, TTA wrapper included (MLflow 3's default pt2 needs a traceable graph)
    fmt = (
        {"serialization_format": "pickle"}
        if "serialization_format" in inspect.signature(mlflow.pytorch.save_model).parameters
        else {}
    )
    import logging

    # its pickle caution, once per run, says nothing the docs do not (docs/tracking.md)
    logging.getLogger("mlflow.pytorch").setLevel(logging.ERROR)
    mlflow.pytorch.save_model(
        wrapped,
        str(path),
        signature=signature,
        # explicit: inferring them would load the model again in a subprocess
        pip_requirements=[f"torch=={torch.__version__.split('+')[0]}", f"nntrain=={nntrain.__version__}"],
        metadata={
            "classes": classes,
            "input": "float32 (N, C, H, W) raw pixel values, as the images hold them (no normalization)",
            "output": "class probabilities, in the order of 'classes'",
            "norm_mean": mean.tolist(),
            "norm_std": std.tolist(),
            "epoch": int(ckpt.get("epoch", 0)),
            "tta": checkpoint_tta(ckpt),
        },
        **fmt,
    )
