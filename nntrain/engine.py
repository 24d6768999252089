"""The training loop: ``train_one_epoch``, ``evaluate``, ``fit``. No printing here —
progress goes to callbacks (console, run directory, diagnostics).

Hot-loop habits: data already normalized and resident on the device; a batch is an
index slice of a per-epoch permutation; losses and correct counts accumulate on the
device and are read back once per epoch (no ``.item()`` per step).
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import torch
import torch.nn.functional as F
from torch import nn

from nntrain.config import OptimizerConfig, TrainConfig
from nntrain.data import Prepared, Split
from nntrain.errors import ConfigError
from nntrain.models import load_weights, named_weights, reg_weights, regularization

Augment = Callable[[torch.Tensor, torch.Generator | None], torch.Tensor]


# --------------------------------------------------------------------------- setup


def resolve_device(spec: str) -> torch.device:
    """auto → CUDA when available, else CPU; an explicit CUDA request must be satisfiable."""
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(spec)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"device: {spec!r} requested but CUDA is not available here; use device: auto or cpu")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ConfigError(
                f"device: {spec!r} but only {torch.cuda.device_count()} CUDA device(s) exist; use cuda:0..cuda:{torch.cuda.device_count() - 1}"
            )
    return dev


def make_optimizer(model: nn.Module, cfg: OptimizerConfig) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if cfg.name == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov)
    if cfg.name == "adam":
        return torch.optim.Adam(params, lr=cfg.lr)
    if cfg.name == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.0)  # R(W) lives in the loss
    return torch.optim.RMSprop(params, lr=cfg.lr, momentum=cfg.momentum)


def make_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig) -> torch.optim.lr_scheduler.LRScheduler:
    """Stepped once per epoch."""
    if cfg.lr_schedule == "step":  # the lecture's learning_rate_decay: lr ×= decay every epoch
        return torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=cfg.lr_decay)
    if cfg.lr_schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=cfg.epochs)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _epoch: 1.0)


@dataclass
class Precision:
    """Autocast settings; AMP runs on CUDA only (CPU trains in float32)."""

    dtype: torch.dtype | None = None
    scaler: torch.amp.GradScaler | None = None

    @classmethod
    def create(cls, amp: str, device: torch.device) -> "Precision":
        if device.type != "cuda" or amp == "off":
            return cls()
        if amp == "bf16":
            return cls(torch.bfloat16)
        return cls(torch.float16, torch.amp.GradScaler("cuda"))

    def autocast(self):
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast("cuda", dtype=self.dtype)


# --------------------------------------------------------------------------- loops


@dataclass
class EpochProgress:
    """Where an interrupted epoch stopped: enough to finish it exactly as if never stopped."""

    step: int  # SGD steps already taken this epoch
    step_losses: list[float]
    correct: int
    gen_start: torch.Tensor  # batch-order generator state before this epoch's permutation
    gen_now: torch.Tensor  # its state after step `step` (augmentation draws from it too)

    def to_dict(self) -> dict[str, Any]:
        return {"step": self.step, "step_losses": torch.tensor(self.step_losses), "correct": self.correct,
                "gen_start": self.gen_start, "gen_now": self.gen_now}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "EpochProgress":
        return cls(int(d["step"]), d["step_losses"].tolist(), int(d["correct"]), d["gen_start"], d["gen_now"])


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
) -> EpochStats:
    """One pass over ``split`` in random order. ``progress`` resumes an interrupted epoch;
    ``should_stop`` is polled after every step (a signal handler's flag: no host sync).
    ``shard`` (a ``distributed.Context``, under torchrun): train on this rank's chunk of
    every global batch; the returned stats are summed over ranks."""
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


# --------------------------------------------------------------------------- fit


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


class StopTraining(Exception):
    """Raised by a callback's ``on_epoch_metrics`` or ``on_epoch_end`` to end training after
    this epoch.

    ``fit`` still gives the epoch's record to every other callback, restores the best
    model and tests it; ``diverged=True`` marks the run as diverged (the CLI exits 1).
    Raised from ``on_epoch_metrics`` (called before the best-model decision), a diverged
    verdict also keeps this epoch out of ``best.pt``.
    """

    def __init__(self, reason: str, *, diverged: bool = False):
        super().__init__(reason)
        self.reason = reason
        self.diverged = diverged


def _call(callbacks: Iterable[Any], hook: str, *args: Any) -> StopTraining | None:
    """Call ``hook`` on every callback; the first ``StopTraining`` raised is returned."""
    stop = None
    for cb in callbacks:
        fn = getattr(cb, hook, None)
        if fn is not None:
            try:
                fn(*args)
            except StopTraining as e:
                stop = stop or e
    return stop


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
        best_state, progress = _restore(resume, raw, optimizer, scheduler, generator, history, device)
    net = torch.compile(raw) if cfg.compile else raw
    train_net = net
    if ddp is not None:  # ---- distributed: gradients all-reduced in backward; eval uses the plain module
        train_net = torch.compile(ddp.wrap(raw)) if cfg.compile else ddp.wrap(raw)
    since_best = len(history.records) - history.best_epoch
    t_fit = time.perf_counter()
    # "history" lets a callback read what has been recorded so far (e.g. every step's loss)
    info = {"epochs": cfg.epochs, "device": str(device), "n_train": len(train), "history": history,
            "start_epoch": len(history.records) + 1, "layers": list(named_weights(raw))}
    _call(callbacks, "on_fit_start", info)

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
        files = {"last.pt": _checkpoint(raw, optimizer, scheduler, generator, epoch_done, history, checkpoint_extra, partial)}
        if best_state is not None and history.best_epoch != best_written:
            files["best.pt"] = {"model": best_state, "epoch": history.best_epoch, "best_epoch": history.best_epoch,
                                "best_val_acc": history.best_val_acc, **(checkpoint_extra or {})}
            best_written = history.best_epoch
        run.save_checkpoints_async(files)

    for epoch in range(len(history.records) + 1, cfg.epochs + 1):
        t0 = time.perf_counter()
        lr = optimizer.param_groups[0]["lr"]
        stats = train_one_epoch(
            train_net, train, optimizer=optimizer, batch_size=cfg.batch_size, reg=cfg.reg, generator=generator,
            precision=precision, augment=augment, progress=progress, should_stop=should_stop, shard=ddp,
        )
        progress = None
        if stats.interrupted is not None:
            save(epoch - 1, stats.interrupted, force=True)
            history.interrupted = f"interrupted in epoch {epoch}, after step {stats.interrupted.step}"
            break
        val_loss, val_acc = evaluate(net, val, batch_size=cfg.eval_batch_size, reg=cfg.reg, precision=precision)
        scheduler.step()
        record = {
            "epoch": epoch, "train_loss": stats.loss, "train_acc": stats.acc,
            "val_loss": val_loss, "val_acc": val_acc, "lr": lr, "seconds": time.perf_counter() - t0,
            **{f"update_ratio.{k}": v for k, v in stats.update_ratios.items()},
        }
        # a callback's verdict before the best-model decision: a diverging epoch never becomes best.pt
        veto = _call(callbacks, "on_epoch_metrics", record)
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
        stop = _call(callbacks, "on_epoch_end", record)
        stop = (stop if ddp is None else ddp.agree(stop)) or veto

        if diverged:
            history.diverged = True
            history.stopped = veto.reason if veto is not None and veto.diverged else (
                f"diverged: train loss is {stats.loss} at epoch {epoch}; lower train.optimizer.lr "
                f"(now {cfg.optimizer.lr:g}) or train.reg"
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
        _call(callbacks, "on_fit_end", history)
        if ddp is not None:  # ranks exit 130 only once rank 0's last.pt is on disk: torchrun then ends them all
            ddp.barrier()
        return history
    if best_state is not None:
        raw.load_state_dict(best_state)
    history.test_loss, history.test_acc = evaluate(net, test, batch_size=cfg.eval_batch_size, reg=cfg.reg, precision=precision)
    _call(callbacks, "on_fit_end", history)
    return history


def _checkpoint(model, optimizer, scheduler, generator, epoch, history, extra, partial=None) -> dict[str, Any]:
    rng = {"torch": torch.get_rng_state(), "batches": generator.get_state()}
    if torch.cuda.is_available():
        rng["cuda"] = torch.cuda.get_rng_state_all()
    return {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "epoch": epoch,  # completed epochs
        "partial": partial.to_dict() if partial is not None else None,  # an epoch in progress
        "best_epoch": history.best_epoch,
        "best_val_acc": history.best_val_acc,
        "history": {"records": history.records, "step_losses": torch.tensor(history.step_losses)},
        "rng": rng,
        **(extra or {}),
    }


def _restore(ckpt, model, optimizer, scheduler, generator, history, device):
    """Put model, optimizer, scheduler, RNGs and history back where ``ckpt`` left them."""
    load_weights(model, ckpt["model"], source="last.pt")
    optimizer.load_state_dict(ckpt["optimizer"])
    scheduler.load_state_dict(ckpt["scheduler"])
    torch.set_rng_state(ckpt["rng"]["torch"])
    generator.set_state(ckpt["rng"]["batches"])
    if device.type == "cuda" and "cuda" in ckpt["rng"]:
        torch.cuda.set_rng_state_all(ckpt["rng"]["cuda"])
    history.records = [dict(r) for r in ckpt["history"]["records"]]
    history.step_losses = ckpt["history"]["step_losses"].tolist()
    history.best_epoch, history.best_val_acc = ckpt["best_epoch"], ckpt["best_val_acc"]
    best = ckpt.get("best_model")
    best_state = {k: v.to(device) for k, v in best.items()} if best is not None else None
    partial = EpochProgress.from_dict(ckpt["partial"]) if ckpt.get("partial") else None
    return best_state, partial
