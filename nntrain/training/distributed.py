"""Data-parallel training under ``torchrun`` (DistributedDataParallel).

``torchrun --nproc_per_node=N -m nntrain train --config F`` starts N copies of the CLI;
torchrun sets ``WORLD_SIZE``/``RANK``/``LOCAL_RANK`` (and the rendezvous address) in
their environment. ``init_from_env`` turns that into a process group (gloo on CPU, nccl
on CUDA with one GPU per rank: ``cuda:LOCAL_RANK``) and a ``Context`` that ``engine.fit``
uses through a few delimited hooks:

- ``train.batch_size`` is the **global** batch: every rank draws the same epoch
  permutation from the seeded generator, cuts each global batch of B samples into
  ``world`` contiguous chunks (sizes differ by at most one) and trains on its chunk.
- Each rank's loss is ``Σ CE(shard) · world / |batch| + R(W)``; DDP averages the
  gradients over ranks, which gives exactly ``mean CE(batch) + R(W)``'s gradient — the
  single-process step, whatever the chunk sizes.
- Per-step losses and correct counts are summed over ranks once per epoch, so every rank
  records the same epoch metrics; val/test are evaluated on the whole split by every
  rank (small, and no collective inside ``evaluate``).
- Only rank 0 has the run directory and the console; a callback's verdict (divergence,
  early stop) is broadcast from rank 0, and a stop request (Ctrl-C/SIGTERM, which the
  torchrun agent forwards to every rank) is agreed by all ranks after every step.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import torch
from torch import nn

from nntrain.errors import ConfigError
from nntrain.training.loss import Criterion

_current: Context | None = None


@dataclass
class Context:
    rank: int
    world: int
    local_rank: int
    device: torch.device
    backend: str  # "gloo" (CPU) or "nccl" (CUDA)
    ctrl: Any = None  # a gloo group for control messages (stop flags, verdicts): never syncs the GPU
    _sizes: list[int] = field(default_factory=list, repr=False)
    _batch: list[Any] = field(default_factory=list, repr=False)  # each step's global batch indices
    _y: Any = field(default=None, repr=False)  # the split's labels

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    # ------------------------------------------------------------------ setup

    def check(self, batch_size: int) -> None:
        """The global batch must give every rank at least one sample."""
        if batch_size < self.world:
            raise ConfigError(
                f"train.batch_size: {batch_size} is the global batch (split over {self.world} ranks); "
                f"it must be at least {self.world}: raise it or start fewer processes"
            )

    def prepare(self, model: nn.Module) -> nn.Module:
        """BatchNorm → SyncBatchNorm on CUDA, so batch statistics cover the global batch.
        (SyncBatchNorm has no CPU kernel: on gloo each rank normalizes by its own chunk.)"""
        if self.device.type == "cuda":
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)  # same Parameters: the optimizer is unaffected
        return model

    def wrap(self, model: nn.Module) -> nn.Module:
        """DDP around ``model`` (after any resume). Ranks > 0 also fork their torch RNG from the
        (same) state they start with, so dropout draws differ between ranks."""
        from torch.nn.parallel import DistributedDataParallel as DDP

        if not self.is_main:
            seed = int(torch.randint(0, 2**62, (1,)))
            torch.manual_seed(hash((seed, self.rank)) & (2**62 - 1))
        ids = [self.device.index] if self.device.type == "cuda" else None
        return DDP(model, device_ids=ids, gradient_as_bucket_view=True)

    # ------------------------------------------------------------------ one epoch

    def batches(
        self, split: Any, perm: torch.Tensor, batch_size: int, start: int = 0
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """This rank's chunk of global batches ``start, start+1, ...`` of the epoch order ``perm``."""
        n = len(split)
        steps = range(start, math.ceil(n / batch_size))
        self._sizes = [0] * start + [min(batch_size, n - s * batch_size) for s in steps]  # global batch sizes
        self._y = split.y  # the global batches' labels, for a class-weighted loss's normalizer
        self._batch = [None] * start + [perm[s * batch_size : (s + 1) * batch_size].to(split.y.device) for s in steps]
        chunks = [torch.tensor_split(perm[s * batch_size : (s + 1) * batch_size], self.world)[self.rank] for s in steps]
        return split.index_batches(chunks)

    def data_loss(
        self, logits: torch.Tensor, yb: torch.Tensor, step: int, criterion: Criterion | None = None
    ) -> torch.Tensor:
        """Σ CE over the chunk × world / |global batch|: DDP's gradient average then equals the mean CE's.
        With class weights: Σ w·CE over the chunk × world / Σ w over the global batch (its labels are known
        to every rank: same permutation, whole split)."""
        criterion = criterion or Criterion()
        norm = self._sizes[step] if criterion.weight is None else criterion.norm(self._y[self._batch[step]])
        return criterion.sum(logits, yb) * (self.world / norm)

    def augment_generator(self, generator: torch.Generator) -> torch.Generator:
        """A per-rank generator for this step's augmentation, seeded by one draw from the shared
        batch-order generator: every rank advances that one identically (same next permutation,
        same state in last.pt) while each chunk gets its own random crops/flips."""
        seed = int(torch.randint(0, 2**62, (1,), generator=generator))
        return torch.Generator().manual_seed(hash((seed, self.rank)) & (2**62 - 1))

    def own(self, value: Any) -> Any:
        """A summed-over-ranks quantity restored from last.pt: rank 0 holds it, the others zero."""
        if self.is_main:
            return value
        return torch.zeros_like(value) if isinstance(value, torch.Tensor) else 0  # (not value*0: NaN*0 is NaN)

    def reduce(self, t: torch.Tensor) -> torch.Tensor:
        """Sum over ranks, in place."""
        import torch.distributed as dist

        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return t

    def step_share(self, loss: torch.Tensor) -> torch.Tensor:
        """This rank's share of the step's loss (the per-step losses are summed over ranks once per epoch)."""
        return loss.detach() / self.world

    # ------------------------------------------------------------------ agreement

    def agreed_stop(self, should_stop: Callable[[], bool] | None) -> Callable[[], bool] | None:
        """Every rank stops at the same step if any rank was asked to stop (signals arrive at
        slightly different times): one tiny all-reduce on the control group per poll."""
        if should_stop is None:
            return None
        import torch.distributed as dist

        def agreed() -> bool:
            flag = torch.tensor([1 if should_stop() else 0], dtype=torch.int32)
            dist.all_reduce(flag, op=dist.ReduceOp.MAX, group=self.ctrl)
            return bool(flag.item())

        return agreed

    def agree(self, stop: Any) -> Any:
        """Rank 0's callbacks decide (they are the only ones): send its StopTraining (or None) to all."""
        import torch.distributed as dist

        from nntrain.training.callbacks import StopTraining

        box = [(stop.reason, stop.diverged) if stop is not None else None]
        dist.broadcast_object_list(box, src=0, group=self.ctrl)
        return None if box[0] is None else (stop if self.is_main else StopTraining(box[0][0], diverged=box[0][1]))

    def barrier(self) -> None:
        import torch.distributed as dist

        dist.barrier(group=self.ctrl)


class SingleProcess:
    """The distributed hooks of ``fit`` and ``train_one_epoch`` for a plain one-process run:
    the whole batch on this process, nothing to agree on, nothing to reduce (every hook is a
    no-op or the plain computation, so the numbers are those of a run without torchrun)."""

    rank = 0
    world = 1
    is_main = True

    def prepare(self, model: nn.Module) -> nn.Module:
        return model

    def wrap(self, model: nn.Module) -> nn.Module:
        return model

    def batches(
        self, split: Any, perm: torch.Tensor, batch_size: int, start: int = 0
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return split.train_batches(perm, batch_size, start=start)

    def data_loss(
        self, logits: torch.Tensor, yb: torch.Tensor, step: int, criterion: Criterion | None = None
    ) -> torch.Tensor:
        return (criterion or Criterion())(logits, yb)

    def augment_generator(self, generator: torch.Generator) -> torch.Generator:
        return generator

    def own(self, value: Any) -> Any:
        return value

    def reduce(self, t: torch.Tensor) -> torch.Tensor:
        return t

    def step_share(self, loss: torch.Tensor) -> torch.Tensor:
        return loss.detach()

    def agreed_stop(self, should_stop: Callable[[], bool] | None) -> Callable[[], bool] | None:
        return should_stop

    def agree(self, stop: Any) -> Any:
        return stop

    def barrier(self) -> None:
        pass


Hooks = Context | SingleProcess  # what fit and train_one_epoch call: torchrun's rank or the single process


def hooks() -> Hooks:
    """This process's distributed hooks: its torchrun ``Context``, or ``SingleProcess()``."""
    return _current if _current is not None else SingleProcess()


def env_world() -> int:
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        return 1


def init_from_env(device_spec: str) -> Context | None:
    """Under torchrun with more than one process: join the process group and return this
    rank's ``Context`` (also ``current()``); otherwise None (a plain single-process run)."""
    global _current
    if _current is not None:
        return _current
    world = env_world()
    if world <= 1:
        return None
    import torch.distributed as dist

    from nntrain.training.device import resolve_device

    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(device_spec)
    if device.type == "cuda":  # one GPU per rank on each machine
        if local_rank >= torch.cuda.device_count():
            raise ConfigError(
                f"device: {device_spec!r} under torchrun: local rank {local_rank} needs cuda:{local_rank}, but this "
                f"machine has {torch.cuda.device_count()} GPU(s); use --nproc_per_node={torch.cuda.device_count()} "
                "or device: cpu"
            )
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
        backend = "nccl"
    else:
        device, backend = torch.device("cpu"), "gloo"
    dist.init_process_group(backend=backend)
    ctrl = dist.new_group(backend="gloo") if backend == "nccl" else None
    _current = Context(rank, world, local_rank, device, backend, ctrl)
    return _current


def current() -> Context | None:
    return _current


def shutdown() -> None:
    """Leave the process group (at the end of the command)."""
    global _current
    if _current is None:
        return
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()
    _current = None
