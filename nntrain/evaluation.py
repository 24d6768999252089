"""Per-class evaluation of a trained model: predictions, confusion matrix, per-class accuracy;
and loading a finished run's model back from its checkpoint (``nntrain eval``, ``plot-filters``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from nntrain.data import Split
from nntrain.errors import CheckpointError, NntrainError


@dataclass
class EvalResult:
    split: str
    classes: tuple[str, ...]
    confusion: np.ndarray  # (C, C) int64: rows = true class, columns = predicted

    @property
    def n(self) -> int:
        return int(self.confusion.sum())

    @property
    def accuracy(self) -> float:
        return float(np.trace(self.confusion) / self.n) if self.n else float("nan")

    def per_class(self) -> list[dict[str, Any]]:
        """One row per class: samples, correct, accuracy (None for a class absent from the split)."""
        rows = []
        for i, name in enumerate(self.classes):
            n = int(self.confusion[i].sum())
            correct = int(self.confusion[i, i])
            rows.append({"class": name, "n": n, "correct": correct, "acc": correct / n if n else None})
        return rows


def predict(model: nn.Module, split: Split, *, batch_size: int = 1024, precision: Any = None) -> torch.Tensor:
    """(n,) predicted class indices (CPU) in eval mode; works for resident and streamed splits."""
    from nntrain.engine import Precision

    was_training = model.training
    model.eval()
    out = []
    with torch.inference_mode(), (precision or Precision()).autocast():  # as the engine's evaluate
        for xb, _ in split.eval_batches(batch_size):
            out.append(model(xb).argmax(1).cpu())
    model.train(was_training)
    return torch.cat(out) if out else torch.empty(0, dtype=torch.int64)


def evaluate_classes(model: nn.Module, split: Split, classes: tuple[str, ...], *, name: str,
                     batch_size: int = 1024) -> EvalResult:
    from sklearn.metrics import confusion_matrix

    pred = predict(model, split, batch_size=batch_size).numpy()
    cm = confusion_matrix(split.y.cpu().numpy(), pred, labels=np.arange(len(classes)))
    return EvalResult(name, tuple(classes), cm.astype(np.int64))


# --------------------------------------------------------------------------- finished runs


def resolve_checkpoint(path: str | Path, name: str = "best.pt") -> Path:
    """A run directory → its ``name`` checkpoint (``last.pt`` if there is no best); a file → itself."""
    p = Path(path)
    if p.is_dir():
        for candidate in (name, "last.pt"):
            if (p / candidate).is_file():
                return p / candidate
        raise CheckpointError(f"'{p}' holds no {name} or last.pt; pass a run directory written by nntrain train")
    if not p.exists():
        raise CheckpointError(f"'{p}' does not exist; pass a run directory (runs/<name>-<time>) or a .pt checkpoint")
    return p


def load_model(ckpt: dict[str, Any], source: Path) -> nn.Module:
    """Rebuild the checkpoint's model from its saved config and shapes, and load its weights."""
    from nntrain.config import ModelConfig
    from nntrain.models import build_model

    try:
        cfg = ModelConfig.model_validate(ckpt["config"]["model"])
        shape = tuple(int(v) for v in ckpt["input_shape"])
        num_classes = len(ckpt["classes"])
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(
            f"checkpoint '{source}' lacks the model config, input shape or classes ({e}); "
            "it was not written by nntrain train"
        ) from None
    model = build_model(cfg, shape, num_classes)
    try:
        model.load_state_dict(ckpt["model"])
    except RuntimeError as e:
        raise CheckpointError(f"checkpoint '{source}' does not match its own model config: {str(e).splitlines()[0]}") from None
    return model


def eval_run(run_dir: str | Path, *, split: str = "test", checkpoint: str = "best.pt") -> EvalResult:
    """Rebuild a run's data (same config and seed → same split) and evaluate its checkpoint on ``split``."""
    from nntrain.config import load_config
    from nntrain.pipeline import setup
    from nntrain.runs import load_checkpoint

    run = Path(run_dir)
    if not (run / "config.yaml").is_file():
        raise NntrainError(f"'{run}' is not a run directory (no config.yaml); pass runs/<name>-<time> written by nntrain train")
    path = resolve_checkpoint(run, checkpoint)
    ckpt = load_checkpoint(path)
    s = setup(load_config(run / "config.yaml"))
    if list(s.data.classes) != list(ckpt.get("classes", [])):
        raise CheckpointError(
            f"'{path}' was trained on classes {ckpt.get('classes')} but the run's data now has "
            f"{list(s.data.classes)}; the dataset changed since training"
        )
    data = getattr(s.data, split)
    if len(data) == 0:
        other = "val" if split == "test" else "test"
        raise NntrainError(f"the {split} split of '{run}' is empty (data.{split}_fraction: 0); use --split {other}")
    model = load_model(ckpt, path).to(s.device)
    return evaluate_classes(model, data, s.data.classes, name=split, batch_size=s.cfg.train.eval_batch_size)
