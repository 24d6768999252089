"""The config sections: pydantic models, frozen, every field documented (the docstrings are
the config reference, ``scripts/config_reference.py``); the defaults equal ``configs/default.yaml``."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from nntrain.config.base import _Section
from nntrain.config.model import BACKBONES, ModelConfig  # noqa: F401 (re-exported)

TORCHVISION_SETS = ("mnist", "fashion_mnist", "cifar10", "cifar100")
"""The ``data.dataset`` names read through torchvision (files under ``data.root``)."""
DATASETS = ("digits", "imagefolder", "npz", *TORCHVISION_SETS)
"""Names accepted by ``data.dataset``, the one list: ``data/registry.py`` holds one loader per name."""


FLIP_CHANGES_CLASS = ("digits", "mnist")
"""Datasets whose left-right mirror is another class (eval.tta: flip is refused unless data.augment.hflip)."""

DEVICE_PATTERN = r"auto|cpu|cuda(:\d+)?"
"""The device settings nntrain accepts (config ``device``, ``predict --device``)."""


class AugmentConfig(_Section):
    """Train-time augmentation on whole batches (tensor ops, after normalization); never at evaluation."""

    crop_padding: int = Field(0, ge=0)
    """Random crop: pad each side by this many pixels (zeros = the train mean) and crop back; 0 disables.
    Less than half the image side (CIFAR's usual: 4 of 32)."""
    hflip: bool = False
    """Flip each image left-right with probability 1/2 (wrong for digits and text: off by default)."""


class DataConfig(_Section):
    dataset: str = "digits"
    """digits (embedded 8x8) | imagefolder (root/<class>/<image>) | npz (file with x, y[, classes]) |
    mnist | fashion_mnist | cifar10 | cifar100 (torchvision; official test set = test split)."""
    root: str | None = None
    """imagefolder: the folder of class folders; npz: the .npz file; torchvision sets: the download
    directory (null = ./data). Relative paths are relative to the working directory."""
    download: bool = False
    """torchvision sets only: download into data.root when the files are missing (needs network)."""
    channels: Literal[1, 3] | None = None
    """Convert images to 1 (gray) or 3 (RGB) channels; null keeps the dataset's own (imagefolder: 3)."""
    image_size: int | None = Field(None, gt=0)
    """Resize images to image_size x image_size pixels; null keeps the native size
    (imagefolder: the most common size, others are resized to it; larger than 32 px: 32x32)."""
    memory_limit_mb: float = Field(2048.0, gt=0.0)
    """Largest float32 copy of the dataset (N·C·H·W·4 bytes) kept in memory on the training device;
    a larger dataset streams through a DataLoader instead."""
    workers: int = Field(2, ge=0)
    """DataLoader worker processes when streaming (0 = load in the main process)."""
    augment: AugmentConfig = AugmentConfig()
    val_fraction: float = Field(0.15, ge=0.0, lt=1.0)
    """Fraction of the samples held out for validation (model selection)."""
    test_fraction: float = Field(0.15, ge=0.0, lt=1.0)
    """Fraction held out for the final test, evaluated once with the best model."""
    stratify: bool = True
    """Keep class proportions equal across train/val/test."""

    @field_validator("dataset")
    @classmethod
    def _known_dataset(cls, v: str) -> str:
        if v not in DATASETS:
            raise ValueError(f"unknown dataset {v!r}; allowed: {', '.join(DATASETS)}")
        return v

    @model_validator(mode="after")
    def _leaves_train(self) -> DataConfig:
        if self.val_fraction + self.test_fraction >= 0.95:
            raise ValueError(
                f"val_fraction + test_fraction = {self.val_fraction + self.test_fraction:g} "
                "leaves no real train set; keep their sum below 0.95"
            )
        return self


class OptimizerConfig(_Section):
    name: Literal["sgd", "adam", "adamw", "rmsprop"] = "sgd"
    """torch.optim optimizer; SGD is the lecture's."""
    lr: float = Field(0.05, gt=0.0)
    """Learning rate (the lecture's step size v)."""
    momentum: float = Field(0.9, ge=0.0, lt=1.0)
    """SGD/RMSprop momentum (0 = plain SGD)."""
    nesterov: bool = True
    """SGD only: Nesterov momentum (needs momentum > 0)."""

    @model_validator(mode="after")
    def _nesterov_needs_momentum(self) -> OptimizerConfig:
        if self.name == "sgd" and self.nesterov and self.momentum == 0:
            raise ValueError("nesterov=true needs momentum > 0; set nesterov: false or a momentum like 0.9")
        return self


class TrainConfig(_Section):
    epochs: int = Field(20, gt=0)
    """Passes over the train split."""
    batch_size: int = Field(64, gt=0)
    """Samples per SGD step: the global batch. Under torchrun each of N ranks trains on a contiguous
    chunk of about batch_size/N of it (any batch_size ≥ N; chunks may differ by one sample)."""
    optimizer: OptimizerConfig = OptimizerConfig()
    reg: float = Field(1e-4, ge=0.0)
    """λ in R(W) = 0.5·λ·Σ‖W‖² over conv/linear weights, added to the reported loss."""
    lr_schedule: Literal["none", "step", "cosine"] = "cosine"
    """none: constant; step: lr ×= lr_decay after every epoch (the lecture); cosine: to 0 over epochs."""
    lr_decay: float = Field(0.95, gt=0.0, le=1.0)
    """step schedule only: per-epoch multiplicative decay (lecture's learning_rate_decay)."""
    patience: int | None = Field(None, gt=0)
    """Stop when val accuracy has not improved for this many epochs (None: never)."""
    amp: Literal["auto", "off", "bf16", "fp16"] = "auto"
    """Autocast dtype of the forward pass (parameters, checkpoints and exports stay float32). auto: bf16 on a
    CPU with native bf16 matrix instructions (AMX, AVX-512 BF16) when an SGD step's conv/linear work is large
    enough to gain, else fp32; fp32 on CUDA. bf16: CPU or CUDA; fp16: CUDA only (fp32 on the CPU, with a note).
    See docs/precision.md."""
    compile: bool = False
    """torch.compile the model (pays a compile time up front)."""
    channels_last: Literal["auto", "on", "off"] = "auto"
    """Memory layout of a conv net and its data while training. auto: channels-last on CUDA and on the CPU
    (faster conv epochs: docs/speed.md), except under torchrun on the CPU, where a run on several processes must
    equal one process on the same batches: a channels-last CPU convolution's result depends slightly on the
    batch size. off: the contiguous layout (the results of earlier nntrain versions on the CPU)."""

    @field_validator("amp", "channels_last", mode="before")
    @classmethod
    def _yaml_off(cls, v: object) -> object:
        return {False: "off", True: "on"}.get(v, v) if isinstance(v, bool) else v  # YAML 1.1: bare off/on → bool

    eval_batch_size: int = Field(1024, gt=0)
    """Samples per forward pass during evaluation (no gradients: can be large)."""
    class_weights: Literal["none", "balanced"] | tuple[float, ...] = "none"
    """Weighted cross-entropy for imbalanced classes: none | balanced (class c weighs N / (C·n_c), counted on
    the train split) | [w0, w1, …] (one positive weight per class). The data loss is the weighted mean
    Σ w_y·CE / Σ w_y (torch's), so an untrained net still starts at ln C; R(W) is added unchanged. Use it
    when some classes are rare and their recall (balanced accuracy) matters more than plain accuracy."""
    label_smoothing: float = Field(0.0, ge=0.0, le=0.5)
    """Cross-entropy against targets mixed with the uniform distribution (1 − ε on the class, ε/C on each):
    discourages over-confident logits; 0.1 is the usual value for CIFAR-size nets trained many epochs.
    The loss at init stays ln C; a trained net's loss cannot fall to 0."""
    ema: float | None = Field(None, gt=0.0, lt=1.0)
    """Exponential moving average of the weights and BatchNorm statistics with this decay (e.g. 0.999),
    updated after every SGD step; the average is what val/test evaluate and what best.pt saves (null: off).
    Helps on longer runs (its horizon is ~1/(1 − decay) steps: keep it well below the run's total steps)."""
    freeze_epochs: int = Field(0, ge=0)
    """Pretrained backbones: the first N epochs train only the head (the backbone's weights frozen, its BatchNorm
    in eval mode, no backward through it); then the whole net trains, the backbone at train.backbone_lr."""
    backbone_lr: float | str | None = None
    """Backbones: the backbone's learning rate after the frozen epochs: a number (an absolute lr) or a multiplier
    of optimizer.lr written as "0.1x"; null = optimizer.lr. Schedules and warmup scale both alike."""
    warmup_epochs: int = Field(0, ge=0)
    """Epochs of linear learning-rate warmup (lr·k/(warmup_epochs+1) in epoch k) before the configured
    lr_schedule, which then runs over the remaining epochs. Helps large lr / large batches start stably."""

    @field_validator("class_weights", mode="before")
    @classmethod
    def _weights_none(cls, v: object) -> object:
        return "none" if v is None else v

    @field_validator("class_weights")
    @classmethod
    def _positive_weights(cls, v: Any) -> Any:
        if isinstance(v, tuple) and (not v or any(not w > 0 for w in v)):
            raise ValueError(f"class weights must be one positive number per class, got {list(v)}")
        return v

    @field_validator("backbone_lr")
    @classmethod
    def _lr_or_multiplier(cls, v: float | str | None) -> float | str | None:
        if v is None or isinstance(v, float):
            if v is not None and not v > 0:
                raise ValueError(f"{v}: a learning rate must be > 0")
            return v
        m = re.fullmatch(r"\s*([0-9.eE+-]+)\s*[x×]\s*", v)
        try:
            factor = float(m.group(1)) if m else float(v)
        except ValueError:
            factor = -1.0
        if not factor > 0:
            raise ValueError(f"'{v}': use an lr (e.g. 0.001) or a multiplier of optimizer.lr (e.g. 0.1x)")
        return f"{factor:g}x" if m else factor

    @model_validator(mode="after")
    def _warmup_fits(self) -> TrainConfig:
        if self.warmup_epochs >= self.epochs:
            raise ValueError(
                f"warmup_epochs={self.warmup_epochs} leaves no epoch for the schedule (epochs={self.epochs}); "
                "use fewer warmup epochs"
            )
        return self


class EvalConfig(_Section):
    """How val/test predictions are made."""

    tta: Literal["none", "flip"] = "none"
    """Test-time augmentation: flip = average the softmax over each image and its left-right mirror
    (two forward passes) for val, test and the run's pictures. Refused for digits and MNIST, where a mirrored
    digit is another symbol, unless data.augment.hflip is true (the config then says flips keep the class)."""


class OutputConfig(_Section):
    runs_dir: str = "runs"
    """Directory that receives one sub-directory per run."""
    run_name: str = "run"
    """Run directory name prefix: <runs_dir>/<run_name>-<timestamp>/."""
    checkpoint_seconds: float = Field(30.0, ge=0.0)
    """Write last.pt/best.pt at most this often (s), plus at the end and on Ctrl-C/SIGTERM; 0: every epoch.
    A kill -9 loses at most this much training; resume recomputes it exactly."""
    tensorboard: bool = False
    """Also log the epoch scalars and the first-layer filter grid to <run>/tensorboard/
    (needs: pip install 'nntrain[tensorboard]')."""
    mlflow: bool = False
    """Also track the run (or the cv and its trials) in MLflow: params, tags, per-epoch metrics, the
    pictures, the report and the best model (needs: pip install 'nntrain[mlflow]'; docs/tracking.md)."""
    mlflow_uri: str | None = None
    """MLflow tracking URI (http://host:5000, sqlite:///mlflow.db, a directory); null: the
    MLFLOW_TRACKING_URI environment variable, else MLflow's default store."""
    mlflow_experiment: str | None = None
    """MLflow experiment the runs go to (created if missing); null: output.run_name."""

    @field_validator("run_name")
    @classmethod
    def _plain_name(cls, v: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9._-]+", v):
            raise ValueError(f"run name {v!r} must use only letters, digits, '.', '_' and '-'")
        return v


class SanityConfig(_Section):
    """``nntrain sanity``: tolerances and sizes of the pre-training checks."""

    init_loss_tol: float = Field(0.10, gt=0.0, lt=1.0)
    """Loss at init passes within this fraction of ln C (0.10 → 2.3026 ± 0.23 for 10 classes)."""
    high_reg: float = Field(1e3, gt=0.0)
    """λ for 'regularization raises the loss' (the lecture's 1e3)."""
    reg_rtol: float = Field(1e-3, gt=0.0, lt=1.0)
    """Allowed relative mismatch between loss(high_reg) − loss(0) and R(W) (float32 sums)."""
    tiny_samples: int = Field(20, ge=1)
    """Train samples (classes as balanced as possible) the net must overfit (the lecture's 20)."""
    tiny_epochs: int = Field(200, ge=1)
    """Most epochs (full-batch steps when train.batch_size ≥ tiny_samples) to reach 100% train accuracy."""
    tiny_lr: float | None = Field(None, gt=0.0)
    """Learning rate of the overfit run; null: train.optimizer.lr (optimizer as configured, λ = 0)."""
    gradcheck_samples: int = Field(3, ge=2, le=64)
    """Samples in the float64 gradient check (≥ 2 so BatchNorm in train mode has batch statistics)."""
    gradcheck_entries: int = Field(5, ge=1)
    """Random entries checked per parameter tensor."""
    gradcheck_step: float = Field(1e-5, gt=0.0, lt=1.0)
    """h of the centered difference (f(w+h) − f(w−h)) / 2h, in float64 (cs231n: ~1e-5)."""
    gradcheck_tol: float = Field(1e-4, gt=0.0, lt=1.0)
    """Worst relative error |a−n| / max(|a|, |n|) that passes (cs231n: > 1e-2 is wrong; ReLU kinks: 1e-4..1e-2)."""
    gradcheck_floor: float = Field(1e-8, gt=0.0)
    """Gradients smaller than this (in both a and n) count as zero: keeps float64 round-off from dividing by ~0."""
    independence_samples: int = Field(4, ge=2)
    """Batch size of the batch-independence check (∂ out_i / ∂ x_j must be 0 for j ≠ i)."""
    lr_probe_steps: int = Field(100, ge=2)
    """SGD steps at the configured lr (rounded up to whole epochs of train.batch_size)."""
    lr_probe_window: int = Field(10, ge=1)
    """The probe's final loss is the mean of this many last steps' losses."""
    lr_min_drop: float = Field(0.10, gt=0.0, lt=1.0)
    """The probe passes when the loss falls by at least this fraction of its first-step value."""
    lr_explode_factor: float = Field(3.0, gt=1.0)
    """A step loss above this multiple of the first-step loss means the loss explodes (lr too high)."""

    @model_validator(mode="after")
    def _window_fits(self) -> SanityConfig:
        if self.lr_probe_window > self.lr_probe_steps:
            raise ValueError(
                f"lr_probe_window={self.lr_probe_window} is longer than lr_probe_steps={self.lr_probe_steps}; "
                "use a window of at most lr_probe_steps"
            )
        return self


class DiagnosticsConfig(_Section):
    """Live advice during ``train`` (cs231n's babysitting rules); each message is printed once."""

    enabled: bool = True
    """Watch the run and print advice when a rule first holds."""
    explode_factor: float = Field(3.0, gt=1.0)
    """Stop (exit 1) when an epoch's train loss exceeds this × the first step's loss (cs231n: 3)."""
    early_epochs: int = Field(3, gt=0)
    """Epochs that count as 'early': the flat-loss and update/weight-ratio rules look only at these."""
    flat_drop: float = Field(0.01, ge=0.0, lt=1.0)
    """'Loss flat' when after early_epochs the train loss fell by less than this fraction of its first value."""
    overfit_gap: float = Field(0.1, gt=0.0, le=1.0)
    """'Overfitting' when train accuracy exceeds the best val accuracy so far by more than this (fraction,
    0.1 = 10 points)..."""
    overfit_epochs: int = Field(2, gt=0)
    """...for this many consecutive epochs in which val accuracy did not improve on its earlier best
    (a gap while val accuracy still rises is lag, not overfitting)."""
    update_ratio: float = Field(1e-3, gt=0.0)
    """Healthy ‖ΔW‖/‖W‖ of one SGD step per layer (cs231n: about 1e-3)."""
    update_ratio_factor: float = Field(100.0, gt=1.0)
    """Report a layer whose early update/weight ratio is more than this many times above or below update_ratio."""
    chance_margin: float = Field(0.25, gt=0.0, lt=1.0)
    """'Learned little' when the best val accuracy stays below chance + this × (1 − chance) (10 classes: 0.325),
    or has fallen back by more than half its gain over chance; the advice lists the likely causes."""


class Config(_Section):
    seed: int = Field(0, ge=0, lt=2**32)
    """Seeds splits, initialization, batch order and dropout (0 ≤ seed < 2³², scikit-learn's range)."""
    device: str = "auto"
    """auto (CUDA when available, else CPU) | cpu | cuda | cuda:N."""
    threads: Literal["auto"] | int = "auto"
    """CPU threads torch computes with: auto (small work such as digits: one; larger work: the usable cores —
    affinity, cgroup quota, OMP_NUM_THREADS — shared among torchrun's ranks on the node; one per cv fold job) |
    N ≥ 1, at most the usable cores (every cv fold job too). Never chosen from other processes' load: the same
    config and seed give the same numbers on a quiet and a busy machine (docs/threads.md)."""
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()
    output: OutputConfig = OutputConfig()
    sanity: SanityConfig = SanityConfig()
    diagnostics: DiagnosticsConfig = DiagnosticsConfig()
    eval: EvalConfig = EvalConfig()

    @model_validator(mode="after")
    def _flip_keeps_class(self) -> Config:
        if self.eval.tta == "flip" and self.data.dataset in FLIP_CHANGES_CLASS and not self.data.augment.hflip:
            raise ValueError(
                "eval.tta: flip mirrors the images, which turns a digit into another symbol "
                f"(data.dataset: {self.data.dataset}); use eval.tta: none, or set data.augment.hflip: true "
                "if flipped images keep their class"
            )
        return self

    @field_validator("threads", mode="before")
    @classmethod
    def _threads_auto_or_positive(cls, v: Any) -> Any:
        if v == "auto":
            return v
        if isinstance(v, bool) or not str(v).strip().isdigit() or int(v) < 1:
            raise ValueError("use auto or a whole number of threads >= 1")
        return int(v)

    @field_validator("device")
    @classmethod
    def _device_syntax(cls, v: str) -> str:
        if not re.fullmatch(DEVICE_PATTERN, v):
            raise ValueError(f"unknown device {v!r}; allowed: auto, cpu, cuda, cuda:N")
        return v
