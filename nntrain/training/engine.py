"""The training loop: ``train_one_epoch``, ``evaluate``, ``fit``. No printing here —
progress goes to callbacks (console, run directory, diagnostics).

Hot-loop habits: data already normalized and resident on the device; a batch is an
index slice of a per-epoch permutation; losses and correct counts accumulate on the
device and are read back once per epoch (no ``.item()`` per step).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import torch
import torch.nn.functional as F
from torch import nn

from nntrain.config import TrainConfig
from nntrain.data.types import Prepared, Split
from nntrain.models import named_weights, reg_weights, regularization
from nntrain.training.callbacks import dispatch
from nntrain.training.checkpoint import EpochProgress, checkpoint_state, restore_state
from nntrain.training.device import Precision
from nntrain.training.optim import make_optimizer, make_scheduler

Augment = Callable[[torch.Tensor, torch.Generator | None], torch.Tensor]


@dataclass
class EpochStats:
    loss: float  # mean over samples of data loss + R(W)
    acc: float
    step_losses: list[float]  # one per SGD step (for the faint per-step curve)
    update_ratios: dict[str, float]  # layer → ‖ΔW‖/‖W‖ of the epoch's last step (healthy: ~1e-3)
    interrupted: EpochProgress | None = None  # set when should_stop() ended the epoch early


def train_one_epoch(
    model: nn.Module,
    split: Split,
    *,
    optimizer: torch.optim.Optimizer,
    batch_size: int,
    reg: float,
    generator: torch.Generator,
    precision: Precision | None = None,
    augment: Augment | None = None,
    progress: EpochProgress | None = None,
    should_stop: Callable[[], bool] | None = None,
    shard: Any = None,
    on_step: Callable[[int, int], None] | None = None,
) -> EpochStats:
    """One pass over ``split`` in random order. ``progress`` resumes an interrupted epoch;
    ``should_stop`` is polled after every step (a signal handler's flag: no host sync).
    ``shard`` (a ``distributed.Context``, under torchrun): train on this rank's chunk of
    every global batch; the returned stats are summed over ranks. ``on_step(steps_done, n_steps)``
    (Python ints: no host sync) follows every step, for progress displays."""
    model.train()
    precision = precision or Precision()
    n = len(split)
    device = split.device
    weights = reg_weights(model) if reg > 0 else []
    gen_start = progress.gen_start if progress else generator.get_state()
    generator.set_state(gen_start)
    perm = torch.randperm(n, generator=generator)  # CPU; the split moves it to its device
    n_steps = math.ceil(n / batch_size)
    step_losses = torch.empty(n_steps, device=device)  # filled on device, read once
    correct = torch.zeros((), dtype=torch.int64, device=device)
    first = 0
    if progress is not None:
        generator.set_state(progress.gen_now)
        first = progress.step
        restored = torch.tensor(progress.step_losses, device=device)
        step_losses[:first] = restored if shard is None else shard.own(restored)  # ddp: summed over ranks later
        correct += progress.correct if shard is None else shard.own(progress.correct)
    # in memory: index slices of the resident split; streaming: a DataLoader in the same order
    if shard is None:
        batches = split.train_batches(perm, batch_size, start=first)
    else:  # ---- distributed: this rank's chunk of each global batch
        batches = shard.batches(split, perm, batch_size, start=first)
    for step, (xb, yb) in enumerate(batches, start=first):  # (B, C, H, W), (B,)
        if augment is not None:
            xb = augment(xb, generator if shard is None else shard.augment_generator(generator))
        with precision.autocast():
            logits = model(xb)
            # ddp: Σ CE(chunk)·world/|batch|, so the gradient averaged over ranks is the batch mean's
            loss = F.cross_entropy(logits, yb) if shard is None else shard.data_loss(logits, yb, step)
        if weights:
            loss = loss + regularization(weights, reg)  # float32, outside autocast
        optimizer.zero_grad(set_to_none=True)
        if step == n_steps - 1:  # once per epoch: snapshot weights to measure the update size
            named = named_weights(model)
            before = {k: w.detach().clone() for k, w in named.items()}
        if precision.scaler is not None:
            precision.scaler.scale(loss).backward()
            precision.scaler.step(optimizer)
            precision.scaler.update()
        else:
            loss.backward()
            optimizer.step()
        step_losses[step] = loss.detach() if shard is None else loss.detach() / shard.world  # ddp: this rank's share
        correct += (logits.detach().argmax(1) == yb).sum()
        if on_step is not None:
            on_step(step + 1, n_steps)
        if should_stop is not None and step < n_steps - 1 and should_stop():
            if shard is not None:  # ddp: the position's losses and counts, summed over ranks
                shard.reduce(step_losses[: step + 1]), shard.reduce(correct)
            done = step_losses[: step + 1].tolist()
            at = EpochProgress(step + 1, done, int(correct), gen_start, generator.get_state())
            return EpochStats(math.nan, math.nan, done, {}, interrupted=at)
    with torch.no_grad():
        ratios = torch.stack([(w - before[k]).norm() / w.norm().clamp_min(1e-12) for k, w in named.items()])
    sizes = torch.full((n_steps,), float(batch_size))
    sizes[-1] = n - (n_steps - 1) * batch_size
    if shard is not None:  # ddp: every rank gets the global batches' losses and the epoch's correct count
        shard.reduce(step_losses), shard.reduce(correct)
    losses = step_losses.cpu()  # the one host sync of the epoch
    mean_loss = float((losses * sizes).sum() / n)
    return EpochStats(mean_loss, correct.item() / n, losses.tolist(), dict(zip(named, ratios.tolist())))


def evaluate(
    model: nn.Module,
    split: Split,
    *,
    batch_size: int = 1024,
    reg: float = 0.0,
    precision: Precision | None = None,
) -> tuple[float, float]:
    """(mean loss incl. R(W), accuracy) over ``split`` in eval mode; NaNs for an empty split."""
    n = len(split)
    if n == 0:
        return math.nan, math.nan
    precision = precision or Precision()
    was_training = model.training
    model.eval()
    loss_sum = torch.zeros((), device=split.device)
    correct = torch.zeros((), dtype=torch.int64, device=split.device)
    with torch.inference_mode():
        for xb, yb in split.eval_batches(batch_size):
            with precision.autocast():
                logits = model(xb)
            loss_sum += F.cross_entropy(logits.float(), yb, reduction="sum")
            correct += (logits.argmax(1) == yb).sum()
        r = float(regularization(reg_weights(model), reg)) if reg > 0 else 0.0
    model.train(was_training)
    return loss_sum.item() / n + r, correct.item() / n


@dataclass
class History:
    records: list[dict[str, Any]] = field(default_factory=list)  # one per epoch: METRIC_COLUMNS + update ratios
    step_losses: list[float] = field(default_factory=list)  # every SGD step, all epochs
    best_epoch: int = 0
    best_val_acc: float = math.nan
    test_loss: float = math.nan
    test_acc: float = math.nan
    stopped: str | None = None  # why training ended before train.epochs (early stop, divergence)
    diverged: bool = False
    interrupted: str | None = None  # set when should_stop() ended training; last.pt can resume it
    seconds: float = 0.0
    initial_loss: float | None = None  # the loss at initialization (advice), kept in last.pt across resume


def fit(
    model: nn.Module,
    data: Prepared,
    cfg: TrainConfig,
    *,
    seed: int,
    device: torch.device,
    callbacks: Iterable[Any] = (),
    run: Any = None,
    checkpoint_extra: dict[str, Any] | None = None,
    augment: Augment | None = None,
    resume: dict[str, Any] | None = None,
    should_stop: Callable[[], bool] | None = None,
    checkpoint_seconds: float = 0.0,
    ddp: Any = None,
) -> History:
    """Train ``model`` on ``data.train``, select by val accuracy, test the best once.

    ``ddp`` (a ``distributed.Context``, under torchrun): train with DistributedDataParallel on
    this rank's chunk of every global batch; only rank 0 should get ``run`` and callbacks.

    ``run`` (a ``RunDir``) receives ``last.pt`` (full training state) and ``best.pt`` (the
    best weights) every epoch, or at most every ``checkpoint_seconds``, and at the end.
    ``resume`` is a ``last.pt`` dict (plus ``best_model``: best.pt's weights) to continue
    from, exactly where it stopped. ``should_stop`` is polled every step; when it turns
    true, ``last.pt`` records the position and ``History.interrupted`` is set.
    """
    callbacks = list(callbacks) + ([run] if run is not None else [])
    raw = model.to(device)
    if ddp is not None:  # ---- distributed: SyncBatchNorm on CUDA; every rank stops at the same step
        raw, should_stop = ddp.prepare(raw), ddp.agreed_stop(should_stop)
    train, val, test = data.train, data.val, data.test
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed shapes: let cuDNN pick the fastest kernels
        if any(isinstance(m, nn.Conv2d) for m in raw.modules()):
            raw = raw.to(memory_format=torch.channels_last)
            train, val, test = (s.channels_last() for s in (train, val, test))
    optimizer = make_optimizer(raw, cfg.optimizer)
    scheduler = make_scheduler(optimizer, cfg)
    precision = Precision.create(cfg.amp, device)
    generator = torch.Generator().manual_seed(seed)  # batch order; CPU so CPU/CUDA runs see the same order
    history = History()
    best_state: dict[str, torch.Tensor] | None = None
    progress: EpochProgress | None = None
    if resume is not None:
        best_state, progress = restore_state(resume, raw, optimizer, scheduler, generator, history, device)
    net = torch.compile(raw) if cfg.compile else raw
    train_net = net
    if ddp is not None:  # ---- distributed: gradients all-reduced in backward; eval uses the plain module
        train_net = torch.compile(ddp.wrap(raw)) if cfg.compile else ddp.wrap(raw)
    since_best = len(history.records) - history.best_epoch
    t_fit = time.perf_counter()
    # "history" lets a callback read what has been recorded so far (e.g. every step's loss)
    info = {
        "epochs": cfg.epochs,
        "device": str(device),
        "n_train": len(train),
        "history": history,
        "start_epoch": len(history.records) + 1,
        "layers": list(named_weights(raw)),
        "run_dir": getattr(run, "path", None),
        # what a callback needs to measure the loss at initialization (advice.initial_loss)
        "model": raw,
        "train": train,
        "batch_size": cfg.batch_size,
        "reg": cfg.reg,
        "num_classes": data.num_classes,
    }
    dispatch(callbacks, "on_fit_start", info)
    steppers = [cb.on_step for cb in callbacks if hasattr(cb, "on_step")]  # progress inside an epoch

    def on_step(step: int, n_steps: int) -> None:
        for f in steppers:
            f(step, n_steps)

    last_write = time.perf_counter()  # when last.pt was last written (perf_counter seconds)
    last_written = len(history.records)  # the epoch whose end state last.pt holds
    best_written = history.best_epoch  # the epoch whose weights best.pt holds

    def save(epoch_done: int, partial: EpochProgress | None = None, force: bool = False) -> None:
        """last.pt (+ best.pt when the best changed), at most every ``checkpoint_seconds``
        unless forced (end of training, Ctrl-C/SIGTERM). Written by a background thread."""
        nonlocal last_write, last_written, best_written
        if run is None or (not force and time.perf_counter() - last_write < checkpoint_seconds):
            return
        if partial is None and epoch_done == last_written and history.best_epoch == best_written:
            return  # already on disk
        last_write, last_written = time.perf_counter(), epoch_done
        files = {
            "last.pt": checkpoint_state(
                raw, optimizer, scheduler, generator, epoch_done, history, checkpoint_extra, partial
            )
        }
        if best_state is not None and history.best_epoch != best_written:
            files["best.pt"] = {
                "model": best_state,
                "epoch": history.best_epoch,
                "best_epoch": history.best_epoch,
                "best_val_acc": history.best_val_acc,
                **(checkpoint_extra or {}),
            }
            best_written = history.best_epoch
        run.save_checkpoints_async(files)

    for epoch in range(len(history.records) + 1, cfg.epochs + 1):
        t0 = time.perf_counter()
        lr = optimizer.param_groups[0]["lr"]
        stats = train_one_epoch(
            train_net,
            train,
            optimizer=optimizer,
            batch_size=cfg.batch_size,
            reg=cfg.reg,
            generator=generator,
            precision=precision,
            augment=augment,
            progress=progress,
            should_stop=should_stop,
            shard=ddp,
            on_step=on_step if steppers else None,
        )
        progress = None
        if stats.interrupted is not None:
            save(epoch - 1, stats.interrupted, force=True)
            history.interrupted = f"interrupted in epoch {epoch}, after step {stats.interrupted.step}"
            break
        val_loss, val_acc = evaluate(net, val, batch_size=cfg.eval_batch_size, reg=cfg.reg, precision=precision)
        scheduler.step()
        record = {
            "epoch": epoch,
            "train_loss": stats.loss,
            "train_acc": stats.acc,
            "val_loss": val_loss,
            "val_acc": val_acc,
            "lr": lr,
            "seconds": time.perf_counter() - t0,
            **{f"update_ratio.{k}": v for k, v in stats.update_ratios.items()},
        }
        # a callback's verdict before the best-model decision: a diverging epoch never becomes best.pt
        veto = dispatch(callbacks, "on_epoch_metrics", record)
        if ddp is not None:  # rank 0's callbacks decide for every rank
            veto = ddp.agree(veto)
        diverged = not math.isfinite(stats.loss) or (veto is not None and veto.diverged)
        # no val split (NaN accuracy): the last finite epoch is "best"
        improved = not diverged and (best_state is None or math.isnan(val_acc) or val_acc > history.best_val_acc)
        record["best"] = improved
        history.records.append(record)
        history.step_losses.extend(stats.step_losses)
        if improved:
            history.best_epoch, history.best_val_acc, since_best = epoch, val_acc, 0
            best_state = {k: v.detach().clone() for k, v in raw.state_dict().items()}
        else:
            since_best += 1
        save(epoch)  # checkpoint first, then the metrics row (queued behind it)
        stop = dispatch(callbacks, "on_epoch_end", record)
        stop = (stop if ddp is None else ddp.agree(stop)) or veto

        if diverged:
            history.diverged = True
            history.stopped = (
                veto.reason
                if veto is not None and veto.diverged
                else (
                    f"diverged: train loss is {stats.loss} at epoch {epoch}; lower train.optimizer.lr "
                    f"(now {cfg.optimizer.lr:g}) or train.reg"
                )
            )
            break
        if stop is not None:
            history.stopped, history.diverged = stop.reason, stop.diverged
            break
        if cfg.patience is not None and since_best >= cfg.patience:
            history.stopped = f"early stop: val accuracy has not improved for {cfg.patience} epochs"
            break
        if should_stop is not None and should_stop() and epoch < cfg.epochs:
            history.interrupted = f"interrupted after epoch {epoch}"
            break

    if not (history.interrupted and history.interrupted.startswith("interrupted in epoch")):
        save(len(history.records), force=True)  # the final state, whatever ended training
    history.seconds = time.perf_counter() - t_fit
    if history.interrupted:
        dispatch(callbacks, "on_fit_end", history)
        if ddp is not None:  # ranks exit 130 only once rank 0's last.pt is on disk: torchrun then ends them all
            ddp.barrier()
        return history
    if best_state is not None:
        raw.load_state_dict(best_state)
    history.test_loss, history.test_acc = evaluate(
        net, test, batch_size=cfg.eval_batch_size, reg=cfg.reg, precision=precision
    )
    dispatch(callbacks, "on_fit_end", history)
    return history
