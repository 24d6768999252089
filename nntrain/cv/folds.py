"""k-fold cross-validation: the folds, one fold's training, and the refit.

The pool is train+val of the holdout split; test is never touched (only ``refit``
evaluates on it, once). One (trial, fold) job is a plain dict — config, fold index,
dataset indices — and ``run_fold`` turns it into a plain-dict result, so any executor
(``local.py``, ``ray_cluster.py``) can map jobs. ``search.py`` drives the trials.
"""

from __future__ import annotations

import functools
import math
import shutil
from typing import Any, Callable, Iterable

import numpy as np

from nntrain.config import Config, DataConfig, override, to_yaml
from nntrain.cv.plan import Plan
from nntrain.cv.store import CvDir, json_text
from nntrain.data.splits import stratified_kfold
from nntrain.runs.files import atomic_write_text
from nntrain.runs.rundir import RunDir
from nntrain.training.metrics import predict, with_tta

FOLD_FIELDS = (
    "fold",
    "n_train",
    "n_val",
    "best_val_acc",
    "best_epoch",
    "val_loss",
    "seconds",
    "epochs_run",
    "stopped",
    "diverged",
    "val_acc_curve",
    "val_loss_curve",
    "oof_hits",
)


# --------------------------------------------------------------------------- folds


def fold_seed(seed: int, fold: int) -> int:
    """Initialization and batch-order seed of one fold: from (seed, fold), same for every combination."""
    return int(np.random.SeedSequence([seed, fold]).generate_state(1)[0])


@functools.lru_cache(maxsize=2)
def _load(data_json: str):
    from nntrain.data.registry import load_dataset

    return load_dataset(DataConfig.model_validate_json(data_json))


def dataset_for(cfg: Config):
    """The dataset, loaded once per process (every fold of every combination shares it)."""
    return _load(cfg.data.model_dump_json())


def pool_folds(cfg: Config, k: int) -> tuple[np.ndarray, np.ndarray, list[tuple[np.ndarray, np.ndarray]]]:
    """(pool, test, [(train, val)] × k): dataset indices; pool = holdout train+val, stratified folds of it."""
    from nntrain.data.splits import make_splits

    ds = dataset_for(cfg)
    splits = make_splits(ds, cfg)
    pool = np.sort(np.concatenate([splits.train, splits.val]))
    pairs = stratified_kfold(ds.y.numpy()[pool], k, seed=cfg.seed)
    return pool, splits.test, [(pool[tr], pool[va]) for tr, va in pairs]


def check(plan: Plan, *, device_here: bool = True) -> list[tuple[np.ndarray, np.ndarray]]:
    """Everything that can reject bad input, before any training: device (``device_here``: the folds
    train on this machine, not on a Ray cluster), folds, every model."""
    from nntrain.models import build_model
    from nntrain.training.device import resolve_device

    if device_here:
        resolve_device(plan.base.device)
    _, _, folds = pool_folds(plan.base, plan.folds)  # K < 2 or K > smallest class: DataError
    ds = dataset_for(plan.base)
    from nntrain.cv.space import check_space
    from nntrain.pipeline.setup import check_crop
    from nntrain.training.loss import check_class_weights

    for combo in check_space(plan.base, plan.grid, plan.space):  # e.g. too many conv stages for the image size
        cfg = override(plan.base, combo)
        check_crop(cfg.data.augment.crop_padding, ds.input_shape)
        check_class_weights(cfg.train, ds.num_classes)
        build_model(cfg.model, ds.input_shape, ds.num_classes)
    return folds


def fold_job(
    cfg: Config,
    trial: int,
    fold: int,
    train_idx: np.ndarray,
    val_idx: np.ndarray,
    prune: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One (trial, fold) job as plain data (``combo`` = the trial number: its directory and progress lines).
    ``prune`` (fold 0 of a search with a pruner, ``pruning.spec``): the job reports each epoch to a copy of
    the study and stops when its pruner says so."""
    return {
        "config": cfg.model_dump(mode="json"),
        "combo": trial,
        "fold": fold,
        "train_idx": train_idx.tolist(),
        "val_idx": val_idx.tolist(),
        "prune": prune,
    }


class _Progress:
    """fit callback inside a job: forwards which combination/fold/epoch is running."""

    def __init__(self, report: Callable[[dict], None], combo: int, fold: int):
        self.report, self.ids, self.epochs = report, {"combo": combo, "fold": fold}, 0

    def on_fit_start(self, info: dict[str, Any]) -> None:
        self.epochs = info["epochs"]
        self.report({**self.ids, "event": "start", "epochs": self.epochs, "n_train": info["n_train"]})

    def on_epoch_end(self, r: dict[str, Any]) -> None:
        self.report(
            {
                **self.ids,
                "event": "epoch",
                "epoch": r["epoch"],
                "epochs": self.epochs,
                "train_loss": r["train_loss"],
                "val_acc": r["val_acc"],
            }
        )


def run_fold(job: dict[str, Any], report: Callable[[dict], None] | None = None) -> dict[str, Any]:
    """Train a fresh model on one fold; return its metrics and out-of-fold predictions (plain data)."""
    import torch

    from nntrain.data.memory import prepare
    from nntrain.models import build_model
    from nntrain.pipeline.pretrained import apply_start, start_for, start_stats
    from nntrain.training.device import resolve_device
    from nntrain.training.engine import fit, run_precision

    cfg = Config.model_validate(job["config"])
    device = resolve_device(cfg.device)
    ds = dataset_for(cfg)
    val_idx = np.asarray(job["val_idx"], dtype=np.int64)
    start = start_for(cfg)
    train_idx = np.asarray(job["train_idx"], dtype=np.int64)
    data = prepare(ds, train_idx, val_idx, np.empty(0, np.int64), device, stats=start_stats(start, ds))
    seed = fold_seed(cfg.seed, job["fold"])
    torch.manual_seed(seed)  # fresh weights per fold: nothing leaks from another fold
    model = build_model(cfg.model, data.input_shape, data.num_classes)
    if start is not None:  # model.weights: every fold starts from the same pretrained weights
        apply_start(model, start, cfg.model.name, data.classes)
    from nntrain.training.advice import Diagnostics

    diag = Diagnostics(cfg.diagnostics)  # train's rules, kept in the fold result (nothing printed)
    callbacks = ([_Progress(report, job["combo"], job["fold"])] if report else []) + [diag]
    check = None
    if job.get("prune") is not None:
        from nntrain.cv.pruning import PruneCheck

        check = PruneCheck(job["prune"])
        callbacks.append(check)
    h = fit(model, data, cfg.train, seed=seed, device=device, callbacks=callbacks, tta=cfg.eval.tta)
    model.eval()  # fit left the best epoch's weights in ``model``
    pred = predict(
        with_tta(model, cfg.eval.tta),
        data.val,
        batch_size=cfg.train.eval_batch_size,
        precision=run_precision(cfg.train, model, data.input_shape, device),  # as fit trained it
    )
    best = h.records[h.best_epoch - 1] if h.best_epoch else {"val_loss": math.nan}
    return {
        "combo": job["combo"],
        "fold": job["fold"],
        "n_train": len(data.train),
        "n_val": len(data.val),
        "best_val_acc": h.best_val_acc,
        "best_epoch": h.best_epoch,
        "val_loss": best["val_loss"],
        "seconds": h.seconds,
        "epochs_run": len(h.records),
        "stopped": h.stopped,
        "diverged": h.diverged,
        "pruned_step": check.pruned_step if check is not None else None,  # fold 0 stopped by the pruner there
        "advice": [a.as_dict() for a in diag.advice],
        "val_acc_curve": [r["val_acc"] for r in h.records],
        "val_loss_curve": [r["val_loss"] for r in h.records],
        "oof_hits": int(sum(t == p for t, p in zip(ds.y[val_idx].tolist(), pred.tolist()))),
        "records": [{k: v for k, v in r.items() if k != "best"} for r in h.records],
        "oof": {"index": val_idx.tolist(), "y_true": ds.y[val_idx].tolist(), "y_pred": pred.tolist()},
    }


def refit(
    plan: Plan, params: dict[str, Any], epochs: int, cvdir: CvDir, *, callbacks: Iterable[Any] = ()
) -> dict[str, Any]:
    """Train ``params`` on the whole pool for ``epochs`` (the epoch its cv score was taken at; no val:
    the last epoch is kept) and test it once."""
    import torch

    from nntrain.data.memory import prepare
    from nntrain.models import build_model
    from nntrain.pipeline.pretrained import apply_start, start_for, start_stats
    from nntrain.pipeline.setup import Setup, checkpoint_extra
    from nntrain.training.device import resolve_device
    from nntrain.training.engine import fit

    cfg = override(plan.base, {**params, "train.epochs": max(1, epochs)})
    pool, test, _ = pool_folds(cfg, plan.folds)
    device = resolve_device(cfg.device)
    ds = dataset_for(cfg)
    start = start_for(cfg)
    data = prepare(ds, pool, np.empty(0, np.int64), test, device, stats=start_stats(start, ds))
    out = cvdir.path / "refit"
    if out.exists():  # an interrupted refit from an earlier attempt: start it again
        shutil.rmtree(out)
    out.mkdir()
    atomic_write_text(out / "config.yaml", to_yaml(cfg))
    run = RunDir(out)
    extra = checkpoint_extra(Setup(cfg, device, ds, data))
    # torch.__version__ is a TorchVersion object, which weights_only loading refuses: keep plain str
    extra["versions"] = {k: str(v) for k, v in extra["versions"].items()}
    torch.manual_seed(cfg.seed)
    model = build_model(cfg.model, data.input_shape, data.num_classes)
    if start is not None:
        apply_start(model, start, cfg.model.name, data.classes)
    h = fit(
        model,
        data,
        cfg.train,
        seed=cfg.seed,
        device=device,
        callbacks=callbacks,
        run=run,
        checkpoint_extra=extra,
        tta=cfg.eval.tta,
    )
    summary = {
        "params": params,
        "test_acc": h.test_acc,
        "test_loss": h.test_loss,
        "n_train": len(data.train),
        "n_test": len(data.test),
        "epochs_run": len(h.records),
        "train_seconds": h.seconds,
        "diverged": h.diverged,
        "run_dir": str(out),
    }
    atomic_write_text(out / "summary.json", json_text(summary))
    return summary
