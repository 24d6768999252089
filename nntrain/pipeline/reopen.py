"""Reopening a finished run: its checkpoint, its model, its data (``nntrain eval``,
``plot-filters``, ``plot-curves``, ``predict``, ``export``)."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any, Iterator

import torch
from torch import nn

from nntrain.errors import CheckpointError, NntrainError, RunDirError
from nntrain.plots import Curves
from nntrain.training.metrics import EvalResult, evaluate_classes


def resolve_checkpoint(path: str | Path, name: str = "best.pt") -> Path:
    """A run directory → its ``name`` checkpoint; a file → itself. A run without it is refused, never silently
    read from another checkpoint: the message says how to use its ``last.pt`` on purpose."""
    p = Path(path)
    if p.is_dir():
        if (p / name).is_file():
            return p / name
        if (p / "last.pt").is_file():
            raise RunDirError(
                f"'{p}' holds no {name}, only last.pt (the run stopped before it kept a best model); resume it "
                f"(nntrain train --resume {p}) or pass '{p / 'last.pt'}' to use its last weights"
            )
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


def read_checkpoint(source: str | Path, name: str = "best.pt") -> tuple[Path, dict[str, Any], nn.Module]:
    """A run directory or ``.pt`` file → (checkpoint path, checkpoint dict (weights_only), its model in eval
    mode on the CPU)."""
    from nntrain.runs.files import load_checkpoint

    path = resolve_checkpoint(source, name)
    ckpt = load_checkpoint(path)
    return path, ckpt, load_model(ckpt, path).eval()


def split_batches(
    ckpt: dict[str, Any], batch_size: int
) -> tuple[str, int, Iterator[tuple[torch.Tensor, torch.Tensor]]]:
    """Rebuild only the test split (the val split if the test split is empty) of the checkpoint's run, from its
    saved config (same seed → same split), normalized with the checkpoint's train statistics: bit-identical to
    what training evaluated, without preparing the other splits. → (split name, its size, CPU batches (x, y))."""
    from nntrain.config import Config
    from nntrain.data.registry import load_dataset
    from nntrain.data.splits import make_splits
    from nntrain.data.streaming import fetch
    from nntrain.data.types import normalize

    cfg = Config.model_validate({**ckpt["config"], "device": "cpu"})
    ds = load_dataset(cfg.data)
    if list(ds.classes) != list(ckpt.get("classes", [])):
        raise CheckpointError(
            f"the checkpoint was trained on classes {ckpt.get('classes')} but the run's data now has "
            f"{list(ds.classes)}; the dataset changed since training"
        )
    splits = make_splits(ds, cfg)
    name = "test" if len(splits.test) else "val"
    idx = getattr(splits, name)
    mean = torch.tensor(ckpt["norm_mean"], dtype=torch.float32)
    std = torch.tensor(ckpt["norm_std"], dtype=torch.float32)

    def batches() -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for start in range(0, len(idx), batch_size):
            i = idx[start : start + batch_size]
            raw = fetch(ds.x, i.tolist()) if ds.stream else ds.x[torch.as_tensor(i, dtype=torch.int64)]
            yield normalize(raw, mean, std), ds.y[torch.as_tensor(i, dtype=torch.int64)]

    return name, len(idx), batches()


def eval_run(run_dir: str | Path, *, split: str = "test", checkpoint: str = "best.pt") -> EvalResult:
    """Rebuild a run's data (same config and seed → same split) and evaluate its checkpoint on ``split``."""
    from nntrain.config import load_config
    from nntrain.pipeline.setup import setup, split_fingerprints

    run = Path(run_dir)
    if not (run / "config.yaml").is_file():
        raise RunDirError(
            f"'{run}' is not a run directory (no config.yaml); pass runs/<name>-<time> written by nntrain train"
        )
    path, ckpt, model = read_checkpoint(run, checkpoint)
    cfg = load_config(run / "config.yaml")
    _same_model(ckpt, cfg.model.model_dump(mode="json"), path, run)
    s = setup(cfg, norm=ckpt)  # normalized as the checkpoint was trained
    if list(s.data.classes) != list(ckpt.get("classes", [])):
        raise CheckpointError(
            f"'{path}' was trained on classes {ckpt.get('classes')} but the run's data now has "
            f"{list(s.data.classes)}; the dataset changed since training"
        )
    _same_data(ckpt.get("data_sha256"), split_fingerprints(s), run)
    data = getattr(s.data, split)
    if len(data) == 0:
        other = "val" if split == "test" else "test"
        raise NntrainError(f"the {split} split of '{run}' is empty (data.{split}_fraction: 0); use --split {other}")
    model = model.to(s.device)
    return evaluate_classes(model, data, s.data.classes, name=split, batch_size=s.cfg.train.eval_batch_size)


def _same_model(ckpt: dict[str, Any], model_cfg: dict[str, Any], path: Path, run: Path) -> None:
    """The checkpoint's model must be the one the run's config.yaml describes."""
    saved = (ckpt.get("config") or {}).get("model") if isinstance(ckpt.get("config"), dict) else None
    if not isinstance(saved, dict):
        return  # load_model names what is missing
    diff = [
        f"model.{k}: {saved.get(k)!r} in the checkpoint, {v!r} in config.yaml"
        for k, v in model_cfg.items()
        if saved.get(k) != v
    ]
    if diff:
        raise CheckpointError(
            f"'{path}' holds a different model than the run's config.yaml ({'; '.join(diff[:3])}); "
            f"it was not trained by the run '{run.resolve().name}': put back the run's own checkpoint"
        )


def _same_data(saved: dict[str, Any] | None, now: dict[str, Any], run: Path) -> None:
    """Refuse to evaluate when a split's samples differ from the ones recorded at training time."""
    if not isinstance(saved, dict):
        return  # a checkpoint written before fingerprints were recorded
    changed = [
        f"{name} split: {saved[name].get('n')} samples at training, {now[name]['n']} now"
        + ("" if saved[name].get("n") != now[name]["n"] else " but different ones")
        for name in now
        if isinstance(saved.get(name), dict) and saved[name].get("sha256") != now[name]["sha256"]
    ]
    if changed:
        raise NntrainError(
            f"the data of '{run.resolve().name}' changed since training ({'; '.join(changed)}): files were added, "
            "removed, renamed or edited, so the splits are not the ones the run saw; restore the data as it was, "
            "or train a new run"
        )


def read_curves(run_dir: str | Path) -> Curves:
    """A finished run's epoch records (metrics.csv) and step losses (steps.csv, if present)."""
    run = Path(run_dir)
    metrics = run / "metrics.csv"
    if not metrics.is_file():
        raise RunDirError(f"'{run}' has no metrics.csv; pass a run directory written by nntrain train")
    try:
        with open(metrics, newline="") as f:
            records = [{k: _num(v) for k, v in row.items()} for row in csv.DictReader(f)]
        steps: list[float] = []
        if (run / "steps.csv").is_file():
            with open(run / "steps.csv", newline="") as f:
                steps = [_num(row["loss"]) for row in csv.DictReader(f)]
    except (OSError, KeyError, ValueError, csv.Error) as e:
        raise RunDirError(f"cannot read the metrics of '{run}': {e}; the run directory is damaged") from None
    if not records:
        raise RunDirError(f"'{run}/metrics.csv' has no epochs yet; wait for the run's first epoch")
    return Curves(run.resolve().name, records, steps, test_acc=_test_acc(run))


def _test_acc(run: Path) -> float | None:
    """The run's test accuracy from summary.json (None when absent or unreadable: the title says so)."""
    try:
        v = json.loads((run / "summary.json").read_text()).get("test_acc")
        return float(v) if v is not None else None
    except (OSError, ValueError, TypeError, AttributeError):
        return None


def _num(v: str | None) -> float:
    if v is None or v == "":
        return math.nan
    return float(v)
