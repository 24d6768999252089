"""A bare, hand-written PyTorch training loop: the yardstick for nntrain's own overhead.

Same work as ``nntrain.engine.fit`` on in-memory data: per-epoch permutation, index-slice
batches, cross-entropy + 0.5·λ·Σ‖W‖², SGD (momentum/Nesterov), per-epoch cosine schedule,
the numbers an epoch reports (mean train loss and accuracy, val loss and accuracy — what
the lecture's trainer prints too), best-val weights kept, test evaluation at the end.
No callbacks, no checkpoints, no metrics file. Used by the scripts in this folder.
"""

from __future__ import annotations

import contextlib
import time

import torch
import torch.nn.functional as F
from torch import nn


def bare_fit(
    model: nn.Module,
    xtr,
    ytr,
    xva,
    yva,
    xte,
    yte,
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    momentum: float,
    nesterov: bool,
    reg: float,
    seed: int,
    amp_dtype=None,
) -> dict:
    device = xtr.device
    weights = [m.weight for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, nesterov=nesterov)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)
    gen = torch.Generator().manual_seed(seed)
    best_acc, best_state, epoch_seconds, records, steps = -1.0, None, [], [], []

    def autocast():  # as nntrain's Precision: an autocast context (CPU: bf16; CUDA: bf16 or fp16) when asked
        if amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device.type, dtype=amp_dtype)

    for _ in range(epochs):
        t0 = time.perf_counter()
        model.train()
        n = len(ytr)
        perm = torch.randperm(n, generator=gen).to(device)
        loss_sum = torch.zeros((), device=device)
        correct = torch.zeros((), dtype=torch.int64, device=device)
        step_losses = torch.empty((n + batch_size - 1) // batch_size, device=device)
        lr_now = opt.param_groups[0]["lr"]
        for i in range(0, n, batch_size):
            idx = perm[i : i + batch_size]
            with autocast():
                logits = model(xtr[idx])
            loss = F.cross_entropy(logits.float(), ytr[idx])  # float32, as nntrain computes it
            if reg > 0:
                loss = loss + 0.5 * reg * sum((w * w).sum() for w in weights)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            loss_sum += loss.detach() * len(idx)
            step_losses[i // batch_size] = loss.detach()
            correct += (logits.detach().argmax(1) == ytr[idx]).sum()
        sched.step()
        model.eval()
        with torch.inference_mode():
            with autocast():
                val_logits = model(xva)
            val_loss = F.cross_entropy(val_logits.float(), yva).item()
            acc = (val_logits.argmax(1) == yva).float().mean().item()
        records.append(  # the epoch's report
            {"train_loss": loss_sum.item() / n, "train_acc": correct.item() / n, "val_loss": val_loss,
             "val_acc": acc, "lr": lr_now}
        )  # fmt: skip
        steps.extend(step_losses.tolist())
        if acc > best_acc:
            best_acc, best_state = acc, {k: v.clone() for k, v in model.state_dict().items()}
        epoch_seconds.append(time.perf_counter() - t0)
    model.load_state_dict(best_state)
    model.eval()
    with torch.inference_mode():
        test_pred = model(xte).argmax(1)
    test_acc = (test_pred == yte).float().mean().item()
    return {
        "epoch_seconds": epoch_seconds, "best_val_acc": best_acc, "test_acc": test_acc, "records": records,
        "step_losses": steps, "test_pred": test_pred.cpu(),
    }  # fmt: skip
