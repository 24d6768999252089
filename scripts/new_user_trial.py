"""The new-user trial (issue 32): bad input and faults, run through the real CLI, counted.

    python scripts/new_user_trial.py [--out results.json] [--only WORD,WORD] [--keep]

Builds its inputs in a temporary directory (tiny runs on the embedded digits, image folders, .npz files,
checkpoints, weights files), then runs each case in CASES as ``python -m nntrain ...`` in a subprocess, in a
fresh working folder of its own, with a timeout. A case states the exit code it expects (2 bad input, 130
interrupted, 0 should work) and a needle: what a clear message must contain (a key, a file name).

A failing case is classified once, in this order:
  traceback   "Traceback" in stdout or stderr
  wrong exit  the exit code is not the expected one (or the case timed out)
  unclear     expected 2 but stderr is not one ``error:`` message (click's one-message usage panel counts as
              one) or the message lacks the needle; expected 0/130 but the output lacks the needle
and, independently,
  lost        a file that existed before the case (its inputs, the shared runs, an existing output) changed or
              disappeared, unless the case allows it (``--force``, a resume); a run's ``.lock`` is not data
Listed beside the four counts: litter (a bad-input case left new files in its working folder), code ran (an
untrusted pickle executed), usage panels (refusals in click's box, not an ``error:`` line).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parent.parent
FIX: dict[str, str] = {}  # the shared fixtures' paths (build), and what earlier cases left (resume hints)
SNIPPETS = {
    "tiny": "--set device=cpu --set threads=1 --set model.channels=[4] --set model.hidden=[16] --set train.epochs=1",
    "resnet": "--set device=cpu --set threads=1 --set model.name=resnet18 --set data.image_size=32 "
    "--set train.epochs=1",
    "IF": "--set data.dataset=imagefolder --set data.root=d",  # the case's image folder ./d
    "NPZ": "--set data.dataset=npz --set data.root=d.npz",  # the case's ./d.npz
}
SNIPPETS["long"] = SNIPPETS["tiny"].replace("epochs=1", "epochs=150") + " --set output.checkpoint_seconds=0"


KINDS = ("config", "args", "data", "checkpoint", "weights", "fault", "output", "works")


@dataclass
class Case:
    kind: str  # one of KINDS
    name: str
    cmd: str  # nntrain's arguments; {placeholders}: FIX, SNIPPETS and what setup returns
    expect: int = 2
    needle: str = ""
    setup: Callable | None = None  # (cwd) -> dict of placeholders or None; the files it makes are guarded
    may_change: tuple = ()  # placeholders whose files may change ("*": the whole working folder)
    env: dict = field(default_factory=dict)
    stdin: str | None = None
    interrupt: int | None = None  # send this signal once ready(cwd, stdout_lines, placeholders) holds
    ready: Callable | None = None
    background: str | None = None  # started first, the case's command runs once ready holds, then SIGTERMed
    after: Callable | None = None  # (cwd, stdout, stderr): keep what a later case needs in FIX
    cwd: str = ""  # a placeholder: run in an earlier case's folder, not a fresh one
    form: str = "error"  # "report": a multi-file report, the needle anywhere in the output
    skip: str = ""
    timeout: float = 120


def popen(args: list[str], cwd: Path, env: dict | None = None, stdin: bool = False) -> subprocess.Popen:
    e = {**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "200", "OMP_NUM_THREADS": "1", **(env or {})}
    pipe, null = subprocess.PIPE, subprocess.DEVNULL
    cmd = [sys.executable, "-m", "nntrain", *args]
    return subprocess.Popen(cmd, cwd=cwd, env=e, stdin=pipe if stdin else null, stdout=pipe, stderr=pipe, text=True)


def nntrain_ok(args: list[str], cwd: Path) -> None:
    p = popen(args, cwd)
    out, err = p.communicate(timeout=300)
    if p.returncode:
        sys.exit(f"fixture failed: nntrain {shlex.join(args)}\n{out}\n{err}")


# --------------------------------------------------------------------------- fixtures and setups


def images(root: Path, n=15, seed=0) -> Path:
    rng = np.random.default_rng(seed)
    for i, c in enumerate(("cat", "dog")):
        (root / c).mkdir(parents=True, exist_ok=True)
        for k in range(n):
            Image.fromarray((rng.random((8, 8, 3)) * 100 + i * 150).astype("uint8")).save(root / c / f"{k}.png")
    return root


def npz(path: Path, n=40, **extra) -> Path:
    y = np.arange(n) % 2
    x = (np.random.default_rng(1).random((n, 8, 8)) * 60 + y[:, None, None] * 150).astype("uint8")
    np.savez(path, **{"x": x, "y": y, **extra})
    return path


def train_into(cwd: Path, *sets: str, name: str = "run") -> Path:
    args = ["train", *shlex.split(SNIPPETS["tiny"]), "--set", f"output.run_name={name}"]
    nntrain_ok(args + [a for s in sets for a in ("--set", s)], cwd)
    return sorted((cwd / "runs").glob(f"{name}-*"))[-1]


def build(shared: Path) -> None:
    import torch
    import torchvision

    shared.mkdir(parents=True)
    FIX.update(imgs=str(images(shared / "pets")), png=str(shared / "pets" / "cat" / "0.png"))
    FIX.update(npz=str(npz(shared / "good.npz")), torch_home=str(shared / "torch-home"))
    FIX["run"] = str(train_into(shared, name="cnn"))
    FIX["mlp"] = str(train_into(shared, "model.name=mlp", name="mlp"))
    FIX["npzrun"] = str(train_into(shared, "data.dataset=npz", f"data.root={npz(shared / 'changing.npz')}", name="n"))
    folder_root = f"data.root={images(shared / 'changing', seed=2)}"
    FIX["ifrun"] = str(train_into(shared, "data.dataset=imagefolder", folder_root, name="folder"))
    (shared / "torch-home").mkdir()
    FIX["mobilenet"], FIX["resnet18"] = str(shared / "mobilenet.pth"), str(shared / "resnet18.pth")
    torch.save(torchvision.models.mobilenet_v3_small().state_dict(), FIX["mobilenet"])
    torch.save(torchvision.models.resnet18(num_classes=10).state_dict(), FIX["resnet18"])


class Evil:  # unpickling it creates the file "code-ran": a checkpoint that runs code
    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def write(name: str, content: str | bytes) -> Callable:
    """Setup: the file ./name."""

    def setup(cwd: Path):
        (cwd / name).parent.mkdir(parents=True, exist_ok=True)
        (cwd / name).write_bytes(content if isinstance(content, bytes) else content.encode())

    return setup


def copy_run(key: str = "run", change: Callable | None = None, into: str = "") -> Callable:
    """Setup: a copy of a shared run as {r} (under ./into), then change(r)."""

    def setup(cwd: Path):
        r = Path(shutil.copytree(FIX[key], cwd / into / Path(FIX[key]).name))
        if change:
            change(r)
        return {"r": str(r)}

    return setup


def folder(change: Callable) -> Callable:
    """Setup: a good image folder ./d, then change(d)."""
    return lambda cwd: change(images(cwd / "d")) and None


def arrays(**arr) -> Callable:
    """Setup: ./d.npz holding these arrays."""
    return lambda cwd: np.savez(cwd / "d.npz", **arr)


def torch_file(make: Callable) -> Callable:
    """Setup: ./x.pt holding torch.save(make())."""

    def setup(cwd: Path):
        import torch

        torch.save(make(), cwd / "x.pt")

    return setup


def existing(name: str) -> Callable:
    """Setup: an output file that exists already, as {o}."""
    return lambda cwd: ((cwd / name).write_bytes(b"my precious file\n"), {"o": str(cwd / name)})[1]


def truncate(name: str) -> Callable:
    return lambda r: (r / name).write_bytes((r / name).read_bytes()[: (r / name).stat().st_size // 2])


def no_class_folders(d: Path):
    for p in list(d.rglob("*.png")):
        shutil.move(str(p), d / f"{p.parent.name}-{p.name}")
    for c in ("cat", "dog"):
        (d / c).rmdir()


def metrics_lines(cwd: Path) -> int:
    return max((len(m.read_text().splitlines()) for m in cwd.glob("runs/*/metrics.csv")), default=0)


def interrupted_run(sig=signal.SIGTERM, rows=2, checkpoint="0") -> Callable:
    """Setup: a run stopped by ``sig`` once metrics.csv has ``rows`` epochs, as {r}; its line count as {rows}."""

    def setup(cwd: Path):
        p = popen(["train", *shlex.split(SNIPPETS["long"]), "--set", f"output.checkpoint_seconds={checkpoint}"], cwd)
        deadline = time.time() + 120
        while time.time() < deadline and p.poll() is None:
            if metrics_lines(cwd) > rows or rows == 0 and list(cwd.glob("runs/*/config.yaml")):
                break
            time.sleep(0.02)
        p.send_signal(sig)
        p.communicate(timeout=60)
        (run,) = (cwd / "runs").iterdir()
        if rows == 0:  # killed before its first checkpoint, however fast that epoch was
            (run / "last.pt").unlink(missing_ok=True)
        return {"r": str(run), "rows": str(metrics_lines(cwd))}

    return setup


def rows_over(n: int) -> Callable:
    return lambda cwd, lines, v: metrics_lines(cwd) > n


def more_rows(cwd: Path, lines: list[str], v: dict) -> bool:
    """Ready: the run {r} has more epochs than when the case began (its resume is training)."""
    return metrics_lines(cwd) > int(v["rows"])


def fold_done(cwd: Path, lines: list[str], v: dict) -> bool:
    return any(re.match(r"cv trial \d+ fold 1/\d+: best val", ln) for ln in lines)


def keep_hint(key: str) -> Callable:
    """After: the printed resume command (as typed) as {key}, the folder it was printed in as {key_cwd}."""

    def after(cwd: Path, out: str, err: str):
        m = re.search(r"Resume with: nntrain (.*)$", err, re.M)
        FIX[key], FIX[key + "_cwd"] = (m.group(1).strip() if m else "train --resume NO-HINT-PRINTED"), str(cwd)

    return after


def gone_npz_run(cwd: Path):
    """Setup: a run trained on ./gone.npz, deleted afterwards, as {r}."""
    run = train_into(cwd, "data.dataset=npz", f"data.root={npz(cwd / 'gone.npz')}")
    (cwd / "gone.npz").unlink()
    return {"r": str(run)}


def change_data(cwd: Path):
    """Setup: the shared npz and image folder of two runs get more samples (the runs' data changed)."""
    npz(Path(FIX["npzrun"]).parent.parent / "changing.npz", n=44)
    shutil.copy(FIX["png"], Path(FIX["ifrun"]).parent.parent / "changing" / "cat" / "extra.png")


def evil_best(r: Path):
    import torch

    torch.save({"model": Evil(r.parent / "code-ran")}, r / "best.pt")


def unlink(name: str) -> Callable:
    return lambda r: (r / name).unlink()


# --------------------------------------------------------------------------- the cases

CFG, ARG, DAT, CKP, WTS, FLT, OUT, WKS = (partial(Case, k) for k in KINDS)
# fmt: off
YAML_BAD = {  # a config file -> the needle its message must hold
    "unclosed list": ("model:\n  channels: [4, 8\n", "c.yaml"), "tab indent": ("train:\n\tepochs: 1\n", "c.yaml"),
    "mapping in scalar": ("train: epochs: 1\n", "c.yaml"), "unclosed quote": ('seed: "0\n', "c.yaml"),
    "list document": ("- train\n- model\n", "c.yaml"), "scalar document": ("just words\n", "c.yaml"),
    "section is a list": ("train: [1, 2]\n", "train"),
    "unknown top key": ("foo: 1\n", "foo"), "typo train.epoch": ("train:\n  epoch: 5\n", "epoch"),
    "typo model.chanels": ("model:\n  chanels: [4]\n", "chanels"),
    "unknown optimizer key": ("train:\n  optimizer:\n    beta: 0.9\n", "beta"),
    "epochs: true": ("train:\n  epochs: true\n", "epochs"), "epochs: ten": ("train:\n  epochs: ten\n", "epochs"),
    "epochs: 1.5": ("train:\n  epochs: 1.5\n", "epochs"), "lr: fast": ("train:\n  optimizer:\n    lr: fast\n", "lr"),
    "batch_size list": ("train:\n  batch_size: [64]\n", "batch_size"),
    "channels scalar": ("model:\n  channels: 4\n", "channels"), "hidden string": ("model:\n  hidden: '16'\n", "hidden"),
    "hflip: maybe": ("data:\n  augment:\n    hflip: maybe\n", "hflip"), "seed: abc": ("seed: abc\n", "seed"),
    "epochs 0": ("train:\n  epochs: 0\n", "epochs"), "epochs -3": ("train:\n  epochs: -3\n", "epochs"),
    "lr 0": ("train:\n  optimizer:\n    lr: 0\n", "lr"), "lr -0.1": ("train:\n  optimizer:\n    lr: -0.1\n", "lr"),
    "batch_size 0": ("train:\n  batch_size: 0\n", "batch_size"),
    "val_fraction 1.5": ("data:\n  val_fraction: 1.5\n", "val_fraction"),
    "fractions sum 1": ("data:\n  val_fraction: 0.5\n  test_fraction: 0.5\n", "fraction"),
    "dropout 1": ("model:\n  dropout: 1.0\n", "dropout"),
    "label_smoothing 0.9": ("train:\n  label_smoothing: 0.9\n", "label_smoothing"),
    "momentum 2": ("train:\n  optimizer:\n    momentum: 2\n", "momentum"),
    "channels [0]": ("model:\n  channels: [0]\n", "channels"),
    "image_size 0": ("data:\n  image_size: 0\n", "image_size"),
    "data.channels 2": ("data:\n  channels: 2\n", "channels"),
    "memory_limit -1": ("data:\n  memory_limit_mb: -1\n", "memory_limit_mb"),
    "checkpoint_seconds -1": ("output:\n  checkpoint_seconds: -1\n", "checkpoint_seconds"),
    "ema 1.5": ("train:\n  ema: 1.5\n", "ema"), "lr_decay 0": ("train:\n  lr_decay: 0\n", "lr_decay"),
    "patience 0": ("train:\n  patience: 0\n", "patience"),
    "class_weights length": ("train:\n  class_weights: [1, 2]\n", "class_weights"),
    "class_weights word": ("train:\n  class_weights: heavy\n", "class_weights"),
    "device tpu": ("device: tpu\n", "device"), "device cuda without a GPU": ("device: cuda\n", "cuda"),
    "workers -1": ("data:\n  workers: -1\n", "workers"), "init_std -1": ("model:\n  init_std: -1\n", "init_std"),
    "runs_dir is a file": ("output:\n  runs_dir: c.yaml\n", "c.yaml"),
    "threads 0": ("threads: 0\n", "threads"), "threads: many": ("threads: many\n", "threads"),
    "model.name vgg": ("model:\n  name: vgg\n", "vgg"),
    "optimizer lbfgs": ("train:\n  optimizer:\n    name: lbfgs\n", "lbfgs"),
    "schedule linear": ("train:\n  lr_schedule: linear\n", "lr_schedule"),
    "dataset imagenet": ("data:\n  dataset: imagenet\n", "imagenet"),
    "tta flip on digits": ("eval:\n  tta: flip\n", "tta"),
    "duplicate key": ("train:\n  epochs: 1\n  epochs: 2\n", "epochs"),
    "duplicate section": ("train:\n  epochs: 1\ntrain:\n  batch_size: 8\n", "train"),
    "freeze without pretrained": ("train:\n  freeze_epochs: 2\n", "freeze_epochs"),
    "backbone_lr 0.1y": ("train:\n  backbone_lr: 0.1y\n", "backbone_lr"),
    "imagefolder without root": ("data:\n  dataset: imagefolder\n", "data.root"),
    "warmup -1": ("train:\n  warmup_epochs: -1\n", "warmup_epochs"),
}
SETS_BAD = {  # a --set -> needle
    "train.epochs": "train.epochs", "=5": "=5", "train..epochs=1": "train..epochs", "train.epochs=[1": "train.epochs",
    "train=5": "train", "train.optimizer=sgd": "train.optimizer", "model.channels=[4,x]": "model.channels",
    "data.augment.crop_padding=100": "crop_padding", "model.channels=[]": "channels",
    "model.channels=[4,4,4,4,4]": "channels", "model.hidden=[-1]": "hidden", "sanity.tiny_samples=0": "tiny_samples",
}
DAMAGED = [("eval", ""), ("predict", "{png}"), ("export", "--out m.onnx"), ("plot-filters", "--out f.png")]
CASES: list[Case] = [
    *[CFG(f"yaml: {k}", "train -c c.yaml", needle=n, setup=write("c.yaml", t)) for k, (t, n) in YAML_BAD.items()],
    *[CFG(f"--set {s}", f"train {{tiny}} --set {shlex.quote(s)}", needle=n) for s, n in SETS_BAD.items()],
    CFG("binary file as config", "train -c c.yaml", needle="c.yaml", setup=write("c.yaml", bytes(range(256)))),
    CFG("utf-16 config", "train -c c.yaml", needle="c.yaml", setup=write("c.yaml", "seed: 1\n".encode("utf-16"))),
    CFG("config is a folder", "train -c {imgs}", needle="pets"),
    CFG("missing config file", "train -c nope.yaml", needle="nope.yaml"),
    CFG("empty config file = defaults", "config show -c c.yaml", expect=0, setup=write("c.yaml", "")),
    CFG("amp fp16 on the CPU: fp32 with a note", "train {tiny} --set train.amp=fp16", expect=0, needle="fp16"),
    CFG("threads=1000 is capped with a note", "train {tiny} --set threads=1000", expect=0, needle="thread"),
    CFG("sanity: unknown key", "sanity -c c.yaml", needle="foo", setup=write("c.yaml", "foo: 1\n")),
    CFG("data: wrong type", "data -c c.yaml", needle="epochs", setup=write("c.yaml", "train:\n  epochs: x\n")),
    CFG("lr-sweep: bad --set", "lr-sweep --set train.epochs", needle="train.epochs"),
    CFG("cv: unknown key", "cv -c c.yaml", needle="foo", setup=write("c.yaml", "foo: 1\n")),
    CFG("cv: class_weights length", "cv {tiny} --folds 2 --set train.class_weights=[1,2]", needle="class_weights"),
    CFG("config show: bad --set", "config show --set model.name=vgg", needle="vgg"),
    CFG("config validate: one missing", "config validate c.yaml nope.yaml", needle="nope.yaml",
      setup=write("c.yaml", "seed: 1\n"), form="report"),
    CFG("config validate: bad key", "config validate c.yaml", needle="foo", setup=write("c.yaml", "foo: 1\n"),
      form="report"),
    CFG("resume with --set", "train --resume {run} --set train.epochs=3", needle="--set"),
    # ----------------------------------------------------------------------- arguments, verb by verb
    ARG("unknown verb", "trian", needle="trian"),
    ARG("unknown option", "train --epochs 3", needle="--epochs"),
    ARG("eval: missing run dir", "eval", needle="run_dir"),
    ARG("eval: nonexistent run dir", "eval runs/nope", needle="nope"),
    ARG("eval: a file, not a run", "eval {png}", needle="0.png"),
    ARG("eval: not a run dir", "eval {imgs}", needle="pets"),
    ARG("eval: --split train", "eval {run} --split train", needle="split"),
    ARG("eval: --split foo", "eval {run} --split foo", needle="foo"),
    ARG("eval: --out folder missing", "eval {run} --out nodir/c.png", needle="nodir"),
    ARG("eval: --out not png", "eval {run} --out c.txt", needle="c.txt"),
    ARG("predict: no inputs", "predict {run}", needle="inputs"),
    ARG("predict: nonexistent source", "predict runs/nope {png}", needle="nope"),
    ARG("predict: nonexistent image", "predict {run} nope.png", needle="nope.png"),
    ARG("predict: glob matches nothing", "predict {run} 'x/*.png'", needle="x/*.png"),
    ARG("predict: --top-k 0", "predict {run} {png} --top-k 0", needle="top-k"),
    ARG("predict: --top-k abc", "predict {run} {png} --top-k abc", needle="top-k"),
    ARG("predict: --batch-size 0", "predict {run} {png} --batch-size 0", needle="batch-size"),
    ARG("predict: --out .txt", "predict {run} {png} --out p.txt", needle="p.txt"),
    ARG("predict: --device cuda:7", "predict {run} {png} --device cuda:7", needle="cuda"),
    ARG("predict: --device tpu", "predict {run} {png} --device tpu", needle="tpu"),
    ARG("predict: stdin names a missing file", "predict {run} -", needle="gone.png", stdin="gone.png\n"),
    ARG("predict: empty stdin", "predict {run} -", needle="stdin", stdin=""),
    ARG("export: --format foo", "export {run} --format foo", needle="foo"),
    ARG("export: --out .zip", "export {run} --out m.zip", needle="m.zip"),
    ARG("export: --format vs --out", "export {run} --format pt2 --out m.onnx", needle="m.onnx"),
    ARG("export: nonexistent source", "export runs/nope", needle="nope"),
    ARG("report: nonexistent dir", "report runs/nope --out r.html", needle="nope"),
    ARG("report: not a run", "report {imgs} --out r.html", needle="pets"),
    ARG("report: --out a folder", "report {run} --out {imgs}", needle="pets"),
    ARG("runs: nonexistent dir", "runs nope", needle="nope"),
    ARG("runs: --sort foo", "runs {run}/.. --sort foo", needle="foo"),
    ARG("runs: --compare one run", "runs --compare {run}", needle="compare"),
    ARG("runs: --compare a non-run", "runs --compare {run} {imgs}", needle="pets"),
    ARG("plot-filters: no --out", "plot-filters {run}", needle="--out"),
    ARG("plot-filters: nonexistent", "plot-filters runs/nope --out f.png", needle="nope"),
    ARG("plot-filters: --compare-init without init.pt", "plot-filters {r} --out f.png --compare-init",
      needle="init.pt", setup=copy_run(change=unlink("init.pt"))),
    ARG("plot-curves: nonexistent", "plot-curves runs/nope --out c.png", needle="nope"),
    ARG("plot-curves: not a run", "plot-curves {imgs} --out c.png", needle="pets"),
    ARG("plot-curves: no runs", "plot-curves --out c.png", needle="runs"),
    ARG("cv: --folds 1", "cv {tiny} --folds 1", needle="folds"),
    ARG("cv: --folds 0", "cv {tiny} --folds 0", needle="folds"),
    ARG("cv: --folds 5000", "cv {tiny} --folds 5000", needle="folds"),
    ARG("cv: --grid without =", "cv {tiny} --folds 2 --grid train.optimizer.lr", needle="--grid"),
    ARG("cv: --grid unknown key", "cv {tiny} --folds 2 --grid train.lrr=0.1,0.2", needle="lrr"),
    ARG("cv: --grid bad value", "cv {tiny} --folds 2 --grid train.epochs=1,x", needle="epochs"),
    ARG("cv: --sample bad", "cv {tiny} --folds 2 --sample train.optimizer.lr=log:1", needle="--sample"),
    ARG("cv: --sample log of 0", "cv {tiny} --folds 2 --sample train.optimizer.lr=log:0:1", needle="log"),
    ARG("cv: --trials 0", "cv {tiny} --folds 2 --sample model.dropout=uniform:0:0.5 --trials 0", needle="trials"),
    ARG("cv: --sampler foo", "cv {tiny} --folds 2 --sampler foo", needle="foo"),
    ARG("cv: --pruner foo", "cv {tiny} --folds 2 --pruner foo", needle="foo"),
    ARG("cv: --jobs 0", "cv {tiny} --folds 2 --jobs 0", needle="jobs"),
    ARG("cv: --executor foo", "cv {tiny} --folds 2 --executor foo", needle="foo"),
    ARG("cv: --storage foo://", "cv {tiny} --folds 2 --grid seed=1,2 --storage foo://x", needle="foo://"),
    ARG("cv: --resume nonexistent", "cv --resume runs/cv-nope", needle="cv-nope"),
    ARG("cv: --resume a train run", "cv --resume {run}", needle="cnn-"),
    ARG("lr-sweep: --lrs abc", "lr-sweep {tiny} --lrs abc", needle="abc"),
    ARG("lr-sweep: --lrs -1", "lr-sweep {tiny} --lrs=-1", needle="-1"),
    ARG("lr-sweep: --lrs empty", "lr-sweep {tiny} --lrs ''", needle="lrs"),
    ARG("lr-sweep: --epochs 0", "lr-sweep {tiny} --epochs 0", needle="epochs"),
    ARG("data: --images 0", "data --images 0", needle="images"),
    ARG("data: --grid not png", "data --grid g.txt", needle="g.txt"),
    ARG("config validate: no files", "config validate", needle="files"),
    ARG("train --resume nonexistent", "train --resume runs/nope", needle="nope"),
    ARG("train --resume not a run", "train --resume {imgs}", needle="pets"),
    # ----------------------------------------------------------------------- data
    DAT("folder does not exist", "data {IF}", needle="/d' does not exist"),
    DAT("root is a file", "data --set data.dataset=imagefolder --set data.root={png}", needle="0.png"),
    DAT("no images", "data {IF}", needle="image", setup=folder(lambda d: [p.unlink() for p in d.rglob("*.png")])),
    DAT("no class folders", "data {IF}", needle="class", setup=folder(no_class_folders)),
    DAT("one class", "data {IF}", needle="class", setup=folder(lambda d: shutil.rmtree(d / "dog"))),
    DAT("empty class folder", "data {IF}", needle="bird", setup=folder(lambda d: (d / "bird").mkdir())),
    DAT("corrupt jpeg", "data {IF}", needle="bad.jpg",
      setup=folder(lambda d: (d / "cat" / "bad.jpg").write_bytes(b"\xff\xd8\xff\xe0" + os.urandom(200)))),
    DAT("truncated png", "train {tiny} {IF}", needle="1.png", setup=folder(lambda d: truncate("1.png")(d / "dog"))),
    DAT("text named .png", "train {tiny} {IF}", needle="notes.png",
      setup=folder(lambda d: (d / "cat" / "notes.png").write_text("hello\n"))),
    DAT("zero-byte .jpg", "data {IF}", needle="empty.jpg", setup=folder(lambda d: (d / "dog" / "empty.jpg").touch())),
    DAT("unreadable file (chmod 000)", "data {IF}", needle="3.png",
        setup=folder(lambda d: (d / "cat" / "3.png").chmod(0)),
      skip="root reads every file" if os.geteuid() == 0 else ""),
    DAT("a README among images is ignored", "data {IF}", expect=0,
      setup=folder(lambda d: (d / "cat" / "README.txt").write_text("about cats\n"))),
    DAT("mixed sizes and modes work", "train {tiny} {IF}", expect=0,
      setup=folder(lambda d: Image.new("L", (20, 12)).save(d / "dog" / "odd.png"))),
    DAT("npz: missing file", "data {NPZ}", needle="d.npz"),
    DAT("npz: no root", "data --set data.dataset=npz", needle="data.root"),
    DAT("npz: text file", "data {NPZ}", needle="d.npz", setup=write("d.npz", "x,y\n1,2\n")),
    DAT("npz: without x", "data {NPZ}", needle="x", setup=arrays(images=np.zeros((10, 8, 8)), y=np.arange(10) % 2)),
    DAT("npz: without y", "data {NPZ}", needle="y", setup=arrays(x=np.zeros((10, 8, 8)))),
    DAT("npz: x/y lengths differ", "data {NPZ}", needle="labels",
        setup=arrays(x=np.zeros((10, 8, 8)), y=np.arange(9) % 2)),
    DAT("npz: x is 2-D", "data {NPZ}", needle="dimensions", setup=arrays(x=np.zeros((10, 64)), y=np.arange(10) % 2)),
    DAT("npz: float labels", "data {NPZ}", needle="y", setup=arrays(x=np.zeros((10, 8, 8)), y=np.arange(10) * 0.5)),
    DAT("npz: negative label", "data {NPZ}", needle="-1",
        setup=arrays(x=np.zeros((10, 8, 8)), y=np.arange(10) % 2 - 1)),
    DAT("npz: one class", "data {NPZ}", needle="class",
        setup=arrays(x=np.zeros((10, 8, 8)), y=np.zeros(10, dtype=int))),
    DAT("npz: NaN images", "data {NPZ}", needle="NaN",
        setup=arrays(x=np.full((10, 8, 8), np.nan), y=np.arange(10) % 2)),
    DAT("npz: object array", "data {NPZ}", needle="d.npz",
        setup=arrays(x=np.array([[1], [1, 2]], dtype=object), y=np.arange(2))),
    DAT("npz: a class without samples is a note", "data {NPZ}", expect=0, needle="no sample",
      setup=lambda cwd: npz(cwd / "d.npz", classes=np.array(["a", "b", "c"]))),
    DAT("npz: classes not strings", "data {NPZ}", needle="classes",
      setup=lambda cwd: npz(cwd / "d.npz", classes=np.array([1.5, 2.5]))),
    DAT("npz: too few samples to split", "train {tiny} {NPZ}", needle="sample",
        setup=lambda cwd: npz(cwd / "d.npz", n=4)),
    DAT("predict: an npz input without x", "predict {run} d.npz", needle="d.npz",
        setup=arrays(images=np.zeros((3, 8, 8)))),
    DAT("predict: a corrupt image among good ones", "predict {run} d", needle="bad.png",
      setup=folder(lambda d: (d / "cat" / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(50)))),
    DAT("eval: the run's npz is gone", "eval {r}", needle="gone.npz", setup=gone_npz_run, timeout=180),
    DAT("mnist: missing files", "data --set data.dataset=mnist --set data.root=data", needle="t10k",
      setup=write("data/MNIST/raw/train-images-idx3-ubyte", b"\0\0\x08\x03" + b"\0" * 12)),
    DAT("mnist: empty root", "data --set data.dataset=mnist --set data.root=nodata", needle="nodata"),
    DAT("cifar10: corrupt batch", "data --set data.dataset=cifar10 --set data.root=data", needle="cifar-10-batches-py",
      setup=write("data/cifar-10-batches-py/data_batch_1", b"not a pickle")),
    DAT("crop_padding larger than an 8x8 image", "data --set data.augment.crop_padding=100", needle="crop_padding"),
    DAT("image_size 2, three conv stages", "train {tiny} --set data.image_size=2 --set model.channels=[4,4,4]",
      needle="channels"),
    # ----------------------------------------------------------------------- checkpoints and runs
    *[CKP(f"{v}: truncated best.pt", f"{v} {{r}} {x}", needle="best.pt", setup=copy_run(change=truncate("best.pt")))
      for v, x in DAMAGED],
    *[CKP(f"{v}: run without best.pt", f"{v} {{r}} {x}", needle="best.pt", setup=copy_run(change=unlink("best.pt")))
      for v, x in DAMAGED],
    CKP("report: run without best.pt works", "report {r} --out r.html", expect=0,
      setup=copy_run(change=unlink("best.pt"))),
    CKP("non-checkpoint .pt (a dict)", "predict x.pt {png}", needle="x.pt", setup=torch_file(lambda: {"a": 1})),
    CKP("non-checkpoint .pt (a tensor)", "plot-filters x.pt --out f.png", needle="x.pt",
      setup=torch_file(lambda: __import__("torch").zeros(3))),
    CKP("a state dict, not an nntrain checkpoint", "export x.pt --out m.onnx", needle="x.pt",
      setup=torch_file(lambda: __import__("torchvision").models.mobilenet_v3_small().state_dict())),
    CKP("pickle that would run code", "eval {r}", needle="best.pt", setup=copy_run(change=evil_best)),
    CKP("text best.pt", "eval {r}", needle="best.pt",
      setup=copy_run(change=lambda r: (r / "best.pt").write_text("not a model\n"))),
    CKP("run without config.yaml", "eval {r}", needle="config.yaml", setup=copy_run(change=unlink("config.yaml"))),
    CKP("run with a broken config.yaml", "eval {r}", needle="config.yaml",
      setup=copy_run(change=lambda r: (r / "config.yaml").write_text("model: [\n"))),
    CKP("runs: a broken summary.json is listed", "runs runs", expect=0, needle="damaged",
      setup=copy_run(change=lambda r: (r / "summary.json").write_text("{"), into="runs")),
    CKP("plot-curves: broken metrics.csv", "plot-curves {r} --out c.png", needle="metrics",
      setup=copy_run(change=lambda r: (r / "metrics.csv").write_text("epoch,train_loss\n1,abc,9\n"))),
    CKP("report: broken metrics.csv still renders", "report {r} --out r.html", expect=0,
      setup=copy_run(change=lambda r: (r / "metrics.csv").write_text("epoch,train_loss\n1,abc,9\n"))),
    CKP("eval: best.pt of another model", "eval {r}", needle="best.pt",
      setup=copy_run("mlp", change=lambda r: shutil.copy(Path(FIX["run"]) / "best.pt", r))),
    CKP("eval on changed npz data", "eval {npzrun}", needle="changed since training", setup=change_data),
    CKP("eval on changed image folder", "eval {ifrun}", needle="changed since training", setup=change_data),
    CKP("export on changed data (parity on today's split)", "export {npzrun} --out m.onnx", expect=0),
    CKP("predict ignores changed data", "predict {npzrun} {png}", expect=0),
    CKP("resume a finished run", "train --resume {r}", needle="finished", setup=copy_run()),
    CKP("resume: truncated last.pt", "train --resume {r}", needle="last.pt",
      setup=copy_run(change=lambda r: (truncate("last.pt")(r), unlink("summary.json")(r)))),
    CKP("resume: killed before first checkpoint", "train --resume {r}", needle="first checkpoint",
      setup=interrupted_run(signal.SIGKILL, rows=0, checkpoint="30"), timeout=180),
    # ----------------------------------------------------------------------- pretrained weights
    WTS("imagenet, empty TORCH_HOME", "train {resnet} --set model.weights=imagenet", needle="cache",
      env={"TORCH_HOME": "{torch_home}"}),
    WTS("unknown weights name", "train {resnet} --set model.weights=IMAGENET9K_V7", needle="IMAGENET9K"),
    WTS("missing weights file", "train {resnet} --set model.weights=nope.pth", needle="nope.pth"),
    WTS("mobilenet state dict for resnet18", "train {resnet} --set model.weights={mobilenet}", needle="mobilenet.pth"),
    WTS("an nntrain run of another model", "train {resnet} --set model.weights={run}", needle="cnn-"),
    WTS("text file as weights", "train {resnet} --set model.weights=w.pth", needle="w.pth",
        setup=write("w.pth", "hi\n")),
    WTS("imagenet for the small cnn", "train {tiny} --set model.weights=imagenet", needle="weights"),
    WTS("a run dir without best.pt", "train {resnet} --set model.weights={r}", needle="best.pt",
      setup=copy_run(change=unlink("best.pt"))),
    WTS("resnet18 state dict works", "train {resnet} --set model.weights={resnet18} "
      "--set data.dataset=npz --set data.root={npz}", expect=0, timeout=300),
    # ----------------------------------------------------------------------- faults
    FLT("SIGINT to train", "train {long}", expect=130, needle="Resume with", interrupt=signal.SIGINT,
      ready=rows_over(2), after=keep_hint("hint_int"), may_change=("*",)),
    FLT("the hinted resume finishes it", "{hint_int}", expect=0, cwd="hint_int_cwd", may_change=("*",), timeout=300),
    FLT("SIGTERM to train", "train {long}", expect=130, needle="Resume with", interrupt=signal.SIGTERM,
      ready=rows_over(2), after=keep_hint("hint_term"), may_change=("*",)),
    FLT("SIGTERM then resume", "{hint_term}", expect=0, cwd="hint_term_cwd", may_change=("*",), timeout=300),
    FLT("SIGINT to cv", "cv {tiny} --set train.epochs=3 --folds 3 --grid train.optimizer.lr=0.05,0.1", expect=130,
      needle="Resume with", interrupt=signal.SIGINT, ready=fold_done, after=keep_hint("hint_cv"), may_change=("*",),
      timeout=300),
    FLT("cv resume finishes it", "{hint_cv}", expect=0, needle="skipped", cwd="hint_cv_cwd", may_change=("*",),
        timeout=300),
    FLT("SIGTERM to cv --jobs 2", "cv {tiny} --set train.epochs=3 --folds 3 --jobs 2 --grid seed=0,1", expect=130,
      needle="Resume with", interrupt=signal.SIGTERM, ready=fold_done, after=keep_hint("hint_cv2"), may_change=("*",),
      timeout=300),
    FLT("cv --jobs 2 resume", "{hint_cv2}", expect=0, needle="skipped", cwd="hint_cv2_cwd", may_change=("*",),
        timeout=300),
    FLT("kill -9 mid-run, then resume", "train --resume {r}", expect=0, setup=interrupted_run(signal.SIGKILL),
      may_change=("r",), timeout=300),
    FLT("SIGINT to lr-sweep", "lr-sweep {tiny} --lrs 0.001,0.01,0.1,1 --epochs 30", expect=130, interrupt=signal.SIGINT,
      ready=lambda cwd, lines, v: any(ln.startswith("lr ") for ln in lines), may_change=("*",)),
    FLT("SIGTERM to sanity", "sanity --set device=cpu --set threads=1", expect=130, interrupt=signal.SIGTERM,
      ready=lambda cwd, lines, v: bool(lines), may_change=("*",)),
    FLT("two resumes of one run", "train --resume {r}", needle="being written by process", setup=interrupted_run(),
      background="train --resume {r}", ready=more_rows, may_change=("r",), timeout=180),
    # ----------------------------------------------------------------------- outputs that exist
    OUT("predict --out exists", "predict {run} {png} --out {o}", needle="p.csv", setup=existing("p.csv")),
    OUT("predict --out exists, --force", "predict {run} {png} --out {o} --force", expect=0, setup=existing("p.csv"),
      may_change=("o",)),
    OUT("predict --out is the input image", "predict {run} {o} --out {o}", needle="in.png",
      setup=lambda cwd: {"o": shutil.copy(FIX["png"], cwd / "in.png")}),
    OUT("plot-filters --out exists", "plot-filters {run} --out {o}", needle="f.png", setup=existing("f.png")),
    OUT("plot-filters --force", "plot-filters {run} --out {o} --force", expect=0, setup=existing("f.png"),
      may_change=("o",)),
    OUT("plot-curves --out exists", "plot-curves {run} {mlp} --out {o}", needle="c.png", setup=existing("c.png")),
    OUT("report --out exists", "report {run} --out {o}", needle="r.html", setup=existing("r.html")),
    OUT("report rebuilds the run's own report.html", "report {r}", expect=0, setup=copy_run(), may_change=("r",)),
    OUT("data --grid exists", "data --grid {o}", needle="g.png", setup=existing("g.png")),
    OUT("data --grid --force", "data --grid {o} --force", expect=0, setup=existing("g.png"), may_change=("o",)),
    OUT("export --out exists", "export {run} --out {o}", needle="m.onnx", setup=existing("m.onnx")),
    OUT("export default out exists", "export {run}", needle=".onnx",
      setup=lambda cwd: existing(Path(FIX["run"]).name + ".onnx")(cwd)),
    OUT("export safetensors --out exists", "export {run} --out {o}", needle="m.safetensors",
      setup=existing("m.safetensors")),
    OUT("export --force", "export {run} --out {o} --force", expect=0, setup=existing("m.onnx"), may_change=("o",)),
    OUT("eval --out exists", "eval {run} --out {o}", needle="e.png", setup=existing("e.png")),
    OUT("lr-sweep --out exists", "lr-sweep {tiny} --lrs 0.1 --epochs 1 --out {o}", needle="s.png",
      setup=existing("s.png")),
    OUT("train into a read-only runs dir", "train {tiny} --set output.runs_dir=ro", needle="ro",
      setup=lambda cwd: ((cwd / "ro").mkdir(),
        (cwd / "ro").chmod(0o555)), skip="root writes everywhere" if os.geteuid() == 0 else ""),
    # ----------------------------------------------------------------------- it works (and writes only where asked)
    WKS("eval a run", "eval {run}", expect=0),
    WKS("eval --split val --json", "eval {run} --split val --json", expect=0),
    WKS("predict a folder --json", "predict {run} {imgs} --json", expect=0),
    WKS("predict an npz to csv", "predict {run} {npz} --out p.csv", expect=0),
    WKS("export onnx", "export {run} --out m.onnx", expect=0),
    WKS("runs lists the runs", "runs {run}/..", expect=0, needle="cnn"),
    WKS("runs --compare", "runs --compare {run} {mlp}", expect=0),
    WKS("plot-curves two runs", "plot-curves {run} {mlp} --out c.png", expect=0),
    WKS("plot-filters mlp --compare-init", "plot-filters {mlp} --out f.png --compare-init", expect=0),
    WKS("report of a run to a file", "report {run} --out r.html", expect=0),
    WKS("config validate the defaults", f"config validate {shlex.quote(str(REPO / 'configs' / 'default.yaml'))}",
        expect=0),
]
# fmt: on


# --------------------------------------------------------------------------- the runner


def snapshot(root: Path) -> dict[str, str]:
    """Every file under root (a run's .lock aside): its sha256, or size and mtime when large or unreadable."""
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_file() and not p.is_symlink() and p.name != ".lock":
            st = p.stat()
            stamp = f"{st.st_size}:{st.st_mtime_ns}"
            try:
                out[str(p)] = hashlib.sha256(p.read_bytes()).hexdigest() if st.st_size < 2e6 else stamp
            except PermissionError:
                out[str(p)] = f"unreadable:{stamp}"
    return out


def fill(text: str, v: dict[str, str]) -> str:
    return text.format(**{k: shlex.quote(x) if x.startswith("/") else x for k, x in v.items()})


def run(args: list[str], cwd: Path, case: Case, env: dict, v: dict) -> tuple[int | str, str, str]:
    """The case's command, its stdin written, interrupted once ready when asked; (exit code or "timeout", out, err)."""
    p = popen(args, cwd, env, stdin=case.stdin is not None)
    out: list[str] = []
    err: list[str] = []
    readers = [threading.Thread(target=b.extend, args=(s,), daemon=True) for s, b in ((p.stdout, out), (p.stderr, err))]
    for r in readers:
        r.start()
    if case.stdin is not None:
        p.stdin.write(case.stdin)
        p.stdin.close()
    deadline = time.time() + case.timeout
    while case.interrupt and not case.ready(cwd, out, v) and time.time() < deadline and p.poll() is None:
        time.sleep(0.05)
    if case.interrupt:
        p.send_signal(case.interrupt)
    try:
        code: int | str = p.wait(timeout=max(1.0, deadline - time.time()))
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()
        code = "timeout"
    for r in readers:
        r.join(10)
    return code, "".join(out), "".join(err)


def judge(case: Case, code: int | str, out: str, err: str) -> tuple[list[str], bool]:
    """The case's problem (traceback, wrong exit or unclear; at most one), and whether a usage panel answered."""
    if "Traceback" in out + err:
        return ["traceback"], False
    if code != case.expect:
        return ["wrong exit"], False
    usage = False
    if case.expect == 2 and case.form == "error":
        lines = [ln for ln in err.splitlines() if ln.strip()]
        first = [n for n, ln in enumerate(lines) if ln.startswith("error:")]
        message = "\n".join(lines[first[0] :]) if first else ""
        if not first and err.count("╭─ Error") == 1:  # click's usage error: one message in a box
            message, usage = " ".join(err.split("╭─ Error")[1].replace("│", " ").split()), True
        clear = len(first) <= 1 and message and case.needle.lower() in message.lower()
    else:
        clear = case.needle.lower() in (out + err).lower()
    return ([] if clear else ["unclear"]), usage


def run_case(root: Path, i: int, case: Case) -> dict:
    cwd = Path(FIX.get(case.cwd, root)) if case.cwd else root / "cases" / f"{i:03d}"
    cwd.mkdir(parents=True, exist_ok=True)
    v = {**FIX, **SNIPPETS}
    result = dict(kind=case.kind, name=case.name, expect=case.expect, needle=case.needle, lost=[], litter=[])
    try:
        made = case.setup(cwd) if case.setup else None
        v.update({k: str(x) for k, x in made.items()} if isinstance(made, dict) else {})
        args, env = shlex.split(fill(case.cmd, v)), {k: fill(x, v) for k, x in case.env.items()}
    except Exception as e:  # a bug of this script (or an earlier case left out by --only): reported, the trial goes on
        return {**result, "command": case.cmd, "exit": None, "problems": ["setup failed"], "stderr_tail": repr(e)}
    allowed = [Path(v[k]) for k in case.may_change if k in v] + ([cwd] if "*" in case.may_change else [])
    before = {**snapshot(root / "shared"), **snapshot(cwd)}
    existed = set(cwd.rglob("*"))
    t0 = time.time()
    bg = popen(shlex.split(fill(case.background, v)), cwd) if case.background else None
    while bg and not case.ready(cwd, [], v) and time.time() < t0 + case.timeout and bg.poll() is None:
        time.sleep(0.05)  # the first process holds the run; the case's command runs meanwhile
    code, out, err = run(args, cwd, case, env, v)
    if bg:
        bg.send_signal(signal.SIGTERM)
        bg.communicate(timeout=120)
    seconds = time.time() - t0
    if case.after:
        case.after(cwd, out, err)
    after = {**snapshot(root / "shared"), **snapshot(cwd)}
    lost = [k for k, h in before.items() if after.get(k) != h and not any(Path(k).is_relative_to(a) for a in allowed)]
    problems, usage = judge(case, code, out, err)
    new = sorted(str(q.relative_to(cwd)) for q in set(cwd.rglob("*")) - existed)
    litter = new if case.expect == 2 and not bg else []
    problems += ["lost"] * bool(lost) + ["litter"] * bool(litter) + ["code ran"] * (cwd / "code-ran").exists()
    hide = lambda s: s.replace(str(root), "$TRIAL")
    return {**result, "command": hide("nntrain " + shlex.join(args)), "exit": code, "problems": problems,
            "lost": [hide(k) for k in sorted(lost)], "litter": litter, "usage_panel": usage,
            "stderr_tail": hide(err.strip()[-600:]), "seconds": round(seconds, 2)}  # fmt: skip


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, help="write the results as JSON here")
    ap.add_argument("--only", help="only the cases whose kind or name holds one of these words (comma-separated)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory (its path is printed)")
    a = ap.parse_args()
    if a.out and a.out.exists():
        sys.exit(f"error: {a.out} exists; choose another --out")
    t0 = time.time()
    root = Path(tempfile.mkdtemp(prefix="nntrain-trial-"))
    results, skipped = [], []
    try:
        build(root / "shared")
        print(f"fixtures built in {time.time() - t0:.0f}s", flush=True)
        for i, case in enumerate(CASES):
            if a.only and not any(w in case.kind or w in case.name for w in a.only.split(",")):
                continue
            if case.skip:
                skipped.append({"name": case.name, "why": case.skip})
                continue
            r = run_case(root, i, case)
            results.append(r)
            mark = ", ".join(r["problems"]) or "ok"
            took = f"{r.get('seconds', 0):6.1f}s"
            print(f"{i:3d} {case.kind:10s} {case.name[:52]:52s} exit {r['exit']!s:>7} {took} {mark}", flush=True)
    finally:
        for p in root.rglob("*"):  # chmod 000 files and read-only folders must not block the cleanup
            if not p.is_symlink():
                p.chmod(0o755 if p.is_dir() else 0o644)
        if a.keep:
            print(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    failing = [r for r in results if r["problems"]]
    if failing:
        print("\nfailing cases:")
    for r in failing:
        needle = f", needle {r['needle']!r}" if r["needle"] else ""
        what = f"(exit {r['exit']}, expected {r['expect']}{needle})"
        print(f"- [{', '.join(r['problems'])}] {r['kind']}: {r['name']}  {what}")
        print(f"    {r['command']}")
        for ln in (r["stderr_tail"].splitlines() or ["(no stderr)"])[-3:]:
            print(f"    | {ln}")
        for f in r["lost"] + [f"new: {x}" for x in r["litter"]]:
            print(f"    ! {f}")
    count = {k: sum(k in r["problems"] for r in results) for k in ("traceback", "wrong exit", "unclear", "lost")}
    extra = {k: sum(k in r["problems"] for r in results) for k in ("litter", "code ran", "setup failed")}
    extra["usage panels"] = sum(bool(r.get("usage_panel")) for r in results)
    took = time.time() - t0
    print(f"\ncases {len(results)} · tracebacks {count['traceback']} · wrong exit codes {count['wrong exit']} · "
          f"unclear {count['unclear']} · lost {count['lost']}")  # fmt: skip
    print(" · ".join(f"{k} {n}" for k, n in extra.items()) + f" · skipped {len(skipped)} · {took:.0f}s")
    if a.out:
        summary = {"cases": len(results), **count, **extra, "skipped": len(skipped), "seconds": round(took)}
        a.out.write_text(json.dumps({"summary": summary, "skipped": skipped, "cases": results}, indent=1) + "\n")
    return 1 if failing else 0


if __name__ == "__main__":
    sys.exit(main())
