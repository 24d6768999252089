"""Reopening a finished run: its checkpoint, its model, its data (``nntrain eval``,
``plot-filters``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from nntrain.errors import CheckpointError, NntrainError, RunDirError
from nntrain.training.metrics import EvalResult, evaluate_classes


def resolve_checkpoint(path: str | Path, name: str = "best.pt") -> Path:
    """A run directory → its ``name`` checkpoint (``last.pt`` if there is no best); a file → itself."""
    p = Path(path)
    if p.is_dir():
        for candidate in (name, "last.pt"):
            if (p / candidate).is_file():
                return p / candidate
        raise RunDirError(f"'{p}' holds no {name} or last.pt; pass a run directory written by nntrain train")
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
        raise CheckpointError(
            f"checkpoint '{source}' does not match its own model config: {str(e).splitlines()[0]}"
        ) from None
    return model


def eval_run(run_dir: str | Path, *, split: str = "test", checkpoint: str = "best.pt") -> EvalResult:
    """Rebuild a run's data (same config and seed → same split) and evaluate its checkpoint on ``split``."""
    from nntrain.config import load_config
    from nntrain.pipeline.setup import setup
    from nntrain.runs.files import load_checkpoint

    run = Path(run_dir)
    if not (run / "config.yaml").is_file():
        raise RunDirError(
            f"'{run}' is not a run directory (no config.yaml); pass runs/<name>-<time> written by nntrain train"
        )
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
