"""What ``last.pt`` holds (full training state) and how ``fit`` is put back from it."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import torch

from nntrain.models import load_weights
from nntrain.training.history import History


@dataclass
class EpochProgress:
    """Where an interrupted epoch stopped: enough to finish it exactly as if never stopped."""

    step: int  # SGD steps already taken this epoch
    step_losses: list[float]
    correct: int
    gen_start: torch.Tensor  # batch-order generator state before this epoch's permutation
    gen_now: torch.Tensor  # its state after step `step` (augmentation draws from it too)

    def to_dict(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "step_losses": torch.tensor(self.step_losses),
            "correct": self.correct,
            "gen_start": self.gen_start,
            "gen_now": self.gen_now,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EpochProgress:
        return cls(int(d["step"]), d["step_losses"].tolist(), int(d["correct"]), d["gen_start"], d["gen_now"])


def checkpoint_state(
    model, optimizer, scheduler, generator, epoch, history, extra, partial=None, ema=None
) -> dict[str, Any]:
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
        "history": {
            "records": history.records,
            "step_losses": torch.tensor(history.step_losses),
            "initial_loss": history.initial_loss,
            "advice": list(history.advice),  # what the advice rules said before an interruption
            "seconds": history.seconds,  # training time so far: a resumed run reports the whole of it
        },
        "rng": rng,
        "ema": ema.state_dict() if ema is not None else None,  # train.ema: the average, so resume is exact
        **(extra or {}),
    }


def restore_state(ckpt, model, optimizer, scheduler, generator, history, device):
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
    history.initial_loss = ckpt["history"].get("initial_loss")  # absent in a last.pt from before it was kept
    history.advice = list(ckpt["history"].get("advice", []))
    history.seconds = float(ckpt["history"].get("seconds", 0.0))
    history.best_epoch, history.best_val_acc = ckpt["best_epoch"], ckpt["best_val_acc"]
    best = ckpt.get("best_model")
    best_state = {k: v.to(device) for k, v in best.items()} if best is not None else None
    partial = EpochProgress.from_dict(ckpt["partial"]) if ckpt.get("partial") else None
    return best_state, partial


class Checkpointer:
    """Writes ``fit``'s ``last.pt`` (full training state) and ``best.pt`` (the best weights, when
    the best changed) into a run directory after the first epoch, then at most every ``every_seconds``
    unless forced (end of training, Ctrl-C/SIGTERM), never twice for the same state. The files are written by the run
    directory's background thread. Without a run directory (a torchrun rank > 0, cv folds) it
    writes nothing."""

    def __init__(
        self,
        run: Any,
        *,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        scheduler: Any,
        generator: torch.Generator,
        history: History,
        extra: dict[str, Any] | None = None,
        every_seconds: float = 0.0,
        ema: Any = None,
    ) -> None:
        self.run = run  # a RunDir or None
        self.training = (model, optimizer, scheduler, generator)  # what last.pt captures
        self.every_seconds = every_seconds
        self.ema = ema  # an ema.Ema or None
        self.extra = extra or {}
        self.history = history
        self.last_write = time.perf_counter()  # when last.pt was last written (perf_counter seconds)
        self.last_written = len(history.records)  # the epoch whose end state last.pt holds
        self.best_written = history.best_epoch  # the epoch whose weights best.pt holds

    def save(
        self,
        epoch_done: int,
        best_state: dict[str, torch.Tensor] | None,
        *,
        partial: EpochProgress | None = None,
        force: bool = False,
    ) -> None:
        """The state after ``epoch_done`` epochs (``partial``: plus an epoch in progress)."""
        h = self.history
        first = partial is None and epoch_done >= 1 and self.last_written == 0  # a short run's only chance to resume
        if self.run is None or (not (force or first) and time.perf_counter() - self.last_write < self.every_seconds):
            return
        if partial is None and epoch_done == self.last_written and h.best_epoch == self.best_written:
            return  # already on disk
        self.last_write, self.last_written = time.perf_counter(), epoch_done
        files = {"last.pt": checkpoint_state(*self.training, epoch_done, h, self.extra, partial, self.ema)}
        if best_state is not None and h.best_epoch != self.best_written:
            files["best.pt"] = {
                "model": best_state,
                "epoch": h.best_epoch,
                "best_epoch": h.best_epoch,
                "best_val_acc": h.best_val_acc,
                **self.extra,
            }
            self.best_written = h.best_epoch
        self.run.save_checkpoints_async(files)
