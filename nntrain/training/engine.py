"""The training loop: ``train_one_epoch``, ``evaluate``, ``fit``. No printing here —
progress goes to callbacks (console, run directory, diagnostics).

Hot-loop habits: data already normalized and resident on the device; a batch is an
index slice of a per-epoch permutation; losses and correct counts accumulate on the
device and are read back once per epoch (no ``.item()`` per step).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable

import torch
from torch import nn

from nntrain.config import TrainConfig
from nntrain.data.types import Prepared, Split
from nntrain.models import named_weights, reg_weights, regularization
from nntrain.models.backbones import set_frozen
from nntrain.runs.rundir import RunDir
from nntrain.training.callbacks import Callback, dispatch
from nntrain.training.checkpoint import Checkpointer, EpochProgress, restore_state
from nntrain.training.device import Precision
from nntrain.training.distributed import Hooks, SingleProcess
from nntrain.training.ema import Ema
from nntrain.training.history import History
from nntrain.training.loss import Criterion
from nntrain.training.metrics import SplitOutputs, with_tta
from nntrain.training.optim import make_optimizer, make_scheduler
from nntrain.training.threads import step_macs

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
    shard: Hooks | None = None,
    on_step: Callable[[int, int], None] | None = None,
    criterion: Criterion | None = None,
    after_step: Callable[[], None] | None = None,
) -> EpochStats:
    """One pass over ``split`` in random order. ``progress`` resumes an interrupted epoch;
    ``should_stop`` is polled after every step (a signal handler's flag: no host sync).
    ``shard`` (a ``distributed.Context``, under torchrun): train on this rank's chunk of
    every global batch; the returned stats are summed over ranks (default: the whole batch).
    ``on_step(steps_done, n_steps)`` (Python ints: no host sync) follows every step, for progress displays.
    ``criterion``: the data loss (default: plain cross-entropy); ``after_step`` follows every optimizer step
    (the EMA update)."""
    shard = shard or SingleProcess()
    criterion = criterion or Criterion()
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
        step_losses[:first] = shard.own(torch.tensor(progress.step_losses, device=device))  # ddp: summed later
        correct += shard.own(progress.correct)
    # in memory: index slices of the resident split; streaming: a DataLoader in the same order;
    # ddp: this rank's chunk of each global batch
    batches = shard.batches(split, perm, batch_size, start=first)
    for step, (xb, yb) in enumerate(batches, start=first):  # (B, C, H, W), (B,)
        if augment is not None:
            xb = augment(xb, shard.augment_generator(generator))
        with precision.autocast():
            logits = model(xb)
        # the loss in float32, outside autocast; ddp: Σ CE(chunk)·world/|batch|, so the gradient averaged
        # over ranks is the batch mean's
        loss = shard.data_loss(logits.float(), yb, step, criterion)
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
        if after_step is not None:
            after_step()
        step_losses[step] = shard.step_share(loss)  # ddp: this rank's share
        correct += (logits.detach().argmax(1) == yb).sum()
        if on_step is not None:
            on_step(step + 1, n_steps)
        if should_stop is not None and step < n_steps - 1 and should_stop():
            shard.reduce(step_losses[: step + 1]), shard.reduce(correct)  # ddp: summed over ranks
            done = step_losses[: step + 1].tolist()
            at = EpochProgress(step + 1, done, int(correct), gen_start, generator.get_state())
            return EpochStats(math.nan, math.nan, done, {}, interrupted=at)
    with torch.no_grad():  # a frozen layer did not take a step: NaN, which no advice rule reads as "too small"
        ratios = torch.stack(
            [
                (w - before[k]).norm() / w.norm().clamp_min(1e-12) if w.requires_grad else w.new_tensor(math.nan)
                for k, w in named.items()
            ]
        )
    sizes = torch.full((n_steps,), float(batch_size))
    sizes[-1] = n - (n_steps - 1) * batch_size
    shard.reduce(step_losses), shard.reduce(correct)  # ddp: every rank gets the global batches' losses, correct
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
    criterion: Criterion | None = None,
    keep: bool = False,
) -> tuple[float, float] | SplitOutputs:
    """(mean loss incl. R(W), accuracy) over ``split`` in eval mode; NaNs for an empty split.
    ``criterion``: the data loss, its weighted mean over the whole split (default: plain cross-entropy).
    ``keep``: return the per-sample outputs too (``SplitOutputs``: the end of a run reads its test split once)."""
    criterion = criterion or Criterion()
    n = len(split)
    if n == 0:
        return SplitOutputs.empty() if keep else (math.nan, math.nan)
    precision = precision or Precision()
    was_training = model.training
    model.eval()
    loss_sum = torch.zeros((), device=split.device)
    norm = torch.zeros((), device=split.device)
    correct = torch.zeros((), dtype=torch.int64, device=split.device)
    kept: list[tuple[torch.Tensor, torch.Tensor]] = []  # (per-sample log-probabilities, labels)
    with torch.inference_mode():
        for xb, yb in split.eval_batches(batch_size):
            with precision.autocast():
                logits = model(xb).float()
            loss_sum += criterion.sum(logits, yb)
            norm += criterion.norm(yb)
            correct += (logits.argmax(1) == yb).sum()
            if keep:
                kept.append((logits.log_softmax(1).cpu(), yb.cpu()))
        r = float(regularization(reg_weights(model), reg)) if reg > 0 else 0.0
    model.train(was_training)
    loss, acc = (loss_sum / norm).item() + r, correct.item() / n
    if not keep:
        return loss, acc
    return SplitOutputs.of(torch.cat([lp for lp, _ in kept]), torch.cat([y for _, y in kept]), loss=loss, acc=acc)


def fit(
    model: nn.Module,
    data: Prepared,
    cfg: TrainConfig,
    *,
    seed: int,
    device: torch.device,
    callbacks: Iterable[Callback] = (),
    run: RunDir | None = None,
    checkpoint_extra: dict[str, Any] | None = None,
    augment: Augment | None = None,
    resume: dict[str, Any] | None = None,
    should_stop: Callable[[], bool] | None = None,
    checkpoint_seconds: float = 0.0,
    ddp: Hooks | None = None,
    tta: str = "none",
) -> History:
    """Train ``model`` on ``data.train``, select by val accuracy, test the best once.

    ``ddp`` (a ``distributed.Context``, under torchrun): train with DistributedDataParallel on
    this rank's chunk of every global batch; only rank 0 should get ``run`` and callbacks.
    Default: ``SingleProcess()``, the same hooks as no-ops.

    ``run`` (a ``RunDir``) receives ``last.pt`` (full training state) and ``best.pt`` (the
    best weights) every epoch, or at most every ``checkpoint_seconds``, and at the end.
    ``resume`` is a ``last.pt`` dict (plus ``best_model``: best.pt's weights) to continue
    from, exactly where it stopped. ``should_stop`` is polled every step; when it turns
    true, ``last.pt`` records the position and ``History.interrupted`` is set.

    Recipes (each off by default): ``cfg.class_weights`` / ``cfg.label_smoothing`` shape the data loss
    (training and evaluation alike); ``cfg.ema``: the weights' moving average is what val/test evaluate and
    best.pt keeps (its state in last.pt); ``tta="flip"``: val/test average each image and its mirror.
    """
    ddp = ddp or SingleProcess()
    callbacks = list(callbacks) + ([run] if run is not None else [])
    # ddp: SyncBatchNorm on CUDA; every rank stops at the same step
    raw, should_stop = ddp.prepare(model.to(device)), ddp.agreed_stop(should_stop)
    raw, (train, val, test) = _layout(raw, (data.train, data.val, data.test), device, ddp.world, cfg.channels_last)
    optimizer = make_optimizer(raw, cfg.optimizer, cfg.backbone_lr)
    scheduler = make_scheduler(optimizer, cfg)
    precision = run_precision(cfg, raw, data.input_shape, device)
    generator = torch.Generator().manual_seed(seed)  # batch order; CPU so CPU/CUDA runs see the same order
    criterion = Criterion.create(cfg, data.train.y, data.num_classes, device)
    history = History(precision=precision.name, precision_reason=precision.reason)
    best_state: dict[str, torch.Tensor] | None = None
    progress: EpochProgress | None = None
    if resume is not None:
        best_state, progress = restore_state(resume, raw, optimizer, scheduler, generator, history, device)
    ema = Ema(raw, cfg.ema) if cfg.ema is not None else None  # after the resumed weights: a copy of them
    if ema is not None and resume is not None and resume.get("ema") is not None:
        ema.load_state_dict(resume["ema"])
    net = torch.compile(raw) if cfg.compile else raw  # evaluation: the plain module
    wrapped = ddp.wrap(raw)  # ddp: gradients all-reduced in backward
    train_net = net if wrapped is raw else (torch.compile(wrapped) if cfg.compile else wrapped)
    val_net = with_tta(ema.module if ema is not None else net, tta)  # what selects the best epoch
    best_source = ema.module if ema is not None else raw  # the weights best.pt keeps
    checkpointer = Checkpointer(
        run,
        model=raw,
        optimizer=optimizer,
        scheduler=scheduler,
        generator=generator,
        history=history,
        extra=checkpoint_extra,
        every_seconds=checkpoint_seconds,
        ema=ema,
    )
    since_best = len(history.records) - history.best_epoch
    t_fit = time.perf_counter()
    before = history.seconds  # resumed: the training time of the earlier segments (last.pt keeps it)
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

    for epoch in range(len(history.records) + 1, cfg.epochs + 1):
        t0 = time.perf_counter()
        set_frozen(raw, epoch <= cfg.freeze_epochs)  # frozen epochs train the head only (resume: the same rule)
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
            criterion=criterion,
            after_step=(lambda: ema.update(raw)) if ema is not None else None,
        )
        progress = None
        if stats.interrupted is not None:
            checkpointer.save(epoch - 1, best_state, partial=stats.interrupted, force=True)
            history.interrupted = f"interrupted in epoch {epoch}, after step {stats.interrupted.step}"
            break
        val_loss, val_acc = evaluate(
            val_net, val, batch_size=cfg.eval_batch_size, reg=cfg.reg, precision=precision, criterion=criterion
        )
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
        # a callback's verdict before the best-model decision: a diverging epoch never becomes best.pt;
        # ddp: rank 0's callbacks decide for every rank
        veto = ddp.agree(dispatch(callbacks, "on_epoch_metrics", record))
        diverged = not math.isfinite(stats.loss) or (veto is not None and veto.diverged)
        # no val split (NaN accuracy): the last finite epoch is "best"
        improved = not diverged and (best_state is None or math.isnan(val_acc) or val_acc > history.best_val_acc)
        record["best"] = improved
        history.records.append(record)
        history.step_losses.extend(stats.step_losses)
        if improved:
            history.best_epoch, history.best_val_acc, since_best = epoch, val_acc, 0
            best_state = {k: v.detach().clone() for k, v in best_source.state_dict().items()}
        else:
            since_best += 1
        history.seconds = before + time.perf_counter() - t_fit
        checkpointer.save(epoch, best_state)  # checkpoint first, then the metrics row (queued behind it)
        stop = ddp.agree(dispatch(callbacks, "on_epoch_end", record)) or veto
        if diverged:
            history.diverged = True
            history.stopped = veto.reason if veto is not None and veto.diverged else _diverged(stats.loss, epoch, cfg)
        elif stop is not None:
            history.stopped, history.diverged = stop.reason, stop.diverged
        elif cfg.patience is not None and since_best >= cfg.patience:
            history.stopped = f"early stop: val accuracy has not improved for {cfg.patience} epochs"
        elif should_stop is not None and should_stop() and epoch < cfg.epochs:
            history.interrupted = f"interrupted after epoch {epoch}"
        else:
            continue  # the next epoch
        break

    set_frozen(raw, False)  # the model the caller gets back trains whole
    if not (history.interrupted and history.interrupted.startswith("interrupted in epoch")):
        checkpointer.save(len(history.records), best_state, force=True)  # the final state, whatever ended training
    history.seconds = before + time.perf_counter() - t_fit
    if history.interrupted:
        dispatch(callbacks, "on_fit_end", history)
        ddp.barrier()  # ddp: ranks exit 130 only once rank 0's last.pt is on disk: torchrun then ends them all
        return history
    if best_state is not None:
        raw.load_state_dict(best_state)
    elif ema is not None:  # no finite epoch: the caller still gets the average
        raw.load_state_dict(ema.module.state_dict())
    # the test split once, in float32: the numbers of the weights best.pt keeps, as eval, predict and exports see them
    history.test = evaluate(
        with_tta(net, tta),
        test,
        batch_size=cfg.eval_batch_size,
        reg=cfg.reg,
        criterion=criterion,
        keep=True,
    )
    history.test_loss, history.test_acc = history.test.loss, history.test.acc
    dispatch(callbacks, "on_fit_end", history)
    return history


def run_precision(cfg: TrainConfig, model: nn.Module, input_shape: tuple, device: torch.device) -> Precision:
    """The precision ``fit`` trains ``model`` in (train.amp; auto on the CPU weighs a step's work)."""
    macs = step_macs(model, input_shape, cfg.batch_size) if cfg.amp == "auto" and device.type == "cpu" else None
    return Precision.create(cfg.amp, device, macs)


def _layout(
    model: nn.Module, splits: tuple[Split, ...], device: torch.device, world: int = 1, mode: str = "auto"
) -> tuple[nn.Module, tuple]:
    """``train.channels_last`` for conv nets (model and splits). auto: on CUDA (with cuDNN autotuning: fixed
    shapes, let cuDNN pick the fastest kernels) and on the CPU, where PyTorch's convolutions, batch norm and
    pooling run faster on it (docs/speed.md), except under torchrun on the CPU: there each
    rank runs a chunk of the global batch, and a run on several processes equals one process on the same
    batches only if a convolution's result does not depend on the batch size, which holds for the
    contiguous layout."""
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    if mode == "off" or (mode == "auto" and device.type != "cuda" and world > 1):
        return model, splits
    if any(isinstance(m, nn.Conv2d) for m in model.modules()):
        return model.to(memory_format=torch.channels_last), tuple(s.channels_last() for s in splits)
    return model, splits


def _diverged(loss: float, epoch: int, cfg: TrainConfig) -> str:
    return (
        f"diverged: train loss is {loss} at epoch {epoch}; lower train.optimizer.lr "
        f"(now {cfg.optimizer.lr:g}) or train.reg"
    )
