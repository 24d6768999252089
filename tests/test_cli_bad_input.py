"""What a new user hit (issue 13): bad input gives one ``error:`` line and exit 2, reading a run never
writes into it, and a run evaluated on changed data or with a foreign checkpoint is refused."""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
from pathlib import Path

import pytest
import torch
from helpers import cli, write_imagefolder

TINY = ["--set", "device=cpu", "--set", "model.channels=[4]", "--set", "model.hidden=[16]"]


def _train(tmp: Path, *extra: str) -> Path:
    res = cli("train", *TINY, "--set", "train.epochs=1", "--set", f"output.runs_dir={tmp / 'runs'}", *extra)
    assert res.exit_code == 0, res.output
    (run,) = [p for p in (tmp / "runs").iterdir() if p.is_dir()]
    return run


@pytest.fixture(scope="module")
def trained(tmp_path_factory, one_torch_thread):
    """A finished tiny cnn run on digits, and one MLP run (copy it before changing it)."""
    tmp = tmp_path_factory.mktemp("runs")
    cnn = _train(tmp / "cnn")
    mlp = _train(tmp / "mlp", "--set", "model.name=mlp")
    return cnn, mlp


def _snapshot(d: Path) -> dict[str, tuple[int, str]]:
    return {
        str(p.relative_to(d)): (p.stat().st_mtime_ns, hashlib.sha256(p.read_bytes()).hexdigest())
        for p in sorted(d.rglob("*"))
        if p.is_file()
    }


def _one_error_line(res, *needles: str) -> str:
    assert res.exit_code == 2, res.output
    assert "Traceback" not in res.output and res.exception is None or isinstance(res.exception, SystemExit)
    lines = res.stderr.strip().splitlines()
    assert [ln for ln in lines if ln.startswith("error: ")] == lines[-1:], res.stderr  # one error line, the last
    err = lines[-1]
    for n in needles:
        assert n in err, err
    assert "weights_only" not in err and "weights only" not in err.lower()  # never relay torch's advice
    return err


# --------------------------------------------------------------------------- files that are not checkpoints


@pytest.mark.parametrize(
    "content, what",
    [
        (b"", "empty (0 bytes"),
        (b"hi\n", "holds text"),
        (b'{"model": 1}', "JSON"),
        (bytes(range(256)) * 3, "unrecognised binary"),
    ],
)
def test_a_file_that_is_not_a_checkpoint_is_named_so(tmp_path, monkeypatch, content, what):
    monkeypatch.chdir(tmp_path)
    f = tmp_path / "x.pt"
    f.write_bytes(content)
    _one_error_line(cli("plot-filters", f, "--out", tmp_path / "f.png"), "is not a PyTorch checkpoint", what)
    assert not list(tmp_path.glob("*.png"))


def test_zero_byte_last_pt_on_resume_and_text_best_pt_on_eval(trained, tmp_path):
    cnn, _ = trained
    run = Path(shutil.copytree(cnn, tmp_path / "r"))
    (run / "summary.json").unlink()
    (run / "last.pt").write_bytes(b"")
    _one_error_line(cli(*["train", "--resume", str(run)]), "last.pt", "empty (0 bytes")
    (run / "best.pt").write_bytes(b"hi")
    _one_error_line(cli(*["eval", str(run)]), "best.pt", "is not a PyTorch checkpoint")


def test_hostile_pickle_is_refused_without_relaying_the_weights_only_advice(tmp_path):
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (Path.touch, (marker,))

    torch.save({"model": Payload()}, tmp_path / "evil.pt")
    err = _one_error_line(cli("plot-filters", tmp_path / "evil.pt", "--out", tmp_path / "f.png"), "refused", "run code")
    assert "holds objects other than tensors" in err
    assert not marker.exists()


# --------------------------------------------------------------------------- outputs and read-only places


def test_reading_a_run_never_writes_into_it(trained, tmp_path, monkeypatch):
    cnn, _ = trained
    run = Path(shutil.copytree(cnn, tmp_path / "archived"))
    before = _snapshot(run)
    monkeypatch.chdir(tmp_path)
    res = cli(*["eval", str(run)])
    assert res.exit_code == 0, res.output and "wrote" not in res.output
    for verb in ("plot-filters", "plot-curves"):  # derived pictures only where asked: --out is required
        res = cli(verb, run)
        assert res.exit_code == 2 and "--out" in res.output, res.output
    assert cli("plot-filters", run, "--out", tmp_path / "f.png").exit_code == 0
    assert (tmp_path / "f.png").is_file() and sorted(p.name for p in tmp_path.iterdir()) == ["archived", "f.png"]
    monkeypatch.chdir(run)
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = cli(*["plot-curves", ".", "--out", str(tmp_path / "c.png")])
    assert res.exit_code == 0 and "(1 run(s): archived)" in res.output, res.output  # named, not ''
    assert not [w for w in caught if issubclass(w.category, UserWarning)]  # e.g. an empty legend
    assert _snapshot(run) == before
    res = cli(*["eval", str(run), "--out", str(tmp_path / "conf.png")])
    assert res.exit_code == 0 and (tmp_path / "conf.png").stat().st_size > 0


@pytest.mark.parametrize(
    "args",
    [
        ["plot-filters", "{run}", "--out", "{out}/f.png"],
        ["plot-curves", "{run}", "--out", "{out}/c.png"],
        ["data", *TINY, "--grid", "{out}/g.png"],
    ],
)
def test_output_on_a_read_only_file_system_is_one_error_line(trained, tmp_path, monkeypatch, args):
    import tempfile

    def erofs(*a, **k):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))

    monkeypatch.setattr(tempfile, "mkstemp", erofs)
    argv = [a.format(run=trained[0], out=tmp_path) for a in args]
    _one_error_line(cli(*argv), "cannot write", "Read-only file system")


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root ignores directory permissions")
def test_output_into_a_read_only_directory(trained, tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        _one_error_line(cli(*["plot-curves", str(trained[0]), "--out", str(ro / "c.png")]), "cannot write")
    finally:
        ro.chmod(0o755)


@pytest.mark.parametrize("cmd", [["plot-curves", "{run}"], ["data", *TINY, "--grid"]])
def test_a_picture_with_another_extension_is_refused(trained, tmp_path, cmd):
    argv = [a.format(run=trained[0]) for a in cmd]
    option = "--grid" if "--grid" in argv else "--out"
    argv = argv + ([str(tmp_path / "f.txt")] if option == "--grid" else ["--out", str(tmp_path / "f.txt")])
    _one_error_line(cli(*argv), f"{option} ", ".png")
    assert not (tmp_path / "f.txt").exists()


# --------------------------------------------------------------------------- silently wrong results


def test_a_checkpoint_of_another_model_is_refused_by_eval(trained, tmp_path):
    cnn, mlp = trained
    run = Path(shutil.copytree(cnn, tmp_path / "r"))
    shutil.copy(mlp / "best.pt", run / "best.pt")
    _one_error_line(cli(*["eval", str(run)]), "different model", "model.name: 'mlp'", "'cnn'")


def test_eval_refuses_an_image_folder_that_changed_since_training(tmp_path, one_torch_thread):
    data = tmp_path / "d"
    write_imagefolder(data, {"a": 12, "b": 12}, size=(8, 8))
    run = _train(tmp_path, "--set", "data.dataset=imagefolder", "--set", f"data.root={data}")
    assert cli(*["eval", str(run)]).exit_code == 0  # unchanged: evaluated
    victim = sorted((data / "b").iterdir())[0]
    victim.rename(data / "b" / "zzz.png")  # renamed: the split re-draws other files
    _one_error_line(cli(*["eval", str(run)]), "changed since training", "split")
    (data / "b" / "zzz.png").unlink()  # removed
    err = _one_error_line(cli(*["eval", str(run)]), "changed since training")
    assert "samples at training" in err


# --------------------------------------------------------------------------- words


@pytest.mark.parametrize("name,where", [("mnist", "MNIST/raw"), ("cifar10", "cifar-10-batches-py")])
def test_a_failed_download_says_so_and_leaves_no_empty_folders(tmp_path, monkeypatch, name, where):
    import urllib.error
    import urllib.request

    def offline(*a, **k):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    root = tmp_path / "data"
    args = ["data", "--set", f"data.dataset={name}", "--set", f"data.root={root}", "--set", "data.download=true"]
    err = _one_error_line(cli(*[*args, "--grid", str(tmp_path / "g.png")]), "download", where)
    assert "set data.download" not in err.lower()
    assert not root.exists()  # the folders the download created are gone again


def test_a_bad_set_is_named_and_a_list_shows_its_form():
    err = _one_error_line(cli(*["train", "--set", "train.epochs=ten"]), "--set train.epochs=ten")
    assert "built-in defaults" not in err
    err = _one_error_line(cli(*["train", "--set", "model.channels=16,32"]), "--set model.channels")
    assert "model.channels=[16,32]" in err


def test_a_config_key_given_as_an_option_points_to_set():
    res = cli(*["train", "--epochs", "3"])
    assert res.exit_code == 2 and "--set train.epochs=" in " ".join(res.output.replace("│", " ").split())
    res = cli(*["train", "--nonsense", "3"])
    assert res.exit_code == 2 and "config keys are set with" not in " ".join(res.output.replace("│", " ").split())


def test_lecture_config_header_states_its_lr():
    import re

    import yaml

    path = Path(__file__).resolve().parent.parent / "configs" / "lecture-two-layer.yaml"
    text = path.read_text()
    lr = yaml.safe_load(text)["train"]["optimizer"]["lr"]
    header = " ".join(line for line in text.splitlines() if line.startswith("#"))
    stated = [float(v) for v in re.findall(r"\blr (?:of |=|at )?([0-9]+(?:\.[0-9]+)?(?:e-?[0-9]+)?)", header)]
    assert stated and all(v == lr for v in stated), header


# --------------------------------------------------------------------------- notes and warnings on the data


def _npz(tmp_path: Path, y, n_per=1) -> Path:
    import numpy as np

    y = np.repeat(np.asarray(y, dtype=np.int64), n_per)
    x = np.random.default_rng(0).integers(0, 256, (len(y), 8, 8), dtype=np.uint8)
    p = tmp_path / "d.npz"
    np.savez(p, x=x, y=y)
    return p


def test_every_class_without_samples_is_listed(tmp_path):
    from nntrain.config import load_config
    from nntrain.data.registry import load_dataset

    ds = load_dataset(load_config(None, ["data.dataset=npz", f"data.root={_npz(tmp_path, [0, 5, 9], 10)}"]).data)
    (line,) = [n for n in ds.notes if "no samples" in n]
    assert "7 class(es)" in line and line.endswith(": 1, 2, 3, 4, 6, 7, 8")
    ds = load_dataset(load_config(None, ["data.dataset=npz", f"data.root={_npz(tmp_path, [0, 29], 10)}"]).data)
    (line,) = [n for n in ds.notes if "no samples" in n]
    assert "28 class(es)" in line and line.endswith(": 1, 2, 3, 4, 5, 6, 7, 8, 9, 10 and 18 more")


@pytest.mark.parametrize("n_bad", [3, 12])
def test_every_corrupt_image_is_named_up_to_a_limit(tmp_path, n_bad):
    written = sorted(write_imagefolder(tmp_path / "d", {"a": 8, "b": 8}, size=(8, 8)))
    for p in written[:n_bad]:
        p.write_bytes(b"not a png")
    res = cli(
        "data", "--set", "data.dataset=imagefolder", "--set", f"data.root={tmp_path / 'd'}",
        "--grid", tmp_path / "g.png",
    )  # fmt: skip
    err = _one_error_line(res, f"{n_bad} images cannot be decoded")
    named = [p for p in written[:n_bad] if f"'{p}'" in err]
    assert len(named) == min(n_bad, 10) and (n_bad <= 10 or f"and {n_bad - 10} more" in err)
    assert not any(f"'{p}'" in err for p in written[n_bad:])


def _notes(*overrides: str, root: Path | None = None):
    from nntrain.config import load_config
    from nntrain.pipeline.setup import setup

    return [n for n in setup(load_config(None, ["device=cpu", *overrides])).dataset.notes]


def test_a_class_absent_from_val_or_test_is_named(tmp_path):
    import numpy as np

    from nntrain.config import load_config
    from nntrain.data.registry import load_dataset
    from nntrain.data.types import SplitIndices
    from nntrain.pipeline.setup import setting_notes

    cfg = load_config(None, ["data.dataset=npz", f"data.root={_npz(tmp_path, [0] * 30 + [1] * 30 + [2] * 2)}"])
    ds = load_dataset(cfg.data)
    i = np.arange(62)
    # class 2 (samples 60, 61) only in train: named for val and for test
    broken = setting_notes(
        cfg,
        torch.device("cpu"),
        ds,
        SplitIndices(i[np.r_[0:20, 30:50, 60:62]], i[np.r_[20:25, 50:55]], i[np.r_[25:30, 55:60]]),
    )
    absent = [n for n in broken if "have no sample in the" in n]
    assert len(absent) == 2 and all("class(es) have no sample in the" in n and ": 2;" in n for n in absent), broken
    assert "in the val split" in absent[0] and "in the test split" in absent[1]
    healthy = setting_notes(cfg, torch.device("cpu"), ds, SplitIndices(i[2:59], i[[0, 30, 60]], i[[1, 31, 61]]))
    assert not [n for n in healthy if "have no sample in the" in n], healthy


def test_settings_that_do_nothing_here_get_a_note():
    notes = _notes("train.batch_size=4096", "train.amp=fp16")
    assert any("train.batch_size=4096 > 1257 train samples" in n for n in notes), notes
    assert any(n.startswith("precision: fp32 (train.amp: fp16 is ignored on the CPU") for n in notes), notes
    quiet = _notes()
    assert not any("batch_size" in n or "ignored" in n for n in quiet), quiet


@pytest.mark.skipif(torch.cuda.is_available(), reason="the warning is about a machine without CUDA")
def test_compile_on_cpu_leaks_no_cuda_runtime_warning(tmp_path):
    import subprocess
    import sys

    code = (
        "from nntrain.config import load_config; from nntrain.pipeline.setup import setup;"
        "setup(load_config(None, ['device=cpu', 'train.compile=true']));"
        "import torch.utils.cpp_extension"  # what torch.compile imports on its first call
    )
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parent.parent), CUDA_HOME=str(tmp_path))
    res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert "No CUDA runtime" not in res.stderr


@pytest.mark.parametrize(
    "flag,value,guess",
    [("--grid", "train.optimizr.lr=0.1,0.2", "optimizer"), ("--sample", "train.optimizer.lrr=log:1e-3:1e-1", "lr")],
)
def test_grid_and_sample_keys_get_did_you_mean(tmp_path, flag, value, guess):
    res = cli(*["cv", *TINY, "--set", f"output.runs_dir={tmp_path}", "--folds", "2", flag, value])
    err = " ".join(res.stderr.split())
    assert res.exit_code == 2 and f"{flag} {value}" in err and f"did you mean '{guess}'?" in err, res.output
    assert not list(tmp_path.iterdir())  # refused before any cv directory


# --------------------------------------------------------------------------- config files a new user wrote


def test_a_key_given_twice_in_a_config_file_is_refused_naming_its_line(tmp_path):
    from helpers import one_error_line

    cfg = tmp_path / "c.yaml"
    cfg.write_text("train:\n  epochs: 3\n  lr_schedule: none\n  epochs: 4\n")
    res = cli("train", "-c", cfg, "--set", f"output.runs_dir={tmp_path / 'runs'}")
    one_error_line(res, f"{cfg}:4:3", "key 'epochs' is given twice")
    assert not (tmp_path / "runs").exists()
    cfg.write_text("train:\n  epochs: 3\ndata:\n  val_fraction: 0.2\n")  # the same key in two sections is fine
    assert cli("config", "validate", cfg).exit_code == 0


@pytest.mark.parametrize("key", ["train.epochs", "train.batch_size", "train.optimizer.lr", "seed"])
def test_a_yes_no_value_for_a_number_is_refused(tmp_path, key):
    from helpers import one_error_line

    res = cli("train", "--set", f"{key}=true", "--set", f"output.runs_dir={tmp_path / 'runs'}")
    one_error_line(res, key, "yes/no value")
    assert not (tmp_path / "runs").exists()
    assert cli("config", "show", "--set", "model.batchnorm=false").exit_code == 0  # a bool key still takes one


def test_a_binary_file_as_config_names_what_it_is(tmp_path):
    from helpers import one_error_line

    cfg = tmp_path / "model.pt"
    cfg.write_bytes(b"\x80\x02\x8a\nl\xfc\x9cF\xf9 j\xa8P\x19.")  # the start of a pickle
    one_error_line(cli("train", "-c", cfg), "is not a text file", "pass a YAML config file")


@pytest.mark.parametrize(
    "sets, needles",
    [
        (["model.channels=[]"], ["model.channels", "needs at least one conv stage", "model.name: mlp"]),
        (["model.name=resnet", "model.channels=[]"], ["model.channels", "a resnet needs at least one conv stage"]),
        (["data.image_size=1"], ["1x1 input is too small for a conv stage", "data.image_size of 2 or more"]),
        (["data.augment.crop_padding=100"], ["crop_padding=100 on 8x8 images", "use at most 3"]),
        (["data.augment.crop_padding=4"], ["crop_padding=4 on 8x8 images"]),
        (["train.class_weights=[1,2]"], ["train.class_weights: 2 weights for 10 classes"]),  # no run dir made
    ],
)
@pytest.mark.parametrize("verb", ["train", "sanity", "cv"])
def test_a_model_or_augmentation_that_cannot_learn_is_refused_up_front(tmp_path, verb, sets, needles):
    from helpers import one_error_line

    args = [verb, "--set", f"output.runs_dir={tmp_path / 'runs'}"]
    for s in sets:
        args += ["--set", s]
    one_error_line(cli(*args), *needles)
    assert not (tmp_path / "runs").exists()


def test_an_empty_channel_list_is_fine_for_an_mlp_and_a_small_crop_is_fine(tmp_path):
    args = ["train", "--set", f"output.runs_dir={tmp_path / 'runs'}", "--set", "train.epochs=1"]
    res = cli(*args, "--set", "model.name=mlp", "--set", "model.channels=[]")
    assert res.exit_code == 0, res.output
    res = cli(*args, "--set", "data.augment.crop_padding=3")
    assert res.exit_code == 0, res.output
