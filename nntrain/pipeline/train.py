"""``nntrain train``'s ending of the pipeline, for a new run and a resumed one alike: set-up, the run
directory, ``fit``, then the end of the run (``pipeline.finish``)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

from torch import nn

from nntrain.config import Config, load_config, to_yaml
from nntrain.errors import NntrainError, RunDirError
from nntrain.pipeline.setup import Setup, checkpoint_extra, setup
from nntrain.pipeline.tensorboard import require_tensorboard
from nntrain.runs.files import load_checkpoint
from nntrain.runs.rundir import RunDir
from nntrain.training import distributed
from nntrain.training.engine import History, fit
from nntrain.training.loadwatch import LoadWatch
from nntrain.training.threads import apply_threads

OnResult = Callable[[dict[str, Any]], None]


@dataclass
class _Start:
    """What a run trains from: a fresh model, or last.pt's state (``resume``)."""

    cfg: Config
    s: Setup
    run: RunDir | None  # None on torchrun ranks > 0: they train in step with rank 0 and write nothing
    model: nn.Module
    resume: dict[str, Any] | None = None


def train_run(
    cfg: Config,
    *,
    callbacks: Iterable[Any] = (),
    s: Setup | None = None,
    should_stop: Callable[[], bool] | None = None,
    on_result: OnResult | None = None,
) -> tuple[History, RunDir | None]:
    """A new run. ``on_result(summary)`` is called once summary.json is written, before the pictures
    are drawn (the CLI prints the result there, so the user sees it first)."""
    s = s or setup(cfg)
    cfg = s.cfg  # with the data settings model.weights fixed (working size, channels): what config.yaml keeps
    model = _ready(cfg, s)
    run = None
    if distributed.hooks().is_main:
        run = RunDir.create(cfg.output.runs_dir, cfg.output.run_name, config_yaml=to_yaml(cfg))
        run.lock()  # held until the process ends: no second writer
        run.save_checkpoint("init.pt", {"model": model.state_dict(), "epoch": 0, **checkpoint_extra(s)})
    return _train(_Start(cfg, s, run, model), callbacks, should_stop, on_result), run


def resume_run(
    run_dir: str | Path,
    *,
    callbacks: Iterable[Any] = (),
    should_stop: Callable[[], bool] | None = None,
    on_result: OnResult | None = None,
) -> tuple[History, RunDir | None, Config]:
    """Continue ``run_dir`` from its last.pt with its own config.yaml (``on_result``: as ``train_run``)."""
    path = Path(run_dir)
    if not (path / "config.yaml").is_file():
        raise RunDirError(f"--resume {run_dir}: not a run directory (no config.yaml); pass a directory under runs/")
    if distributed.hooks().is_main:  # torchrun's other ranks only read the run
        RunDir(path).lock()  # a second `train --resume` of this run refuses (exit 2) while this one writes
    cfg = load_config(path / "config.yaml")
    last = load_checkpoint(RunDir(path).require_last(run_dir))
    if last["epoch"] >= cfg.train.epochs or (path / "summary.json").is_file():
        raise NntrainError(f"--resume {run_dir}: this run already finished ({last['epoch']} epochs); start a new one")
    best = path / "best.pt"
    last["best_model"] = load_checkpoint(best)["model"] if best.is_file() and last["best_epoch"] > 0 else None
    s = setup(cfg, norm=last)
    model = _ready(cfg, s, fresh=False)  # last.pt's weights follow: model.weights is not read again
    run = RunDir(path) if distributed.hooks().is_main else None
    if run is not None:
        run.rewrite_metrics(last["history"]["records"])  # drop any row written after last.pt
    return _train(_Start(cfg, s, run, model, resume=last), callbacks, should_stop, on_result), run, cfg


def _ready(cfg: Config, s: Setup, *, fresh: bool = True) -> nn.Module:
    """What every run does before its directory exists: the thread count, optional extras, the model."""
    apply_threads(s.threads)
    if cfg.output.tensorboard:
        require_tensorboard()  # bad input: rejected before a run directory exists
    return s.new_model(pretrained=fresh)


def _train(start: _Start, callbacks: Iterable[Any], should_stop: Any, on_result: OnResult | None) -> History:
    from nntrain.data.augment import make_augment
    from nntrain.pipeline.tensorboard import TensorBoardLogger

    cfg, s, run = start.cfg, start.s, start.run
    callbacks = list(callbacks) if run is not None else []
    load = LoadWatch()  # says so when other processes slowed the run (never changes how it computes)
    tb = None
    if cfg.output.tensorboard and run is not None:
        tb = TensorBoardLogger(run.path / "tensorboard", start.model, s.data.input_shape)
    started = time.time()
    try:
        history = fit(
            start.model,
            s.data,
            cfg.train,
            seed=cfg.seed,
            device=s.device,
            callbacks=callbacks + [load] + ([tb] if tb else []),
            run=run,
            checkpoint_extra=checkpoint_extra(s),
            resume=start.resume,
            should_stop=should_stop,
            checkpoint_seconds=cfg.output.checkpoint_seconds,
            augment=make_augment(cfg.data.augment),
            ddp=distributed.hooks(),
            tta=cfg.eval.tta,
        )
    finally:
        if tb is not None:
            tb.close()
    if history.interrupted or run is None:
        return history
    from nntrain.pipeline.finish import draw_run_pictures, write_summary

    summary = write_summary(run, s, history, load_note=load.verdict(), started=started)
    if on_result is not None:
        on_result(summary)
    draw_run_pictures(run, history, s.data.classes)
    return history
