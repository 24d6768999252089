"""The new-user trial (issue 32): bad input and faults, run through the real CLI, counted.

    python scripts/new_user_trial.py [--out results.json] [--only WORD] [--keep]

Builds its inputs in a temporary directory (tiny runs on the embedded digits, image folders, .npz files,
checkpoints, weights files), then runs each case below as ``python -m nntrain ...`` in a subprocess, in a fresh
working folder of its own, with a timeout. Every case states the exit code it expects (2 bad input, 130
interrupted, 0 should work) and a needle: a word (a key, a file name) that a clear message must contain.

A failing case is classified once, in this order:
  traceback   "Traceback" in stdout or stderr
  wrong exit  the exit code is not the expected one (or the case timed out)
  unclear     expected 2 but stderr is not one ``error:`` message, or the message lacks the needle;
              expected 0/130 but the output lacks the needle (e.g. the thread cap note, the resume hint)
and, independently,
  lost        a file that existed before the case (its inputs, the shared runs, an existing output)
              changed or disappeared, unless the case allows it (``--force``, a resume)
Also listed (not in the four counts): litter (a bad-input case left files in its working folder) and
code ran (an untrusted pickle executed).
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
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parent.parent
TINY = "--set device=cpu --set threads=1 --set model.channels=[4] --set model.hidden=[16] --set train.epochs=1"
LONG = TINY.replace("train.epochs=1", "train.epochs=400") + " --set output.checkpoint_seconds=0"
RESNET = "--set device=cpu --set threads=1 --set model.name=resnet18 --set data.image_size=32 --set train.epochs=1"


@dataclass
class Case:
    kind: str  # config | args | data | checkpoint | weights | fault | output | works
    name: str
    cmd: str  # arguments of nntrain; {placeholders} from the shared fixtures and the case's setup
    expect: int = 2
    needle: str = ""
    setup: Callable | None = None  # (ctx, cwd) -> dict of extra placeholders; the files it makes are guarded
    may_change: tuple = ()  # placeholders whose files may change (an output with --force, a resumed run)
    env: dict = field(default_factory=dict)
    stdin: str | None = None
    interrupt: int | None = None  # send this signal once ready(cwd, stdout_lines) holds
    ready: Callable | None = None
    background: str | None = None  # started first and kept running (until ready) while cmd runs
    after: Callable | None = None  # (ctx, cwd, stdout, stderr) -> None: keep what a later case needs
    cwd: str = ""  # run in the folder of an earlier case (a placeholder), not a fresh one
    form: str = "error"  # a clear refusal: one error: message; "report": the needle anywhere in the output
    skip: str = ""
    timeout: float = 120


class Ctx:
    def __init__(self, root: Path):
        self.root, self.shared = root, root / "shared"
        self.vars: dict[str, str] = {}
        self.code_marker = root / "code-ran"

    def path(self, key: str) -> Path:
        return Path(self.vars[key])


def nntrain(args: list[str], cwd: Path, env: dict | None = None, **kw) -> subprocess.CompletedProcess:
    e = {**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "200", "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.run([sys.executable, "-m", "nntrain", *args], cwd=cwd, env=e, capture_output=True, text=True, **kw)


def popen(args: list[str], cwd: Path, env: dict | None = None, stdin: str | None = None) -> subprocess.Popen:
    e = {**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "200", "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.Popen(
        [sys.executable, "-m", "nntrain", *args],
        cwd=cwd,
        env=e,
        stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


# --------------------------------------------------------------------------- fixtures


def images(root: Path, classes=("cat", "dog"), n=15, size=8, seed=0) -> Path:
    rng = np.random.default_rng(seed)
    for i, c in enumerate(classes):
        (root / c).mkdir(parents=True, exist_ok=True)
        for k in range(n):
            a = (rng.random((size, size, 3)) * 100 + i * 150).astype("uint8")
            Image.fromarray(a).save(root / c / f"{k}.png")
    return root


def npz(path: Path, n=40, k=2, **arrays) -> Path:
    rng = np.random.default_rng(1)
    y = np.arange(n) % k
    x = (rng.random((n, 8, 8)) * 60 + y[:, None, None] * 150).astype("uint8")
    np.savez(path, **{"x": x, "y": y, **arrays})
    return path


def train_fixture(ctx: Ctx, name: str, *sets: str) -> Path:
    runs = ctx.shared / "runs"
    args = ["train", *shlex.split(TINY), "--set", f"output.runs_dir={runs}", "--set", f"output.run_name={name}"]
    for s in sets:
        args += ["--set", s]
    res = nntrain(args, ctx.shared, timeout=300)
    if res.returncode != 0:
        sys.exit(f"fixture {name} failed:\n{res.stdout}\n{res.stderr}")
    (run,) = runs.glob(f"{name}-*")
    return run


def build(ctx: Ctx) -> None:
    import torch
    import torchvision

    s = ctx.shared
    s.mkdir(parents=True)
    v = ctx.vars
    v["imgs"] = str(images(s / "pets"))
    v["png"] = str(s / "pets" / "cat" / "0.png")
    v["npz"] = str(npz(s / "good.npz"))
    v["run"] = str(train_fixture(ctx, "cnn"))
    v["mlp"] = str(train_fixture(ctx, "mlp", "model.name=mlp"))
    v["npzrun"] = str(train_fixture(ctx, "npz", "data.dataset=npz", f"data.root={npz(s / 'changing.npz')}"))
    v["ifrun"] = str(
        train_fixture(ctx, "folder", "data.dataset=imagefolder", f"data.root={images(s / 'changing', seed=2)}")
    )
    (s / "w").mkdir()
    torch.save(torchvision.models.mobilenet_v3_small().state_dict(), s / "w" / "mobilenet.pth")
    torch.save(torchvision.models.resnet18(num_classes=10).state_dict(), s / "w" / "resnet18.pth")
    v["mobilenet"], v["resnet18"] = str(s / "w" / "mobilenet.pth"), str(s / "w" / "resnet18.pth")
    (s / "torch-home").mkdir()
    v["torch_home"] = str(s / "torch-home")
    v["tiny"], v["long"], v["resnet"] = TINY, LONG, RESNET


class Evil:  # unpickling it would create the marker file: a checkpoint that runs code
    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def write(name: str, content: str | bytes) -> Callable:
    """Setup: a file in the case's folder, as {f}."""

    def setup(ctx, cwd):
        p = cwd / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(content if isinstance(content, bytes) else content.encode())
        return {"f": str(p)}

    return setup


def cfg(text: str) -> Callable:
    return write("c.yaml", text)


def copy_run(key: str = "run", change: Callable | None = None) -> Callable:
    """Setup: a copy of a shared run as {r}, then change(r)."""

    def setup(ctx, cwd):
        r = Path(shutil.copytree(ctx.path(key), cwd / ctx.path(key).name))
        if change:
            change(r)
        return {"r": str(r)}

    return setup


def folder(change: Callable) -> Callable:
    """Setup: a good image folder as {d}, then change(d)."""

    def setup(ctx, cwd):
        d = images(cwd / "d")
        change(d)
        return {"d": str(d)}

    return setup


def npz_with(**kw) -> Callable:
    def setup(ctx, cwd):
        return {"f": str(npz(cwd / "d.npz", **kw))}

    return setup


def arrays(**arr) -> Callable:
    def setup(ctx, cwd):
        np.savez(cwd / "d.npz", **arr)
        return {"f": str(cwd / "d.npz")}

    return setup


def existing(name: str, also: Callable | None = None) -> Callable:
    """Setup: an output file that exists already, as {o}."""

    def setup(ctx, cwd):
        (cwd / name).write_bytes(b"my precious file\n")
        return {"o": str(cwd / name), **(also(ctx, cwd) if also else {})}

    return setup


def truncate(name: str) -> Callable:
    def change(r: Path):
        b = (r / name).read_bytes()
        (r / name).write_bytes(b[: len(b) // 2])

    return change


def unreadable(ctx, cwd):
    d = images(cwd / "d")
    (d / "cat" / "3.png").chmod(0)
    return {"d": str(d)}


def torch_file(obj_fn: Callable, name="x.pt") -> Callable:
    def setup(ctx, cwd):
        import torch

        torch.save(obj_fn(ctx), cwd / name)
        return {"f": str(cwd / name)}

    return setup


def mnist_partial(ctx, cwd):
    raw = cwd / "data" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    (raw / "train-images-idx3-ubyte").write_bytes(b"\0\0\x08\x03" + b"\0" * 12)
    return {"d": str(cwd / "data")}


def cifar_partial(ctx, cwd):
    d = cwd / "data" / "cifar-10-batches-py"
    d.mkdir(parents=True)
    (d / "data_batch_1").write_bytes(b"not a pickle")
    return {"d": str(cwd / "data")}


def rows_at_least(n: int) -> Callable:
    def ready(cwd: Path, lines: list[str], v: dict | None = None) -> bool:
        return any(len(m.read_text().splitlines()) > n for m in cwd.glob("runs/*/metrics.csv"))

    return ready


def fold_done(cwd: Path, lines: list[str], v: dict) -> bool:
    return any(re.match(r"cv trial \d+ fold 1/\d+: best val", ln) for ln in lines)


def keep_hint(key: str) -> Callable:
    """After: the printed resume command (as typed) as {key}, and the folder it was printed in as {key_cwd}."""

    def after(ctx, cwd, out, err):
        m = re.search(r"Resume with: nntrain (.*)$", err, re.M)
        ctx.vars[key] = m.group(1).strip() if m else "train --resume NO-HINT-PRINTED"
        ctx.vars[key + "_cwd"] = str(cwd)

    return after


def more_rows(cwd: Path, lines: list[str], v: dict) -> bool:
    """Ready: the run {r} has more epochs in metrics.csv than when the case began (its resume is training)."""
    return len((Path(v["r"]) / "metrics.csv").read_text().splitlines()) > int(v["rows"])


def interrupted_run(ctx, cwd):
    """Setup: a run stopped by SIGTERM after its second epoch, as {r} (relative: runs/<name>)."""
    p = popen(["train", *shlex.split(LONG)], cwd)
    deadline = time.time() + 120
    while not rows_at_least(2)(cwd, []) and time.time() < deadline and p.poll() is None:
        time.sleep(0.05)
    p.send_signal(signal.SIGTERM)
    p.communicate(timeout=60)
    (run,) = (cwd / "runs").iterdir()
    return {"r": str(run), "rows": str(len((run / "metrics.csv").read_text().splitlines()))}


def killed_early(ctx, cwd):
    """Setup: a run killed (SIGKILL) before its first checkpoint, as {r}."""
    p = popen(["train", *shlex.split(LONG.replace("checkpoint_seconds=0", "checkpoint_seconds=30"))], cwd)
    deadline = time.time() + 60
    while not list(cwd.glob("runs/*/config.yaml")) and time.time() < deadline:
        time.sleep(0.01)
    p.kill()
    p.communicate()
    (run,) = (cwd / "runs").iterdir()
    (run / "last.pt").unlink(missing_ok=True)
    return {"r": str(run)}


def change_data(ctx, cwd):
    npz(ctx.shared / "changing.npz", n=44)  # four more samples: another split, another test set
    more = ctx.shared / "changing" / "cat" / "extra.png"
    shutil.copy(ctx.path("png"), more)
    return {}


def no_class_folders(d: Path):
    for p in list(d.rglob("*.png")):
        shutil.move(str(p), d / f"{p.parent.name}-{p.name}")
    for c in ("cat", "dog"):
        (d / c).rmdir()


def evil_best(ctx, cwd):
    import torch

    r = copy_run()(ctx, cwd)
    torch.save({"model": Evil(ctx.code_marker)}, Path(r["r"]) / "best.pt")
    return r


def foreign_best(ctx, cwd):
    """Setup: the mlp run with the cnn's best.pt."""
    r = copy_run("mlp")(ctx, cwd)
    shutil.copy(ctx.path("run") / "best.pt", Path(r["r"]) / "best.pt")
    return r


def broken_summary(ctx, cwd):
    """Setup: a runs folder {d} holding a copy of the cnn run whose summary.json is cut."""
    (cwd / "runs").mkdir()
    r = copy_run(change=lambda r: (r / "summary.json").write_text("{"))(ctx, cwd / "runs")
    return {"d": str(Path(r["r"]).parent)}


# --------------------------------------------------------------------------- the cases

C = Case
YAML_BAD = {
    "unclosed list": ("model:\n  channels: [4, 8\n", "c.yaml"),
    "tab indent": ("train:\n\tepochs: 1\n", "c.yaml"),
    "mapping in scalar": ("train: epochs: 1\n", "c.yaml"),
    "unclosed quote": ('seed: "0\n', "c.yaml"),
    "list document": ("- train\n- model\n", "c.yaml"),
    "scalar document": ("just words\n", "c.yaml"),
    "section is a list": ("train: [1, 2]\n", "train"),
}
KEYS_BAD = {  # a config file with one wrong key or value -> the needle that must be named
    "unknown top key": ("foo: 1\n", "foo"),
    "typo train.epoch": ("train:\n  epoch: 5\n", "epoch"),
    "typo model.chanels": ("model:\n  chanels: [4]\n", "chanels"),
    "unknown nested optimizer key": ("train:\n  optimizer:\n    beta: 0.9\n", "beta"),
    "epochs: true": ("train:\n  epochs: true\n", "epochs"),
    "epochs: ten": ("train:\n  epochs: ten\n", "epochs"),
    "epochs: 1.5": ("train:\n  epochs: 1.5\n", "epochs"),
    "lr string": ("train:\n  optimizer:\n    lr: fast\n", "lr"),
    "batch_size list": ("train:\n  batch_size: [64]\n", "batch_size"),
    "channels scalar": ("model:\n  channels: 4\n", "channels"),
    "hidden string": ("model:\n  hidden: '16'\n", "hidden"),
    "hflip string": ("data:\n  augment:\n    hflip: maybe\n", "hflip"),
    "seed string": ("seed: abc\n", "seed"),
    "epochs 0": ("train:\n  epochs: 0\n", "epochs"),
    "epochs negative": ("train:\n  epochs: -3\n", "epochs"),
    "lr 0": ("train:\n  optimizer:\n    lr: 0\n", "lr"),
    "lr negative": ("train:\n  optimizer:\n    lr: -0.1\n", "lr"),
    "batch_size 0": ("train:\n  batch_size: 0\n", "batch_size"),
    "val_fraction 1.5": ("data:\n  val_fraction: 1.5\n", "val_fraction"),
    "fractions sum 1": ("data:\n  val_fraction: 0.5\n  test_fraction: 0.5\n", "fraction"),
    "dropout 1": ("model:\n  dropout: 1.0\n", "dropout"),
    "label_smoothing 0.9": ("train:\n  label_smoothing: 0.9\n", "label_smoothing"),
    "momentum 2": ("train:\n  optimizer:\n    momentum: 2\n", "momentum"),
    "channels [0]": ("model:\n  channels: [0]\n", "channels"),
    "image_size 0": ("data:\n  image_size: 0\n", "image_size"),
    "data.channels 2": ("data:\n  channels: 2\n", "channels"),
    "memory_limit negative": ("data:\n  memory_limit_mb: -1\n", "memory_limit_mb"),
    "checkpoint_seconds negative": ("output:\n  checkpoint_seconds: -1\n", "checkpoint_seconds"),
    "ema 1.5": ("train:\n  ema: 1.5\n", "ema"),
    "lr_decay 0": ("train:\n  lr_decay: 0\n", "lr_decay"),
    "patience 0": ("train:\n  patience: 0\n", "patience"),
    "class_weights length": ("train:\n  class_weights: [1, 2]\n", "class_weights"),
    "class_weights word": ("train:\n  class_weights: heavy\n", "class_weights"),
    "device tpu": ("device: tpu\n", "device"),
    "threads 0": ("threads: 0\n", "threads"),
    "threads word": ("threads: many\n", "threads"),
    "model.name vgg": ("model:\n  name: vgg\n", "vgg"),
    "optimizer lbfgs": ("train:\n  optimizer:\n    name: lbfgs\n", "lbfgs"),
    "schedule linear": ("train:\n  lr_schedule: linear\n", "lr_schedule"),
    "dataset imagenet": ("data:\n  dataset: imagenet\n", "imagenet"),
    "tta flip on digits": ("eval:\n  tta: flip\n", "tta"),
    "duplicate key": ("train:\n  epochs: 1\n  epochs: 2\n", "epochs"),
    "duplicate section": ("train:\n  epochs: 1\ntrain:\n  batch_size: 8\n", "train"),
    "freeze without pretrained": ("train:\n  freeze_epochs: 2\n", "freeze_epochs"),
    "backbone_lr syntax": ("train:\n  backbone_lr: 0.1y\n", "backbone_lr"),
    "imagefolder without root": ("data:\n  dataset: imagefolder\n", "data.root"),
    "warmup negative": ("train:\n  warmup_epochs: -1\n", "warmup_epochs"),
}
SETS_BAD = {  # --set argument -> needle
    "train.epochs": "train.epochs",
    "=5": "=5",
    "train..epochs=1": "train..epochs",
    "train.epochs=[1": "train.epochs",
    "train=5": "train",
    "train.optimizer=sgd": "train.optimizer",
    "model.channels=[4,x]": "model.channels",
    "data.augment.crop_padding=100": "crop_padding",
    "model.channels=[]": "channels",
    "model.channels=[4,4,4,4,4]": "channels",
    "model.hidden=[-1]": "hidden",
    "sanity.tiny_samples=0": "tiny_samples",
}

CASES: list[Case] = [
    *[C("config", f"yaml: {k}", "train -c {f}", needle=n, setup=cfg(t)) for k, (t, n) in YAML_BAD.items()],
    *[C("config", f"key: {k}", "train -c {f}", needle=n, setup=cfg(t)) for k, (t, n) in KEYS_BAD.items()],
    *[C("config", f"--set {s}", f"train {TINY} --set {shlex.quote(s)}", needle=n) for s, n in SETS_BAD.items()],
    C("config", "binary file as config", "train -c {f}", needle="c.yaml", setup=write("c.yaml", bytes(range(256)))),
    C("config", "utf-16 config", "train -c {f}", needle="c.yaml", setup=write("c.yaml", "seed: 1\n".encode("utf-16"))),
    C("config", "config is a folder", "train -c {imgs}", needle="pets"),
    C("config", "missing config file", "train -c nope.yaml", needle="nope.yaml"),
    C("config", "empty config file = defaults", "config show -c {f}", expect=0, setup=cfg("")),
    C("config", "amp fp16 on the CPU: fp32 with a note", f"train {TINY} --set train.amp=fp16", expect=0,
      needle="fp16"),
    C("config", "threads=1000 is capped with a note", f"train {TINY} --set threads=1000", expect=0, needle="thread"),
    C("config", "sanity: unknown key", "sanity -c {f}", needle="foo", setup=cfg("foo: 1\n")),
    C("config", "data: wrong type", "data -c {f}", needle="epochs", setup=cfg("train:\n  epochs: x\n")),
    C("config", "lr-sweep: bad --set", "lr-sweep --set train.epochs", needle="train.epochs"),
    C("config", "cv: unknown key", "cv -c {f}", needle="foo", setup=cfg("foo: 1\n")),
    C("config", "config show: bad --set", "config show --set model.name=vgg", needle="vgg"),
    C("config", "config validate: one bad", "config validate {f} nope.yaml", needle="nope.yaml", setup=cfg("seed: 1"),
      form="report"),
    C("config", "config validate: bad key", "config validate {f}", needle="foo", setup=cfg("foo: 1\n"), form="report"),
    C("config", "resume with --set", "train --resume {run} --set train.epochs=3", needle="--set"),
    # ----------------------------------------------------------------------- arguments, verb by verb
    C("args", "unknown verb", "trian", needle="trian"),
    C("args", "unknown option", "train --epochs 3", needle="--epochs"),
    C("args", "eval: missing run dir", "eval", needle="run_dir"),
    C("args", "eval: nonexistent run dir", "eval runs/nope", needle="nope"),
    C("args", "eval: a file, not a run", "eval {png}", needle="0.png"),
    C("args", "eval: not a run dir", "eval {imgs}", needle="pets"),
    C("args", "eval: --split train", "eval {run} --split train", needle="split"),
    C("args", "eval: --split foo", "eval {run} --split foo", needle="foo"),
    C("args", "eval: --out folder missing", "eval {run} --out nodir/c.png", needle="nodir"),
    C("args", "eval: --out not png", "eval {run} --out c.txt", needle="c.txt"),
    C("args", "predict: no inputs", "predict {run}", needle="inputs"),
    C("args", "predict: nonexistent source", "predict runs/nope {png}", needle="nope"),
    C("args", "predict: nonexistent image", "predict {run} nope.png", needle="nope.png"),
    C("args", "predict: glob matches nothing", "predict {run} 'x/*.png'", needle="x/*.png"),
    C("args", "predict: --top-k 0", "predict {run} {png} --top-k 0", needle="top-k"),
    C("args", "predict: --top-k abc", "predict {run} {png} --top-k abc", needle="top-k"),
    C("args", "predict: --batch-size 0", "predict {run} {png} --batch-size 0", needle="batch-size"),
    C("args", "predict: --out .txt", "predict {run} {png} --out p.txt", needle="p.txt"),
    C("args", "predict: --device cuda:7", "predict {run} {png} --device cuda:7", needle="cuda"),
    C("args", "predict: --device tpu", "predict {run} {png} --device tpu", needle="tpu"),
    C("args", "predict: stdin names a missing file", "predict {run} -", needle="gone.png", stdin="gone.png\n"),
    C("args", "predict: empty stdin", "predict {run} -", needle="stdin", stdin=""),
    C("args", "export: --format foo", "export {run} --format foo", needle="foo"),
    C("args", "export: --out .zip", "export {run} --out m.zip", needle="m.zip"),
    C("args", "export: --format vs --out", "export {run} --format pt2 --out m.onnx", needle="m.onnx"),
    C("args", "export: nonexistent source", "export runs/nope", needle="nope"),
    C("args", "report: nonexistent dir", "report runs/nope --out r.html", needle="nope"),
    C("args", "report: not a run", "report {imgs} --out r.html", needle="pets"),
    C("args", "report: --out a folder", "report {run} --out {imgs}", needle="pets"),
    C("args", "runs: nonexistent dir", "runs nope", needle="nope"),
    C("args", "runs: --sort foo", "runs {run}/.. --sort foo", needle="foo"),
    C("args", "runs: --compare one run", "runs --compare {run}", needle="compare"),
    C("args", "runs: --compare a non-run", "runs --compare {run} {imgs}", needle="pets"),
    C("args", "plot-filters: no --out", "plot-filters {run}", needle="--out"),
    C("args", "plot-filters: nonexistent", "plot-filters runs/nope --out f.png", needle="nope"),
    C("args", "plot-filters: --compare-init without init.pt", "plot-filters {r} --out f.png --compare-init",
      needle="init.pt", setup=copy_run(change=lambda r: (r / "init.pt").unlink())),
    C("args", "plot-curves: nonexistent", "plot-curves runs/nope --out c.png", needle="nope"),
    C("args", "plot-curves: not a run", "plot-curves {imgs} --out c.png", needle="pets"),
    C("args", "plot-curves: no runs", "plot-curves --out c.png", needle="runs"),
    C("args", "cv: --folds 1", "cv {tiny} --folds 1", needle="folds"),
    C("args", "cv: --folds 0", "cv {tiny} --folds 0", needle="folds"),
    C("args", "cv: --folds 5000", "cv {tiny} --folds 5000", needle="folds"),
    C("args", "cv: --grid without =", "cv {tiny} --folds 2 --grid train.optimizer.lr", needle="--grid"),
    C("args", "cv: --grid unknown key", "cv {tiny} --folds 2 --grid train.lrr=0.1,0.2", needle="lrr"),
    C("args", "cv: --grid bad value", "cv {tiny} --folds 2 --grid train.epochs=1,x", needle="epochs"),
    C("args", "cv: --sample bad", "cv {tiny} --folds 2 --sample train.optimizer.lr=log:1", needle="--sample"),
    C("args", "cv: --sample log of 0", "cv {tiny} --folds 2 --sample train.optimizer.lr=log:0:1", needle="log"),
    C("args", "cv: --trials 0", "cv {tiny} --folds 2 --sample model.dropout=uniform:0:0.5 --trials 0",
      needle="trials"),
    C("args", "cv: --sampler foo", "cv {tiny} --folds 2 --sampler foo", needle="foo"),
    C("args", "cv: --pruner foo", "cv {tiny} --folds 2 --pruner foo", needle="foo"),
    C("args", "cv: --jobs 0", "cv {tiny} --folds 2 --jobs 0", needle="jobs"),
    C("args", "cv: --executor foo", "cv {tiny} --folds 2 --executor foo", needle="foo"),
    C("args", "cv: --storage foo://", "cv {tiny} --folds 2 --grid seed=1,2 --storage foo://x", needle="foo://"),
    C("args", "cv: --resume nonexistent", "cv --resume runs/cv-nope", needle="cv-nope"),
    C("args", "cv: --resume a train run", "cv --resume {run}", needle="cnn-"),
    C("args", "lr-sweep: --lrs abc", "lr-sweep {tiny} --lrs abc", needle="abc"),
    C("args", "lr-sweep: --lrs -1", "lr-sweep {tiny} --lrs=-1", needle="-1"),
    C("args", "lr-sweep: --lrs empty", "lr-sweep {tiny} --lrs ''", needle="lrs"),
    C("args", "lr-sweep: --epochs 0", "lr-sweep {tiny} --epochs 0", needle="epochs"),
    C("args", "data: --images 0", "data --images 0", needle="images"),
    C("args", "data: --grid not png", "data --grid g.txt", needle="g.txt"),
    C("args", "config validate: no files", "config validate", needle="validate"),
    C("args", "train --resume nonexistent", "train --resume runs/nope", needle="nope"),
    C("args", "train --resume not a run", "train --resume {imgs}", needle="pets"),
    # ----------------------------------------------------------------------- data
    C("data", "folder does not exist", "data --set data.dataset=imagefolder --set data.root=nope", needle="nope"),
    C("data", "root is a file", "data --set data.dataset=imagefolder --set data.root={png}", needle="0.png"),
    C("data", "no images", "data --set data.dataset=imagefolder --set data.root={d}", needle="image",
      setup=folder(lambda d: [p.unlink() for p in d.rglob("*.png")])),
    C("data", "no class folders", "data --set data.dataset=imagefolder --set data.root={d}", needle="class",
      setup=folder(no_class_folders)),
    C("data", "one class", "data --set data.dataset=imagefolder --set data.root={d}", needle="class",
      setup=folder(lambda d: shutil.rmtree(d / "dog"))),
    C("data", "empty class folder", "data --set data.dataset=imagefolder --set data.root={d}", needle="bird",
      setup=folder(lambda d: (d / "bird").mkdir())),
    C("data", "corrupt jpeg", "data --set data.dataset=imagefolder --set data.root={d}", needle="bad.jpg",
      setup=folder(lambda d: (d / "cat" / "bad.jpg").write_bytes(b"\xff\xd8\xff\xe0" + os.urandom(200)))),
    C("data", "truncated png", "train {tiny} --set data.dataset=imagefolder --set data.root={d}", needle="1.png",
      setup=folder(lambda d: (d / "dog" / "1.png").write_bytes((d / "dog" / "1.png").read_bytes()[:40]))),
    C("data", "text named .png", "train {tiny} --set data.dataset=imagefolder --set data.root={d}", needle="notes.png",
      setup=folder(lambda d: (d / "cat" / "notes.png").write_text("hello\n"))),
    C("data", "zero-byte .jpg", "data --set data.dataset=imagefolder --set data.root={d}", needle="empty.jpg",
      setup=folder(lambda d: (d / "dog" / "empty.jpg").write_bytes(b""))),
    C("data", "unreadable file (chmod 000)", "data --set data.dataset=imagefolder --set data.root={d}",
      needle="3.png", setup=unreadable, skip="root reads every file" if os.geteuid() == 0 else ""),
    C("data", "a README among images is ignored", "data --set data.dataset=imagefolder --set data.root={d}",
      expect=0, setup=folder(lambda d: (d / "cat" / "README.txt").write_text("about cats\n"))),
    C("data", "mixed sizes and modes work", "train {tiny} --set data.dataset=imagefolder --set data.root={d}",
      expect=0, setup=folder(lambda d: Image.new("L", (20, 12)).save(d / "dog" / "odd.png"))),
    C("data", "npz: missing file", "data --set data.dataset=npz --set data.root=nope.npz", needle="nope.npz"),
    C("data", "npz: no root", "data --set data.dataset=npz", needle="data.root"),
    C("data", "npz: text file", "data --set data.dataset=npz --set data.root={f}", needle="d.npz",
      setup=write("d.npz", "x,y\n1,2\n")),
    C("data", "npz: without x", "data --set data.dataset=npz --set data.root={f}", needle="x",
      setup=arrays(images=np.zeros((10, 8, 8)), y=np.arange(10) % 2)),
    C("data", "npz: without y", "data --set data.dataset=npz --set data.root={f}", needle="y",
      setup=arrays(x=np.zeros((10, 8, 8)))),
    C("data", "npz: x/y lengths differ", "data --set data.dataset=npz --set data.root={f}", needle="labels",
      setup=arrays(x=np.zeros((10, 8, 8)), y=np.arange(9) % 2)),
    C("data", "npz: x is 2-D", "data --set data.dataset=npz --set data.root={f}", needle="dimensions",
      setup=arrays(x=np.zeros((10, 64)), y=np.arange(10) % 2)),
    C("data", "npz: float labels", "data --set data.dataset=npz --set data.root={f}", needle="y",
      setup=arrays(x=np.zeros((10, 8, 8)), y=np.arange(10) * 0.5)),
    C("data", "npz: negative label", "data --set data.dataset=npz --set data.root={f}", needle="-1",
      setup=arrays(x=np.zeros((10, 8, 8)), y=np.array([-1, 0, 1, 0, 1, 0, 1, 0, 1, 0]))),
    C("data", "npz: one class", "data --set data.dataset=npz --set data.root={f}", needle="class",
      setup=arrays(x=np.zeros((10, 8, 8)), y=np.zeros(10, dtype=int))),
    C("data", "npz: NaN images", "data --set data.dataset=npz --set data.root={f}", needle="NaN",
      setup=arrays(x=np.full((10, 8, 8), np.nan), y=np.arange(10) % 2)),
    C("data", "npz: object array", "data --set data.dataset=npz --set data.root={f}", needle="d.npz",
      setup=arrays(x=np.array([[1], [1, 2]], dtype=object), y=np.arange(2))),
    C("data", "npz: classes length", "data --set data.dataset=npz --set data.root={f}", needle="classes",
      setup=npz_with(classes=np.array(["a", "b", "c"]))),
    C("data", "npz: too few samples to split", "train {tiny} --set data.dataset=npz --set data.root={f}",
      needle="sample", setup=npz_with(n=4)),
    C("data", "mnist: missing files", "data --set data.dataset=mnist --set data.root={d}", needle="t10k",
      setup=mnist_partial),
    C("data", "mnist: empty root", "data --set data.dataset=mnist --set data.root=nodata", needle="nodata"),
    C("data", "cifar10: corrupt batch", "data --set data.dataset=cifar10 --set data.root={d}",
      needle="cifar-10-batches-py", setup=cifar_partial),
    C("data", "crop_padding larger than an 8x8 image", "data --set data.augment.crop_padding=100",
      needle="crop_padding"),
    C("data", "image_size 2 with two conv stages", "train {tiny} --set data.image_size=2 --set model.channels=[4,4,4]",
      needle="channels"),
    # ----------------------------------------------------------------------- checkpoints and runs
    *[
        C("checkpoint", f"{verb}: truncated best.pt", f"{verb} {{r}} {extra}", needle="best.pt",
          setup=copy_run(change=truncate("best.pt")))
        for verb, extra in [("eval", ""), ("predict", "{png}"), ("export", "--out m.onnx"),
                            ("plot-filters", "--out f.png")]
    ],
    *[
        C("checkpoint", f"{verb}: run without best.pt", f"{verb} {{r}} {extra}", needle="best.pt",
          setup=copy_run(change=lambda r: (r / "best.pt").unlink()))
        for verb, extra in [("eval", ""), ("predict", "{png}"), ("export", "--out m.onnx"),
                            ("plot-filters", "--out f.png")]
    ],
    C("checkpoint", "report: run without best.pt works", "report {r} --out r.html", expect=0,
      setup=copy_run(change=lambda r: (r / "best.pt").unlink())),
    C("checkpoint", "non-checkpoint .pt (a dict)", "predict {f} {png}", needle="x.pt",
      setup=torch_file(lambda ctx: {"hello": 1})),
    C("checkpoint", "non-checkpoint .pt (a tensor)", "plot-filters {f} --out f.png", needle="x.pt",
      setup=torch_file(lambda ctx: __import__("torch").zeros(3))),
    C("checkpoint", "a state dict, not an nntrain checkpoint", "export {f} --out m.onnx", needle="x.pt",
      setup=torch_file(lambda ctx: __import__("torchvision").models.mobilenet_v3_small().state_dict())),
    C("checkpoint", "pickle that would run code", "eval {r}", needle="best.pt", setup=evil_best),
    C("checkpoint", "text best.pt", "eval {r}", needle="best.pt",
      setup=copy_run(change=lambda r: (r / "best.pt").write_text("not a model\n"))),
    C("checkpoint", "run without config.yaml", "eval {r}", needle="config.yaml",
      setup=copy_run(change=lambda r: (r / "config.yaml").unlink())),
    C("checkpoint", "run with a broken config.yaml", "eval {r}", needle="config.yaml",
      setup=copy_run(change=lambda r: (r / "config.yaml").write_text("model: [\n"))),
    C("checkpoint", "runs: a broken summary.json is listed", "runs {d}", expect=0, setup=broken_summary),
    C("checkpoint", "report: broken metrics.csv", "report {r} --out r.html", needle="metrics.csv",
      setup=copy_run(change=lambda r: (r / "metrics.csv").write_text("epoch,train_loss\n1,abc,9\n"))),
    C("checkpoint", "eval: best.pt of another model", "eval {r}", needle="best.pt", setup=foreign_best),
    C("checkpoint", "eval on changed npz data", "eval {npzrun}", needle="changing.npz", setup=change_data),
    C("checkpoint", "eval on changed image folder", "eval {ifrun}", needle="changing", setup=change_data),
    C("checkpoint", "export on changed data", "export {npzrun} --out m.onnx", needle="changing.npz"),
    C("checkpoint", "predict ignores changed data", "predict {npzrun} {png}", expect=0),
    C("checkpoint", "resume a finished run", "train --resume {r}", needle="finished", setup=copy_run()),
    C("checkpoint", "resume: truncated last.pt", "train --resume {r}", needle="last.pt",
      setup=copy_run(change=lambda r: (truncate("last.pt")(r), (r / "summary.json").unlink()))),
    C("checkpoint", "resume: killed before first checkpoint", "train --resume {r}", needle="first checkpoint",
      setup=killed_early, timeout=180),
    # ----------------------------------------------------------------------- pretrained weights
    C("weights", "imagenet, empty TORCH_HOME", "train {resnet} --set model.weights=imagenet", needle="cache",
      env={"TORCH_HOME": "{torch_home}"}),
    C("weights", "unknown weights name", "train {resnet} --set model.weights=IMAGENET9K_V7", needle="IMAGENET9K"),
    C("weights", "missing weights file", "train {resnet} --set model.weights=nope.pth", needle="nope.pth"),
    C("weights", "mobilenet state dict for resnet18", "train {resnet} --set model.weights={mobilenet}",
      needle="mobilenet.pth"),
    C("weights", "an nntrain run of another model", "train {resnet} --set model.weights={run}", needle="cnn-"),
    C("weights", "text file as weights", "train {resnet} --set model.weights={f}", needle="w.pth",
      setup=write("w.pth", "hello\n")),
    C("weights", "imagenet for the small cnn", f"train {TINY} --set model.weights=imagenet", needle="weights"),
    C("weights", "a run dir without best.pt", "train {resnet} --set model.weights={r}", needle="best.pt",
      setup=copy_run(change=lambda r: (r / "best.pt").unlink())),
    C("weights", "resnet18 state dict works", "train {resnet} --set model.weights={resnet18} "
      "--set data.dataset=npz --set data.root={npz}", expect=0, timeout=300),
    # ----------------------------------------------------------------------- faults
    C("fault", "SIGINT to train", "train {long}", expect=130, needle="Resume with", interrupt=signal.SIGINT,
      ready=rows_at_least(2), after=keep_hint("hint_int"), may_change=("*",)),
    C("fault", "the hinted resume finishes it", "{hint_int}", expect=0, cwd="hint_int_cwd", may_change=("*",),
      timeout=300),
    C("fault", "SIGTERM to train", "train {long}", expect=130, needle="Resume with", interrupt=signal.SIGTERM,
      ready=rows_at_least(2), after=keep_hint("hint_term"), may_change=("*",)),
    C("fault", "SIGTERM then resume", "{hint_term}", expect=0, cwd="hint_term_cwd", may_change=("*",), timeout=300),
    C("fault", "SIGINT to cv", "cv {tiny} --set train.epochs=3 --folds 3 --grid train.optimizer.lr=0.05,0.1",
      expect=130, needle="Resume with", interrupt=signal.SIGINT, ready=fold_done, after=keep_hint("hint_cv"),
      may_change=("*",), timeout=300),
    C("fault", "cv resume finishes it", "{hint_cv}", expect=0, needle="skipped", cwd="hint_cv_cwd",
      may_change=("*",), timeout=300),
    C("fault", "SIGTERM to cv --jobs 2", "cv {tiny} --set train.epochs=3 --folds 3 --jobs 2 --grid seed=0,1",
      expect=130, needle="Resume with", interrupt=signal.SIGTERM, ready=fold_done, after=keep_hint("hint_cv2"),
      may_change=("*",), timeout=300),
    C("fault", "cv --jobs 2 resume", "{hint_cv2}", expect=0, needle="skipped", cwd="hint_cv2_cwd",
      may_change=("*",), timeout=300),
    C("fault", "two resumes of one run", "train --resume {r}", needle="pid", setup=interrupted_run,
      background="train --resume {r}", ready=more_rows, may_change=("r",), timeout=180),
    # ----------------------------------------------------------------------- outputs that exist
    C("output", "predict --out exists", "predict {run} {png} --out {o}", needle="p.csv", setup=existing("p.csv")),
    C("output", "predict --out exists, --force", "predict {run} {png} --out {o} --force", expect=0,
      setup=existing("p.csv"), may_change=("o",)),
    C("output", "plot-filters --out exists", "plot-filters {run} --out {o}", needle="f.png", setup=existing("f.png")),
    C("output", "plot-filters --force", "plot-filters {run} --out {o} --force", expect=0,
      setup=existing("f.png"), may_change=("o",)),
    C("output", "plot-curves --out exists", "plot-curves {run} {mlp} --out {o}", needle="c.png",
      setup=existing("c.png")),
    C("output", "report --out exists", "report {run} --out {o}", needle="r.html", setup=existing("r.html")),
    C("output", "report --out is the run's report.html, read-only", "report {r}", expect=0,
      setup=copy_run(), may_change=("r",)),
    C("output", "data --grid exists", "data --grid {o}", needle="g.png", setup=existing("g.png")),
    C("output", "data --grid --force", "data --grid {o} --force", expect=0, setup=existing("g.png"),
      may_change=("o",)),
    C("output", "export --out exists", "export {run} --out {o}", needle="m.onnx", setup=existing("m.onnx")),
    C("output", "export default out exists", "export {run}", needle=".onnx",
      setup=lambda ctx, cwd: existing(ctx.path("run").name + ".onnx")(ctx, cwd)),
    C("output", "export --format safetensors --out exists", "export {run} --out {o}", needle="m.safetensors",
      setup=existing("m.safetensors")),
    C("output", "export --force", "export {run} --out {o} --force", expect=0, setup=existing("m.onnx"),
      may_change=("o",)),
    C("output", "eval --out exists", "eval {run} --out {o}", needle="e.png", setup=existing("e.png")),
    C("output", "lr-sweep --out exists", "lr-sweep {tiny} --lrs 0.1 --epochs 1 --out {o}", needle="s.png",
      setup=existing("s.png")),
    C("output", "predict --out the input image", "predict {run} {o} --out {o}", needle="in.png",
      setup=lambda ctx, cwd: {"o": str(shutil.copy(ctx.path("png"), cwd / "in.png"))}),
    C("output", "train into a read-only runs dir", f"train {TINY} --set output.runs_dir={{d}}", needle="ro",
      setup=lambda ctx, cwd: ((cwd / "ro").mkdir(), (cwd / "ro").chmod(0o555), {"d": str(cwd / "ro")})[-1],
      skip="root writes everywhere" if os.geteuid() == 0 else ""),
    # ----------------------------------------------------------------------- it works (and writes nothing)
    C("works", "eval a run", "eval {run}", expect=0),
    C("works", "eval --split val --json", "eval {run} --split val --json", expect=0),
    C("works", "predict a folder --json", "predict {run} {imgs} --json", expect=0),
    C("works", "predict an npz to csv", "predict {run} {npz} --out p.csv", expect=0),
    C("works", "export onnx then predict with it", "export {run} --out m.onnx", expect=0),
    C("works", "runs lists the runs", "runs {run}/..", expect=0, needle="cnn"),
    C("works", "runs --compare", "runs --compare {run} {mlp}", expect=0),
    C("works", "plot-curves two runs", "plot-curves {run} {mlp} --out c.png", expect=0),
    C("works", "plot-filters mlp --compare-init", "plot-filters {mlp} --out f.png --compare-init", expect=0),
    C("works", "report of a run to a file", "report {run} --out r.html", expect=0),
    C("works", "config validate the defaults", "config validate {f}", expect=0,
      setup=lambda ctx, cwd: {"f": str(REPO / "configs" / "default.yaml")}),
]


# --------------------------------------------------------------------------- the runner


def snapshot(*roots: Path) -> dict[str, str]:
    out = {}
    for root in roots:
        for p in sorted(root.rglob("*")) if root.is_dir() else [root] if root.exists() else []:
            if p.is_file() and not p.is_symlink():
                st = p.stat()
                small = st.st_size < 2_000_000
                try:
                    out[str(p)] = hashlib.sha256(p.read_bytes()).hexdigest() if small else f"{st.st_size}:{st.st_mtime_ns}"
                except PermissionError:
                    out[str(p)] = f"unreadable:{st.st_size}:{st.st_mtime_ns}"
    return out


def fill(text: str, v: dict[str, str]) -> str:
    return text.format(**{k: (x if k in ("tiny", "long", "resnet") or k.startswith("hint") else shlex.quote(x))
                          for k, x in v.items()})


def run_case(ctx: Ctx, i: int, case: Case) -> dict:
    cwd = Path(ctx.vars[case.cwd]) if case.cwd else ctx.root / "cases" / f"{i:03d}"
    cwd.mkdir(parents=True, exist_ok=True)
    v = dict(ctx.vars)
    try:
        v.update(case.setup(ctx, cwd) if case.setup else {})
    except Exception as e:  # a bug of this script, not of nntrain: reported, the trial goes on
        return {"kind": case.kind, "name": case.name, "command": case.cmd, "expect": case.expect, "exit": None,
                "needle": case.needle, "problems": ["setup failed"], "lost": [], "litter": [], "usage_panel": False,
                "stderr_tail": repr(e), "seconds": 0}
    args = shlex.split(fill(case.cmd, v))
    env = {k: fill(x, v) for k, x in case.env.items()}
    allowed = [Path(v[k]) for k in case.may_change if k in v]
    guarded = [ctx.shared, cwd] if "*" not in case.may_change else [ctx.shared]
    before = snapshot(*guarded)
    existed = set(p for p in cwd.rglob("*"))
    bg = popen(shlex.split(fill(case.background, v)), cwd) if case.background else None
    t0 = time.time()
    out_lines: list[str] = []
    err_lines: list[str] = []
    p = popen(args, cwd, env, case.stdin) if not bg else None
    if bg:  # the first process holds the run; the case's command runs meanwhile
        deadline = time.time() + case.timeout
        while case.ready and not case.ready(cwd, [], v) and time.time() < deadline and bg.poll() is None:
            time.sleep(0.05)
        p = popen(args, cwd, env, case.stdin)
    readers = [threading.Thread(target=lambda s=s, b=b: b.extend(s), daemon=True)
               for s, b in ((p.stdout, out_lines), (p.stderr, err_lines))]
    for r in readers:
        r.start()
    if case.stdin is not None:
        p.stdin.write(case.stdin)
        p.stdin.close()
    timed_out = False
    if case.interrupt:
        deadline = time.time() + case.timeout
        while not case.ready(cwd, out_lines, v) and time.time() < deadline and p.poll() is None:
            time.sleep(0.05)
        p.send_signal(case.interrupt)
    try:
        p.wait(timeout=case.timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()
        timed_out = True
    for r in readers:
        r.join(10)
    if bg:
        bg.send_signal(signal.SIGTERM)
        bg.communicate(timeout=120)
    seconds = time.time() - t0
    out, err = "".join(out_lines), "".join(err_lines)
    if case.after:
        case.after(ctx, cwd, out, err)
    after = snapshot(*guarded)
    lost = sorted(
        k for k, h in before.items()
        if after.get(k) != h and not any(Path(k).is_relative_to(a) for a in allowed)
    )
    problems, usage = [], False
    if "Traceback" in out + err:
        problems.append("traceback")
    elif timed_out or p.returncode != case.expect:
        problems.append("wrong exit")
    elif case.expect == 2 and case.form == "error":
        lines = [ln for ln in err.splitlines() if ln.strip()]
        first = [n for n, ln in enumerate(lines) if ln.startswith("error:")]
        message = "\n".join(lines[first[0] :]) if first else ""
        if not first and err.count("╭─ Error") == 1:  # click's usage error panel: one message, in a box
            message, usage = " ".join(err.split("╭─ Error")[1].replace("│", " ").split()), True
        if len(first) > 1 or not message or (case.needle and case.needle.lower() not in message.lower()):
            problems.append("unclear")
    elif case.needle and case.needle.lower() not in (out + err).lower():
        problems.append("unclear")
    if lost:
        problems.append("lost")
    litter = []
    if case.expect == 2 and not bg:
        litter = sorted(str(q.relative_to(cwd)) for q in cwd.rglob("*") if q not in existed)
        if litter:
            problems.append("litter")
    if ctx.code_marker.exists():
        problems.append("code ran")
        ctx.code_marker.unlink()
    return {
        "kind": case.kind,
        "name": case.name,
        "command": "nntrain " + shlex.join(args).replace(str(ctx.root), "$TRIAL"),
        "expect": case.expect,
        "exit": "timeout" if timed_out else p.returncode,
        "needle": case.needle,
        "problems": problems,
        "lost": [k.replace(str(ctx.root), "$TRIAL") for k in lost],
        "litter": litter,
        "usage_panel": usage,
        "stderr_tail": err.strip()[-600:].replace(str(ctx.root), "$TRIAL"),
        "seconds": round(seconds, 2),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, help="write the results as JSON here")
    ap.add_argument("--only", help="run only the cases whose kind or name contains this")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory (its path is printed)")
    a = ap.parse_args()
    if a.out and a.out.exists():
        sys.exit(f"error: {a.out} exists; choose another --out")
    t0 = time.time()
    root = Path(tempfile.mkdtemp(prefix="nntrain-trial-"))
    ctx = Ctx(root)
    results, skipped = [], []
    try:
        build(ctx)
        print(f"fixtures built in {time.time() - t0:.0f}s", flush=True)
        for i, case in enumerate(CASES):
            if a.only and not any(w in case.kind or w in case.name for w in a.only.split(",")):
                continue
            if case.skip:
                skipped.append({"name": case.name, "why": case.skip})
                continue
            r = run_case(ctx, i, case)
            results.append(r)
            mark = ", ".join(r["problems"]) or "ok"
            print(f"{i:3d} {case.kind:10s} {case.name[:52]:52s} exit {r['exit']!s:>7} {r['seconds']:6.1f}s {mark}",
                  flush=True)
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
            print(f"- [{', '.join(r['problems'])}] {r['kind']}: {r['name']}  (exit {r['exit']}, expected {r['expect']}"
                  f"{', needle ' + repr(r['needle']) if r['needle'] else ''})\n    {r['command']}")
            for ln in (r["stderr_tail"].splitlines() or ["(no stderr)"])[-3:]:
                print(f"    | {ln}")
            for f in r["lost"] + [f"new: {x}" for x in r["litter"]]:
                print(f"    ! {f}")
    count = {k: sum(k in r["problems"] for r in results) for k in ("traceback", "wrong exit", "unclear", "lost")}
    extra = {k: sum(k in r["problems"] for r in results) for k in ("litter", "code ran", "setup failed")}
    extra["usage panels"] = sum(r["usage_panel"] for r in results)
    took = time.time() - t0
    print(f"\ncases {len(results)} · tracebacks {count['traceback']} · wrong exit codes {count['wrong exit']} · "
          f"unclear {count['unclear']} · lost {count['lost']}")
    print(" · ".join(f"{k} {n}" for k, n in extra.items()) + f" · skipped {len(skipped)} · {took:.0f}s")
    if a.out:
        a.out.write_text(json.dumps({"summary": {"cases": len(results), **count, **extra, "seconds": round(took)},
                                     "skipped": skipped, "cases": results}, indent=1) + "\n")
    return 1 if failing else 0


if __name__ == "__main__":
    sys.exit(main())
