"""nntrain cv: folds, aggregation, grid/random search, --jobs, --resume, bad input.

Tiny configs (an MLP with 16 hidden units, 2 epochs on the 8x8 digits) keep each cv
run to about a second; the oracles are recomputed here from the files cv writes.
"""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import numpy as np
import pytest
import yaml
from helpers import cli, collector_states, one_error_line

from nntrain.config import load_config
from nntrain.cv.folds import fold_job, fold_seed, pool_folds, run_fold
from nntrain.cv.local import LocalExecutor
from nntrain.cv.plan import Plan
from nntrain.cv.search import run_search
from nntrain.cv.space import Dist, distributions, edge_warnings, parse_grid, parse_sample
from nntrain.cv.store import CvDir
from nntrain.cv.study import default_storage, open_study
from nntrain.errors import ConfigError

TINY = {
    "device": "cpu",
    "model": {"name": "mlp", "hidden": [16]},
    "train": {"epochs": 2, "batch_size": 128},
}


@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    cfg = json.loads(json.dumps(TINY))
    cfg["output"] = {"runs_dir": str(tmp_path / "runs")}
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def cv_dirs(tmp_path: Path) -> list[Path]:
    root = tmp_path / "runs"
    return sorted(root.glob("cv-*")) if root.exists() else []


def comparable(summary: dict) -> list:
    """Per-fold numbers of every combination, minus wall-clock time."""
    return [[{k: v for k, v in f.items() if k != "seconds"} for f in c["folds"]] for c in summary["combos"]]


def metrics_without_time(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return [{k: v for k, v in row.items() if k != "seconds"} for row in csv.DictReader(f)]


# --------------------------------------------------------------------------- folds


def test_folds_partition_pool_exactly_once_and_never_touch_test(tiny):
    cfg = load_config(tiny)
    pool, test, folds = pool_folds(cfg, 5)
    n = 1797  # digits
    assert len(folds) == 5
    assert np.intersect1d(pool, test).size == 0 and len(pool) + len(test) == n  # pool = everything but test
    vals = np.concatenate([va for _, va in folds])
    assert np.array_equal(np.sort(vals), pool)  # every pool sample validates exactly once
    for tr, va in folds:
        assert np.intersect1d(tr, va).size == 0
        assert np.array_equal(np.sort(np.concatenate([tr, va])), pool)
        assert np.intersect1d(np.concatenate([tr, va]), test).size == 0


def test_class_ratios_preserved_in_every_fold(tiny):
    from nntrain.cv.folds import dataset_for

    cfg = load_config(tiny)
    y = dataset_for(cfg).y.numpy()
    pool, _, folds = pool_folds(cfg, 5)
    pool_counts = np.bincount(y[pool], minlength=10)
    for _, va in folds:
        counts = np.bincount(y[va], minlength=10)
        # stratified: each class gets floor or ceil of its pool count / K
        assert np.all(np.abs(counts - pool_counts / 5) < 1), (counts, pool_counts / 5)


def test_same_seed_same_folds_other_seed_other_folds(tiny):
    cfg = load_config(tiny)
    a = pool_folds(cfg, 4)[2]
    b = pool_folds(load_config(tiny), 4)[2]
    c = pool_folds(load_config(tiny, ["seed=1"]), 4)[2]
    assert all(np.array_equal(x[1], y[1]) for x, y in zip(a, b))
    assert not all(np.array_equal(x[1], y[1]) for x, y in zip(a, c))


def test_fold_seeds_differ_per_fold_and_a_fold_is_reproducible_alone(tiny):
    cfg = load_config(tiny)
    assert len({fold_seed(0, f) for f in range(10)}) == 10
    _, _, folds = pool_folds(cfg, 3)
    jobs = [fold_job(cfg, 0, f, tr, va) for f, (tr, va) in enumerate(folds)]
    a = [run_fold(j) for j in jobs]
    again = run_fold(jobs[2])  # alone, after other folds trained in this process: nothing leaks in
    strip = lambda r: {k: v for k, v in r.items() if k not in ("seconds", "records")}  # noqa: E731
    assert strip(again) == strip(a[2])
    assert [r["val_loss"] for r in again["records"]] == [r["val_loss"] for r in a[2]["records"]]
    assert a[0]["records"][0]["train_loss"] != a[1]["records"][0]["train_loss"]  # other init/data per fold


# --------------------------------------------------------------------------- the cv command


def test_cv_outputs_and_aggregate_match_per_fold_files(tiny, tmp_path, monkeypatch):
    import gc

    import nntrain.cv.search

    seen = collector_states(monkeypatch, nntrain.cv.search, "run_search")  # the folds: collector on, heap frozen
    r = cli("cv", "--config", str(tiny), "--folds", "3")
    assert r.exit_code == 0, r.output
    assert seen[0][0] and seen[0][1] > 10_000
    assert gc.isenabled() and gc.get_freeze_count() == 0  # nothing stays frozen afterwards
    (d,) = cv_dirs(tmp_path)
    assert f"cv directory   {d}" in r.output and "mean ± std" in r.output
    assert "cv fold 2/3 epoch 2/2" in r.output  # the live view (plain lines off a terminal)
    summary = json.loads((d / "summary.json").read_text())
    combo = summary["combos"][0]
    accs, curves, loss_curves = [], [], []
    for f, row in enumerate(combo["folds"]):
        assert row["fold"] == f + 1  # numbered 1..k, as on screen and in the folder names
        metrics = list(csv.DictReader(open(d / "combo-000" / f"fold-{f + 1}" / "metrics.csv")))
        assert json.loads((d / "combo-000" / f"fold-{f + 1}" / "result.json").read_text())["fold"] == f + 1
        assert len(metrics) == 2
        best = max(range(len(metrics)), key=lambda i: (float(metrics[i]["val_acc"]), -i))
        assert row["best_val_acc"] == float(metrics[best]["val_acc"]) and row["best_epoch"] == best + 1
        assert row["val_loss"] == float(metrics[best]["val_loss"])
        accs.append(row["best_val_acc"])
        curves.append([float(m["val_acc"]) for m in metrics])
        loss_curves.append([float(m["val_loss"]) for m in metrics])
        assert row["n_train"] + row["n_val"] == 1527  # the pool: 1797 minus 270 test
    # honest score: every fold at the one epoch where the mean val-accuracy curve peaks
    e = int(np.argmax(np.mean(curves, axis=0)))
    at = [c[e] for c in curves]
    assert combo["epoch"] == e + 1 and summary["refit_epochs"] == e + 1
    assert combo["mean_val_acc"] == pytest.approx(np.mean(at), abs=1e-12)
    assert combo["std_val_acc"] == pytest.approx(np.std(at), abs=1e-12)
    assert combo["mean_val_loss"] == pytest.approx(np.mean([c[e] for c in loss_curves]), abs=1e-12)
    assert combo["last_val_acc"] == pytest.approx(np.mean([c[-1] for c in curves]), abs=1e-12)
    assert combo["mean_best_val_acc"] == pytest.approx(np.mean(accs), abs=1e-12)  # information only
    assert f"{np.mean(at):.4f} ± {np.std(at):.4f}" in r.output
    # out-of-fold predictions: every pool sample once; per-fold accuracy = that fold's best val acc
    oof = list(csv.DictReader(open(d / "combo-000" / "oof.csv")))
    _, test, folds = pool_folds(load_config(tiny), 3)
    assert sorted(int(o["index"]) for o in oof) == sorted(np.concatenate([va for _, va in folds]).tolist())
    assert not set(int(o["index"]) for o in oof) & set(test.tolist())
    for f in range(3):
        rows = [o for o in oof if o["fold"] == str(f + 1)]
        acc = np.mean([o["y_true"] == o["y_pred"] for o in rows])
        assert acc == pytest.approx(accs[f], abs=1e-12)
    assert combo["oof_acc"] == pytest.approx(np.mean([o["y_true"] == o["y_pred"] for o in oof]), abs=1e-12)


def test_same_seed_same_results(tiny, tmp_path):
    assert cli("cv", "--config", str(tiny), "--folds", "2").exit_code == 0
    assert cli("cv", "--config", str(tiny), "--folds", "2").exit_code == 0
    a, b = cv_dirs(tmp_path)  # a second run never overwrites the first
    sa, sb = (json.loads((d / "summary.json").read_text()) for d in (a, b))
    assert comparable(sa) == comparable(sb)
    assert (a / "combo-000" / "oof.csv").read_text() == (b / "combo-000" / "oof.csv").read_text()


def test_jobs_2_identical_to_sequential(tiny, tmp_path):
    # equal torch threads per job: on CPU the thread count changes float summation order
    grid = ["--grid", "train.optimizer.lr=0.02,0.1", "--threads", "1"]
    r1 = cli("cv", "--config", str(tiny), "--folds", "2", *grid, "--jobs", "1")
    r2 = cli("cv", "--config", str(tiny), "--folds", "2", *grid, "--jobs", "2")
    assert r1.exit_code == 0 and r2.exit_code == 0, r1.output + r2.output
    a, b = cv_dirs(tmp_path)
    sa, sb = (json.loads((d / "summary.json").read_text()) for d in (a, b))
    assert comparable(sa) == comparable(sb) and sa["ranking"] == sb["ranking"]
    for c in range(2):
        for f in range(2):
            rel = Path(f"combo-{c:03d}") / f"fold-{f + 1}" / "metrics.csv"
            assert metrics_without_time(a / rel) == metrics_without_time(b / rel)
    assert (a / "combo-001" / "oof.csv").read_text() == (b / "combo-001" / "oof.csv").read_text()
    assert "cv trial 1 fold 2/2 epoch 2/2" in r2.output  # progress travels back from the workers


class StopAfter(LocalExecutor):
    """Runs ``n`` jobs, then behaves as if Ctrl-C was pressed."""

    def __init__(self, n: int):
        super().__init__(1)
        self.n = n

    def map(self, fn, jobs, report=None):
        for i, job in enumerate(jobs):
            if i == self.n:
                raise KeyboardInterrupt
            yield fn(job, report)


def test_resume_skips_finished_folds_and_matches_a_full_run(tiny, tmp_path):
    full = cli("cv", "--config", str(tiny), "--folds", "3", "--grid", "train.reg=0,0.01")
    assert full.exit_code == 0, full.output
    (full_dir,) = cv_dirs(tmp_path)
    # an interrupted run: 4 of the 6 (trial, fold) jobs finish
    cfg = load_config(tiny)
    grid = parse_grid(["train.reg=0,0.01"], cfg)
    plan = Plan(cfg, 3, grid, trials=2)
    _, _, folds = pool_folds(cfg, 3)
    part = CvDir.create(plan, [va for _, va in folds])
    study = open_study(plan, default_storage(part.path), seed=cfg.seed)
    with pytest.raises(KeyboardInterrupt):
        run_search(plan, part, folds, study, executor=StopAfter(4))
    done = {
        p.parent.relative_to(part.path).as_posix(): p.read_bytes() for p in part.path.glob("combo-*/fold-*/result.json")
    }
    assert sorted(done) == ["combo-000/fold-1", "combo-000/fold-2", "combo-000/fold-3", "combo-001/fold-1"]
    assert not (part.path / "summary.json").exists()
    assert [t.state.name for t in study.get_trials()] == ["FAIL", "FAIL"]  # interrupted trials: failed

    r = cli("cv", "--resume", str(part.path))
    assert r.exit_code == 0, r.output
    assert "resumed: 4 finished folds were skipped" in r.output
    ran = {line.split(":")[0] for line in r.output.splitlines() if line.startswith("cv trial")}
    assert {x.split(" epoch")[0] for x in ran} == {"cv trial 3 fold 2/3", "cv trial 3 fold 3/3"}
    for rel, content in done.items():  # finished folds were not touched
        assert (part.path / rel / "result.json").read_bytes() == content
    s_full, s_res = (json.loads((d / "summary.json").read_text()) for d in (full_dir, part.path))
    assert [c["trial"] for c in s_res["combos"]] == [2, 3]  # the re-run trials, numbered after the failed ones
    assert comparable(s_full) == comparable(s_res)
    assert s_full["ranking"] == s_res["ranking"] and s_full["best_params"] == s_res["best_params"]
    assert s_full["combos"][0]["mean_val_acc"] == s_res["combos"][0]["mean_val_acc"]


def test_a_cv_directory_from_before_the_1_to_k_numbering_still_resumes(tiny, tmp_path):
    """Issue 32: folds are now fold-1..k on disk; a directory an older version wrote (fold-0..k-1, plan.json
    without first_fold) must keep resuming, reusing its finished folds, not start them again silently."""
    full = cli("cv", "--config", str(tiny), "--folds", "3")
    assert full.exit_code == 0, full.output
    (full_dir,) = cv_dirs(tmp_path)
    cfg = load_config(tiny)
    plan = Plan(cfg, 3)
    _, _, folds = pool_folds(cfg, 3)
    old = CvDir.create(plan, [va for _, va in folds])
    with pytest.raises(KeyboardInterrupt):
        run_search(plan, old, folds, open_study(plan, default_storage(old.path), seed=cfg.seed), executor=StopAfter(2))
    raw = json.loads((old.path / "plan.json").read_text())
    del raw["first_fold"]  # as the older version wrote it
    (old.path / "plan.json").write_text(json.dumps(raw))
    for n in (1, 2):  # its numbering: fold-0, fold-1, "fold": 0, 1
        d = old.path / "combo-000" / f"fold-{n}"
        r = json.loads((d / "result.json").read_text())
        (d / "result.json").write_text(json.dumps({**r, "fold": n - 1}))
        d.rename(old.path / "combo-000" / f"fold-{n - 1}")
    res = cli("cv", "--resume", str(old.path))
    assert res.exit_code == 0, res.output
    assert "resumed: 2 finished folds were skipped" in res.output
    assert sorted(p.name for p in (old.path / "combo-001").iterdir() if p.is_dir()) == ["fold-0", "fold-1", "fold-2"]
    assert not (old.path / "combo-001" / "fold-3").exists()
    s_full, s_old = (json.loads((d / "summary.json").read_text()) for d in (full_dir, old.path))
    assert (s_full["first_fold"], s_old["first_fold"]) == (1, 0)  # each summary as its directory numbers folds
    assert [f["fold"] for f in s_old["combos"][0]["folds"]] == [0, 1, 2]
    assert {o.split(",")[3] for o in (old.path / "combo-001" / "oof.csv").read_text().split()[1:]} == {"0", "1", "2"}
    no_fold = [
        [{k: v for k, v in f.items() if k not in ("seconds", "fold")} for f in c["folds"]] for c in s_old["combos"]
    ]
    assert no_fold == [[{k: v for k, v in f.items() if k not in ("seconds", "fold")} for f in c["folds"]]
                       for c in s_full["combos"]]  # fmt: skip
    for line in res.output.splitlines():  # the screen says 1..3 whatever the directory's names
        if line.startswith("cv trial"):
            assert "fold 3/3" in line
    folds_table = res.output.split("folds of", 1)[1].split("mean ± std", 1)[0].splitlines()[2:]
    assert [row.split()[0] for row in folds_table] == ["1", "2", "3"]
    assert cli("report", str(old.path)).exit_code == 0
    html = (old.path / "report.html").read_text()
    assert re.findall(r"<tr><td>(\d)</td><td>\d+</td><td>\d+</td>", html) == ["1", "2", "3"]


def test_a_damaged_first_fold_in_plan_json_is_refused(tiny, tmp_path):
    assert cli("cv", "--config", str(tiny), "--folds", "2").exit_code == 0
    (d,) = cv_dirs(tmp_path)
    raw = json.loads((d / "plan.json").read_text())
    (d / "plan.json").write_text(json.dumps({**raw, "first_fold": 7}))
    res = cli("cv", "--resume", str(d))
    one_error_line(res, "not a readable nntrain cv directory", "first_fold is 7")


def test_grid_runs_cross_product_ranks_by_mean_and_warns_at_the_edge(tiny, tmp_path):
    r = cli(
        "cv",
        "--config",
        str(tiny),
        "--folds",
        "2",
        "--grid",
        "train.optimizer.lr=0.001,0.01,0.3",
        "--grid",
        "model.hidden=[8],[16]",
        "--json",
    )
    assert r.exit_code == 0, r.output
    s = json.loads(r.output)
    params = sorted(json.dumps(c["params"], sort_keys=True) for c in s["combos"])
    assert params == sorted(
        json.dumps({"train.optimizer.lr": lr, "model.hidden": h}, sort_keys=True)
        for lr in (0.001, 0.01, 0.3)
        for h in ([8], [16])
    )  # every grid point once, in the grid sampler's (seeded) order
    means = [s["combos"][c]["mean_val_acc"] for c in s["ranking"]]
    assert means == sorted(means, reverse=True) and s["best"] == s["ranking"][0]
    assert s["best_params"]["train.optimizer.lr"] == 0.3  # 2 epochs: the largest step learns most
    assert any("train.optimizer.lr=0.3 is the largest value tried" in w for w in s["warnings"])
    for c in s["combos"]:  # each combination really trained with its values
        saved = json.loads((Path(s["cv_dir"]) / f"combo-{c['trial']:03d}" / "fold-1" / "result.json").read_text())
        assert [k for k in saved["records"][0] if k.startswith("update_ratio.")] == [
            "update_ratio.fc1",
            "update_ratio.out",
        ]


def test_edge_warnings_oracle():
    grid = {"train.optimizer.lr": [0.01, 0.1, 1.0], "train.reg": [0.0, 1e-3], "model.name": ["cnn", "mlp"]}
    assert edge_warnings({"train.optimizer.lr": 0.1, "train.reg": 1e-3, "model.name": "mlp"}, grid, {}) == [
        "best train.reg=0.001 is the largest value tried, at the upper edge of the range; extend the grid above it"
    ]
    w = edge_warnings({"train.optimizer.lr": 0.01, "train.reg": 0.0, "model.name": "cnn"}, grid, {})
    assert w == [
        "best train.optimizer.lr=0.01 is the smallest value tried, at the lower edge of the range; extend the grid "
        "below it",
        "best train.reg=0 is the smallest value tried, at the lower edge of the range: no regularization won and "
        "there is nothing smaller to try; to see whether a little helps, try values between 0 and 0.001",
    ]  # issue 32: a winning 0 at the lower edge was not reported at all
    space = {"train.optimizer.lr": Dist("log", 1e-4, 1e-1, False)}
    assert "top 10%" in edge_warnings({"train.optimizer.lr": 0.09}, {}, space)[0]
    assert "bottom 10%" in edge_warnings({"train.optimizer.lr": 1.1e-4}, {}, space)[0]
    assert edge_warnings({"train.optimizer.lr": 3e-3}, {}, space) == []  # log-middle of the range
    (w,) = edge_warnings({"model.dropout": 0.01}, {}, {"model.dropout": Dist("uniform", 0.0, 0.5, False)})
    assert "at the lower edge: little or no dropout won and there is nothing below 0 to try" in w


def test_search_space_becomes_optuna_distributions(tiny):
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    cfg = load_config(tiny)
    space = parse_sample(["train.optimizer.lr=log:1e-4:1e-1", "train.batch_size=uniform:16:256"], cfg)
    d = distributions({}, space)
    assert d == {
        "train.optimizer.lr": FloatDistribution(1e-4, 1e-1, log=True),
        "train.batch_size": IntDistribution(16, 256),
    }
    grid = parse_grid(["model.hidden=[8],[16]", "train.reg=0,0.01"], cfg)
    assert distributions(grid, {}) == {  # lists travel as JSON text (Optuna choices are scalars)
        "model.hidden": CategoricalDistribution(["[8]", "[16]"]),
        "train.reg": CategoricalDistribution([0.0, 0.01]),
    }


def test_sample_trials_through_the_cli_are_seeded_and_in_range(tiny, tmp_path):
    args = ["cv", "--config", str(tiny), "--folds", "2", "--sample", "train.optimizer.lr=log:1e-3:0.5"]
    r = cli(*args, "--trials", "3", "--json")
    assert r.exit_code == 0, r.output
    s = json.loads(r.output)
    lrs = [c["params"]["train.optimizer.lr"] for c in s["combos"]]
    assert len(set(lrs)) == 3 and all(1e-3 <= lr <= 0.5 for lr in lrs)
    assert s["sampler"] == "tpe" and s["pruner"] == "none"  # the defaults with --sample
    r2 = cli(*args, "--trials", "3", "--json", "--set", "seed=0")  # the config's seed (0) seeds the sampler
    assert r2.exit_code == 0, r2.output
    assert [c["params"]["train.optimizer.lr"] for c in json.loads(r2.output)["combos"]] == lrs
    # the study holds each trial's folds as user attributes: Optuna's own tools read them
    import optuna

    study = optuna.load_study(study_name="nntrain-cv", storage=default_storage(Path(s["cv_dir"])))
    attrs = study.trials[0].user_attrs
    assert [f["fold"] for f in attrs["folds"]] == [0, 1] and attrs[
        "params"
    ]  # indices, as in the jobs == s["combos"][0]["params"]
    assert study.trials[0].value == pytest.approx(s["combos"][0]["mean_val_acc"])


def test_refit_trains_on_the_pool_and_tests_once(tiny, tmp_path):
    import torch

    from nntrain.models import build_model
    from nntrain.runs.files import load_checkpoint

    r = cli("cv", "--config", str(tiny), "--folds", "2", "--grid", "train.optimizer.lr=0.02,0.2", "--refit", "--json")
    assert r.exit_code == 0, r.output
    s = json.loads(r.output)
    ref = s["refit"]
    assert ref["params"] == s["best_params"] and ref["n_train"] == 1527 and ref["n_test"] == 270
    assert ref["epochs_run"] == s["refit_epochs"] == s["combos"][s["best"]]["epoch"]
    # oracle: the saved model, normalized with its saved statistics, scores test_acc on the test split
    ckpt = load_checkpoint(Path(s["cv_dir"]) / "refit" / "last.pt")
    cfg = load_config(tiny, [f"train.optimizer.lr={s['best_params']['train.optimizer.lr']}"])
    _, test, _ = pool_folds(cfg, 2)
    from nntrain.cv.folds import dataset_for

    ds = dataset_for(cfg)
    model = build_model(cfg.model, ds.input_shape, ds.num_classes)
    model.load_state_dict(ckpt["model"])
    model.eval()
    x = (ds.x[test].float() - torch.tensor(ckpt["norm_mean"])[:, None, None]) / torch.tensor(ckpt["norm_std"])[
        :, None, None
    ]
    with torch.inference_mode():
        acc = (model(x).argmax(1) == ds.y[test]).float().mean().item()
    assert ref["test_acc"] == pytest.approx(acc, abs=1e-6)


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "args, message",
    [
        (["--folds", "1"], "--folds 1: k-fold needs at least 2 folds"),
        (["--folds", "500"], "--folds 500: the smallest class has only"),
        (["--grid", "train.optimizer.lrr=0.1,0.2"], "train.optimizer.lrr: unknown key; did you mean 'lr'?"),
        (["--grid", "train.epochs=two,three"], "train.epochs"),
        (["--grid", "train.optimizer.lr=-1,0.1"], "train.optimizer.lr"),
        (["--grid", "train.optimizer.lr="], "expected key=v1,v2"),
        (["--sample", "train.optimizer.lr=log:0:1"], "log-uniform needs LOW > 0"),
        (["--sample", "train.optimizer.lr=normal:1:2"], "expected key=log:LOW:HIGH"),
        (["--sample", "model.dropout=uniform:0:2"], "model.dropout"),
        (["--sample", "train.optimizer.lr=log:1e-3:1", "--grid", "train.reg=0,1"], "cannot be combined"),
        (["--trials", "3"], "--trials needs --grid or --sample"),
        (["--sample", "train.optimizer.lr=log:1e-3:1", "--sampler", "grid"], "--sampler grid needs values"),
        (["--grid", "train.reg=0,1", "--sampler", "bayes"], "--sampler 'bayes': use tpe, random or grid"),
        (["--grid", "train.reg=0,1", "--pruner", "hyperband"], "--pruner 'hyperband': use median, asha or none"),
        (["--storage", "mongodb://h/db"], "--storage mongodb://h/db: use sqlite:///"),
        (["--jobs", "0"], "--jobs 0"),
        (["--threads", "0"], "--threads 0"),
    ],
)
def test_bad_input_exits_2_before_training(tiny, tmp_path, args, message):
    r = cli("cv", "--config", str(tiny), *args)
    assert r.exit_code == 2, r.output
    assert message in r.output
    assert "Traceback" not in r.output and "cv fold" not in r.output
    assert cv_dirs(tmp_path) == []  # nothing written, nothing trained


def test_bad_resume_dir_exits_2(tiny, tmp_path):
    r = cli("cv", "--resume", str(tmp_path / "nope"))
    assert r.exit_code == 2 and "not a readable nntrain cv directory" in r.output
    r = cli("cv", "--resume", str(tmp_path), "--folds", "3")
    assert r.exit_code == 2 and "drop --folds" in r.output


def test_resume_refuses_a_cv_whose_folds_no_longer_match(tiny, tmp_path):
    cfg = load_config(tiny)
    plan = Plan(cfg, 2)
    _, _, folds = pool_folds(cfg, 2)
    d = CvDir.create(plan, [va for _, va in folds])
    raw = json.loads((d.path / "plan.json").read_text())
    raw["fold_val_indices"][0][0] += 1  # as if the dataset or the split had changed
    (d.path / "plan.json").write_text(json.dumps(raw))
    r = cli("cv", "--resume", str(d.path))
    assert r.exit_code == 2 and "changed since this cv started" in r.output
    assert not list(d.path.glob("combo-*"))  # nothing trained


def test_parse_grid_values_are_validated_and_typed(tiny):
    cfg = load_config(tiny)
    assert parse_grid(["train.reg=0,1e-4", "model.batchnorm=true,false"], cfg) == {
        "train.reg": [0.0, 1e-4],
        "model.batchnorm": [True, False],
    }
    with pytest.raises(ConfigError, match="swept twice"):
        parse_grid(["train.reg=0", "train.reg=1"], cfg)


def test_jobs_do_not_change_the_numbers_with_the_default_threads(tiny, tmp_path):
    """No --threads: `cv --jobs 1` and `cv --jobs 2` give identical folds (issue 13: they differed by more
    than their std, because the default thread count followed --jobs)."""
    from nntrain.cv.local import LocalExecutor

    assert LocalExecutor(1).threads == LocalExecutor(2).threads == LocalExecutor(8).threads
    cnn = ["--set", "model.name=cnn", "--set", "model.channels=[8]", "--set", "model.hidden=[32]"]
    r1 = cli("cv", "--config", str(tiny), "--folds", "2", *cnn, "--jobs", "1")
    r2 = cli("cv", "--config", str(tiny), "--folds", "2", *cnn, "--jobs", "2")
    assert r1.exit_code == 0 and r2.exit_code == 0, r1.output + r2.output
    a, b = cv_dirs(tmp_path)
    sa, sb = (json.loads((d / "summary.json").read_text()) for d in (a, b))
    assert comparable(sa) == comparable(sb) and sa["ranking"] == sb["ranking"]
