"""``nntrain train``'s ending of the pipeline: a run directory, ``fit``, the summary; and
resuming an interrupted run from its ``last.pt``."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable

import torch

from nntrain.config import Config, load_config, to_yaml
from nntrain.data.stats import split_class_counts
from nntrain.errors import NntrainError, RunDirError
from nntrain.pipeline.setup import Setup, checkpoint_extra, setup, versions
from nntrain.pipeline.tensorboard import require_tensorboard
from nntrain.runs.files import load_checkpoint
from nntrain.runs.rundir import RunDir
from nntrain.training import distributed
from nntrain.training.engine import History, fit
from nntrain.training.loadwatch import LoadWatch
from nntrain.training.metrics import with_tta
from nntrain.training.threads import apply_threads, drop_to_one_thread

if TYPE_CHECKING:
    from nntrain.pipeline.drawer import PictureWorker


def train_run(
    cfg: Config,
    *,
    callbacks: Iterable[Any] = (),
    s: Setup | None = None,
    should_stop: Callable[[], bool] | None = None,
    pictures: PictureWorker | None = None,
) -> tuple[History, RunDir]:
    """A new run. ``pictures``: the helper process drawing its PNGs (``pipeline.drawer``); the caller
    then calls ``pictures.finish()`` before reading them. Without it they are drawn before returning."""
    s = s or setup(cfg)
    apply_threads(s.threads)
    if cfg.output.tensorboard:
        require_tensorboard()  # bad input: reject before a run directory exists
    model = s.new_model()
    if not distributed.hooks().is_main:  # torchrun rank > 0: trains in step with rank 0, writes nothing
        return _fit_and_summarize(cfg, s, model, None, (), should_stop, resume=None), None
    run = RunDir.create(cfg.output.runs_dir, cfg.output.run_name, config_yaml=to_yaml(cfg))
    run.save_checkpoint("init.pt", {"model": model.state_dict(), "epoch": 0, **checkpoint_extra(s)})  # --compare-init
    return _fit_and_summarize(cfg, s, model, run, callbacks, should_stop, resume=None, pictures=pictures), run


def resume_run(
    run_dir: str | Path,
    *,
    callbacks: Iterable[Any] = (),
    should_stop: Callable[[], bool] | None = None,
    pictures: PictureWorker | None = None,
) -> tuple[History, RunDir, Config]:
    """Continue ``run_dir`` from its last.pt with its own config.yaml (``pictures``: as ``train_run``)."""
    run = RunDir(Path(run_dir))
    if not (run.path / "config.yaml").is_file():
        raise RunDirError(f"--resume {run_dir}: not a run directory (no config.yaml); pass a directory under runs/")
    cfg = load_config(run.path / "config.yaml")
    last = load_checkpoint(run.path / "last.pt")
    if last["epoch"] >= cfg.train.epochs or (run.path / "summary.json").is_file():
        raise NntrainError(f"--resume {run_dir}: this run already finished ({last['epoch']} epochs); start a new one")
    best = run.path / "best.pt"
    last["best_model"] = load_checkpoint(best)["model"] if best.is_file() and last["best_epoch"] > 0 else None
    s = setup(cfg)
    apply_threads(s.threads)
    if cfg.output.tensorboard:
        require_tensorboard()
    model = s.new_model()
    if not distributed.hooks().is_main:  # torchrun rank > 0: same last.pt, writes nothing
        return _fit_and_summarize(cfg, s, model, None, (), should_stop, resume=last), None, cfg
    run.rewrite_metrics(last["history"]["records"])  # drop any row written after last.pt
    return _fit_and_summarize(cfg, s, model, run, callbacks, should_stop, resume=last, pictures=pictures), run, cfg


def _fit_and_summarize(cfg, s, model, run, callbacks, should_stop, *, resume, pictures=None) -> History:
    from nntrain.pipeline.tensorboard import TensorBoardLogger

    callbacks = list(callbacks)
    tb = None
    if cfg.output.tensorboard and run is not None:
        tb = TensorBoardLogger(run.path / "tensorboard", model, s.data.input_shape)
    t0 = time.time()
    # threads: auto — an epoch slowed by other load sends the rest of the run to one thread
    load = LoadWatch(
        one_thread=drop_to_one_thread if cfg.threads == "auto" else None,
        # steps timed only when every step does the same work: in memory (a streamed step can wait for its data)
        threaded=s.device.type == "cpu" and torch.get_num_threads() > 1 and not s.dataset.stream,
    )
    from nntrain.data.augment import make_augment

    try:
        history = fit(
            model,
            s.data,
            cfg.train,
            seed=cfg.seed,
            device=s.device,
            callbacks=list(callbacks) + [load] + ([tb] if tb else []),
            run=run,
            checkpoint_extra=checkpoint_extra(s),
            resume=resume,
            should_stop=should_stop,
            checkpoint_seconds=cfg.output.checkpoint_seconds,
            augment=make_augment(cfg.data.augment),
            ddp=distributed.hooks(),
            tta=cfg.eval.tta,
        )
    finally:
        if tb is not None:
            tb.close()
    if history.interrupted or run is None:  # run is None: a torchrun rank > 0
        return history
    from nntrain.pipeline.artifacts import write_run_pictures

    # fit left the best model in ``model``: its test confusion matrix and per-class accuracy
    net = with_tta(model, cfg.eval.tta)  # the test predictions as fit made them
    result = write_run_pictures(run, history, net, s.data, batch_size=cfg.train.eval_batch_size, pictures=pictures)
    per_class = {
        "per_class_test": result.per_class() if result is not None else None,
        # mean per-class recall: accuracy that each class counts in equally (imbalanced test sets)
        "test_balanced_acc": result.balanced_accuracy if result is not None else None,
        "test_recall": result.recall() if result is not None else None,  # {class: recall or null}
    }
    # advice: the Diagnostics callback's, as fit's history keeps it (across a resume too);
    # load_note: other processes slowed the run (or None)
    notes = {"advice": list(history.advice), "load_note": load.verdict()}
    run.write_json("summary.json", {**summary(cfg, s, history, started=t0), **per_class, **notes})
    return history


def summary(cfg: Config, s: Setup, h: History, *, started: float) -> dict[str, Any]:
    return {
        "best_val_acc": h.best_val_acc,  # NaN → null in summary.json
        "best_epoch": h.best_epoch,
        "test_acc": h.test_acc,  # NaN → null in summary.json
        "test_loss": h.test_loss,  # NaN → null in summary.json
        "epochs_run": len(h.records),
        "stopped": h.stopped,
        "diverged": h.diverged,
        "train_seconds": h.seconds,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(started)),
        "seed": cfg.seed,
        "device": str(s.device),
        "threads": torch.get_num_threads(),
        "world_size": distributed.hooks().world,  # torchrun processes
        "dataset": cfg.data.dataset,
        "split_sizes": {"train": len(s.data.train), "val": len(s.data.val), "test": len(s.data.test)},
        "classes": list(s.data.classes),
        "class_counts": split_class_counts(s.data),
        "data_notes": list(s.dataset.notes),
        "command": sys.argv,
        **versions(),
    }
