"""What ``fit`` returns and records: one row per epoch, every step's loss, the best epoch,
the test result and why training ended (also what ``last.pt`` saves and restores)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any


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
    precision: str = "fp32"  # what trained it (device.Precision.name) and why
    precision_reason: str = ""
    initial_loss: float | None = None  # the loss at initialization (advice), kept in last.pt across resume
    advice: list[dict[str, Any]] = field(default_factory=list)  # advice given so far (rule, epoch, message)
    test: Any = field(default=None, repr=False)  # metrics.SplitOutputs of the best model's test pass (not in last.pt)
