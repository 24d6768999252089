"""MLflow tracking (output.mlflow): what a train run, a resumed run and a cv leave in a real MLflow
store (local SQLite, and a real ``mlflow server`` on 127.0.0.1), read back through MlflowClient; a
tracker that fails never costs the training; bad settings are exit 2 before any run directory."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import yaml

from tests.helpers import REPO, TINY_TRAIN, cli, free_port

mlflow = pytest.importorskip("mlflow")
from mlflow.tracking import MlflowClient  # noqa: E402


def dotted(tree: dict, prefix: str = "") -> dict[str, str]:
    """config.yaml → {dotted key: the string MLflow stores}."""
    out = {}
    for k, v in tree.items():
        if isinstance(v, dict) and v:
            out.update(dotted(v, f"{prefix}{k}."))
        else:
            out[prefix + k] = str(v)
    return out


def train(tmp_path: Path, uri: str, *sets: str, experiment: str = "tiny"):
    args = ["train", "--json", "--set", f"output.runs_dir={tmp_path / 'runs'}", *TINY_TRAIN, "--set", "device=cpu"]
    args += ["--set", "output.mlflow=true", "--set", f"output.mlflow_uri={uri}"]
    args += ["--set", f"output.mlflow_experiment={experiment}"]
    for s in sets:
        args += ["--set", s]
    res = cli(*args)
    assert res.exit_code == 0, res.output
    assert "View run" not in res.stdout  # MLflow's own prints go to stderr: --json's stdout stays JSON
    summary = json.loads(res.stdout[res.stdout.index("{") :])
    return summary, Path(summary["run_dir"])


def check_run(client: MlflowClient, summary: dict, run_dir: Path, tmp_path: Path) -> str:
    """Everything a train run must leave in MLflow, against the run directory's own files."""
    rid = summary["mlflow"]["run_id"]
    assert summary["mlflow"]["not_logged"] == []
    assert json.loads((run_dir / "summary.json").read_text())["mlflow"]["run_id"] == rid
    run = client.get_run(rid)
    assert run.info.status == "FINISHED"
    assert run.data.params == dotted(yaml.safe_load((run_dir / "config.yaml").read_text()))
    with open(run_dir / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    for col in rows[0]:
        if col == "epoch":
            continue
        history = sorted((m.step, m.value) for m in client.get_metric_history(rid, col))
        assert history == [(int(r["epoch"]), float(r[col])) for r in rows], col
    for key in ("test_acc", "test_loss", "best_val_acc"):
        assert run.data.metrics[key] == pytest.approx(summary[key], rel=1e-12)
    recall = {k.removeprefix("test_recall."): v for k, v in run.data.metrics.items() if k.startswith("test_recall.")}
    assert recall == pytest.approx({c: v for c, v in summary["test_recall"].items() if v is not None})
    tags = run.data.tags
    assert tags["nntrain.version"] == summary["nntrain"] and tags["torch.version"] == summary["torch"]
    assert tags["device"] == summary["device"] and len(tags["nntrain.data_sha256"]) == 64
    assert tags["nntrain.command"] == " ".join(["nntrain", *summary["command"][1:]])
    names = {a.path for a in client.list_artifacts(rid)}
    assert {"config.yaml", "summary.json", "report.html", "curves.png", "confusion.png", "model"} <= names
    assert "MLmodel" in {Path(a.path).name for a in client.list_artifacts(rid, "model")}
    # the logged model predicts like `nntrain predict` on the same raw images
    x = np.random.default_rng(0).integers(0, 17, (5, 1, 8, 8)).astype(np.uint8)
    np.savez(tmp_path / "x.npz", x=x[:, 0])
    res = cli("predict", run_dir, tmp_path / "x.npz", "--top-k", "10", "--json")
    assert res.exit_code == 0, res.output
    rows = json.loads(res.stdout)["rows"]
    model = mlflow.pyfunc.load_model(f"runs:/{rid}/model")
    classes = model.metadata.metadata["classes"]
    probs = model.predict(x.astype(np.float32))
    for r, p in zip(rows, probs):
        by_class = {r["predicted"]: r["probability"], **{r[f"top{k}"]: r[f"top{k}_probability"] for k in range(2, 11)}}
        assert [by_class[c] for c in classes] == pytest.approx(list(p), abs=1e-5)
    torch_model = mlflow.pytorch.load_model(f"runs:/{rid}/model")
    assert type(torch_model).__name__ == "Probabilities"
    return rid


def test_a_train_run_in_a_local_sqlite_store(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # an SQLite store keeps its artifacts in ./mlruns
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    summary, run_dir = train(tmp_path, uri)
    client = MlflowClient(uri)
    rid = check_run(client, summary, run_dir, tmp_path)
    assert client.get_experiment(client.get_run(rid).info.experiment_id).name == "tiny"


def test_resume_continues_the_same_mlflow_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # an SQLite store keeps its artifacts in ./mlruns
    from nntrain.config import load_config
    from nntrain.pipeline.train import resume_run, train_run
    from nntrain.tracking import start_tracking

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    cfg = load_config(
        None,
        [
            "device=cpu",
            "model.channels=[4]",
            "model.hidden=[16]",
            "train.epochs=4",
            "train.batch_size=100",
            "output.checkpoint_seconds=0",
            f"output.runs_dir={tmp_path / 'runs'}",
            "output.mlflow=true",
            f"output.mlflow_uri={uri}",
        ],
    )
    polls = iter(range(30))  # 13 steps per epoch: stopped inside epoch 3
    tracker = start_tracking(cfg)
    hist, run = train_run(cfg, callbacks=[tracker], should_stop=lambda: next(polls) >= 29)
    assert hist.interrupted
    client = MlflowClient(uri)
    rid = json.loads((run.path / "mlflow.json").read_text())["run_id"]
    assert client.get_run(rid).info.status == "KILLED"
    assert [m.step for m in client.get_metric_history(rid, "val_acc")] == [1, 2]
    tracker = start_tracking(cfg, resume=run.path)
    resume_run(run.path, callbacks=[tracker])
    summary = tracker.finish(run.path, json.loads((run.path / "summary.json").read_text()))
    assert summary["mlflow"]["run_id"] == rid and summary["mlflow"]["not_logged"] == []
    assert client.get_run(rid).info.status == "FINISHED"
    assert len(client.search_runs([client.get_run(rid).info.experiment_id])) == 1
    with open(run.path / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    history = sorted((m.step, m.value) for m in client.get_metric_history(rid, "val_acc"))
    assert history == [(int(r["epoch"]), float(r["val_acc"])) for r in rows] and len(rows) == 4


def cv(tmp_path: Path, uri: str, *extra: str):
    args = ["cv", "--json", "--folds", "2", "--set", f"output.runs_dir={tmp_path / 'runs'}", *TINY_TRAIN]
    args += ["--set", "output.mlflow=true", "--set", f"output.mlflow_uri={uri}", *extra]
    res = cli(*args)
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout[res.stdout.index("{") :])


def test_cv_two_trials_two_folds_give_one_parent_and_two_nested_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # an SQLite store keeps its artifacts in ./mlruns
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    summary = cv(tmp_path, uri, "--grid", "train.optimizer.lr=0.05,0.1")
    client = MlflowClient(uri)
    runs = client.search_runs([summary["mlflow"]["experiment_id"]])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    trials = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == summary["mlflow"]["run_id"]]
    assert len(runs) == 3 and len(parents) == 1 and len(trials) == 2
    assert parents[0].info.run_id == summary["mlflow"]["run_id"]
    by_trial = {int(r.data.tags["nntrain.trial"]): r for r in trials}
    for c in summary["combos"]:
        r = by_trial[c["trial"]]
        assert r.data.params == {k: str(v) for k, v in c["params"].items()}
        assert r.data.metrics["mean_val_acc"] == pytest.approx(c["mean_val_acc"])
        assert r.data.metrics["std_val_acc"] == pytest.approx(c["std_val_acc"])
        folds = sorted((m.step, m.value) for m in client.get_metric_history(r.info.run_id, "fold_val_acc"))
        assert folds == [(f, fold["val_acc_at"]) for f, fold in enumerate(c["folds"])]
        assert r.data.tags["nntrain.trial_state"] == c["state"] == "complete"
        assert r.data.tags["nntrain.best"] == ("true" if c["trial"] == summary["best_trial"] else "false")
    names = {a.path for a in client.list_artifacts(summary["mlflow"]["run_id"])}
    assert {"ranking.csv", "chosen_config.yaml", "summary.json", "plan.json"} <= names
    chosen = yaml.safe_load(
        open(client.download_artifacts(summary["mlflow"]["run_id"], "chosen_config.yaml", str(tmp_path)))
    )
    assert chosen["train"]["optimizer"]["lr"] == summary["best_params"]["train.optimizer.lr"]
    # a resumed cv logs nothing twice
    cv_dir = Path(summary["cv_dir"])
    res = cli("cv", "--resume", cv_dir, "--json")
    assert res.exit_code == 0, res.output
    assert len(client.search_runs([summary["mlflow"]["experiment_id"]])) == 3


@pytest.mark.slow
def test_a_study_shared_by_two_processes_logs_each_trial_once(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # an SQLite store keeps its artifacts in ./mlruns
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    shared = ["--grid", "train.optimizer.lr=0.05,0.1", "--trials", "1", "--storage", f"sqlite:///{tmp_path / 's.db'}"]
    first = cv(tmp_path, uri, *shared)
    second = cv(tmp_path, uri, *shared)
    client = MlflowClient(uri)
    runs = client.search_runs([first["mlflow"]["experiment_id"]])
    trials = sorted(int(r.data.tags["nntrain.trial"]) for r in runs if "nntrain.trial" in r.data.tags)
    assert trials == [0, 1] and len(runs) == 4  # two cv directories, two trials of one study
    best = [r for r in runs if r.data.tags.get("nntrain.best") == "true"]
    assert [int(r.data.tags["nntrain.trial"]) for r in best] == [second["best_trial"]]


@pytest.mark.parametrize(
    "uri,why",
    [
        ("http://:5000", "no host"),
        ("http://localhost:99999", "port"),
        ("ftp://host/x", "no tracking store"),
        ("sqlite://mlflow.db", "three slashes"),
    ],
)
def test_a_malformed_uri_is_exit_2_before_any_run_directory(tmp_path, uri, why):
    res = cli(
        "train",
        "--set",
        f"output.runs_dir={tmp_path / 'runs'}",
        "--set",
        "output.mlflow=true",
        "--set",
        f"output.mlflow_uri={uri}",
        *TINY_TRAIN,
    )
    assert res.exit_code == 2 and "error: output.mlflow_uri" in res.output and why in res.output, res.output
    assert "Traceback" not in res.output and not (tmp_path / "runs").exists()


def test_a_malformed_environment_uri_is_named_and_cv_refuses_it_too(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "nosuch://x")
    res = cli(
        "cv",
        "--folds",
        "2",
        "--set",
        f"output.runs_dir={tmp_path / 'runs'}",
        "--set",
        "output.mlflow=true",
        *TINY_TRAIN,
    )
    assert res.exit_code == 2 and "error: MLFLOW_TRACKING_URI 'nosuch://x'" in res.output, res.output
    assert not (tmp_path / "runs").exists()
    ok = cli("config", "show", "--set", "output.mlflow=false")  # tracking off: the variable is not read
    assert ok.exit_code == 0


def test_the_missing_extra_is_exit_2_naming_the_pip_command(tmp_path):
    code = (
        "import sys\nsys.modules['mlflow'] = None\n"  # as if mlflow were not installed
        "from nntrain.cli.app import main\nsys.argv = ['nntrain'] + sys.argv[1:]\nmain()\n"
    )
    args = ["train", "--set", f"output.runs_dir={tmp_path / 'runs'}", "--set", "output.mlflow=true", *TINY_TRAIN]
    env = dict(os.environ, PYTHONPATH=str(REPO))
    out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 2 and "error:" in out.stderr + out.stdout
    assert "pip install 'nntrain[mlflow]'" in out.stderr + out.stdout and "Traceback" not in out.stderr
    assert not (tmp_path / "runs").exists()


def test_tracking_off_does_not_import_mlflow(tmp_path):
    """The default path's start-up does not grow: a train run with tracking off never imports mlflow."""
    probe = (
        "import atexit, sys; atexit.register(lambda: print('MLFLOW', 'mlflow' in sys.modules)); "
        "sys.argv = ['nntrain'] + sys.argv[1:]; from nntrain.cli.app import main; main()"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe, "train", "--json", "--set", f"output.runs_dir={tmp_path / 'runs'}", *TINY_TRAIN],
        capture_output=True, text=True, cwd=tmp_path, env=dict(os.environ, PYTHONPATH=str(REPO)), timeout=600,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout.split("\nMLFLOW ")[0])
    assert out.stdout.rstrip().endswith("MLFLOW False") and "mlflow" not in summary


# -- a real tracking server ------------------------------------------------------------------


@pytest.fixture
def server(tmp_path):
    """``mlflow server`` on 127.0.0.1 (SQLite backend, local artifact store), stopped at the end."""
    port = free_port()
    db = tmp_path / "server.db"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
            "--backend-store-uri",
            f"sqlite:///{db}",
            "--artifacts-destination",
            str(tmp_path / "artifacts"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=1) as r:
                if r.status == 200:
                    break
        except OSError:
            assert proc.poll() is None, "mlflow server exited"
            time.sleep(0.2)
    else:
        raise AssertionError("mlflow server did not answer")
    info = {"url": url, "db": f"sqlite:///{db}", "proc": proc}
    yield info
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)


@pytest.mark.slow
def test_a_train_run_on_a_real_tracking_server(tmp_path, server):
    mlflow.set_tracking_uri(server["url"])
    summary, run_dir = train(tmp_path, server["url"])
    check_run(MlflowClient(server["url"]), summary, run_dir, tmp_path)


@pytest.mark.slow
def test_the_server_stopped_mid_run_costs_nothing_but_a_warning(tmp_path, server):
    epochs = 40
    args = [
        "train",
        "--set",
        "output.runs_dir=runs",
        "--set",
        "output.mlflow=true",
        "--set",
        f"output.mlflow_uri={server['url']}",
        "--set",
        "model.channels=[8]",
        "--set",
        "model.hidden=[16]",
        "--set",
        f"train.epochs={epochs}",
        "--set",
        "train.batch_size=32",
        "--set",
        "threads=1",
        "--set",
        "device=cpu",
    ]
    env = dict(os.environ, PYTHONPATH=str(REPO), COLUMNS="200")
    proc = subprocess.Popen(
        [sys.executable, "-m", "nntrain", *args],
        cwd=tmp_path,
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    while True:  # two epochs logged, then the server goes away
        csvs = list((tmp_path / "runs").glob("*/metrics.csv"))
        if csvs and len(csvs[0].read_text().splitlines()) > 2:
            break
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    os.killpg(server["proc"].pid, signal.SIGKILL)
    server["proc"].wait(timeout=30)
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    assert err.count("could not log") == 1 and "training goes on" in err and "not logged:" in err
    run_dir = csvs[0].parent
    for name in ("summary.json", "report.html", "best.pt", "curves.png", "confusion.png"):
        assert (run_dir / name).is_file(), name
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["epochs_run"] == epochs
    logged = [m.step for m in MlflowClient(server["db"]).get_metric_history(summary["mlflow"]["run_id"], "train_loss")]
    assert 2 <= len(logged) < epochs  # read back from the dead server's own database
    missed = summary["mlflow"]["not_logged"]
    assert missed[0] == f"metrics of epochs {max(logged) + 1}-{epochs}"
    assert {"the model", "report.html"} <= set(missed)


def test_an_unreachable_server_is_one_warning_and_the_run_goes_on(tmp_path):
    uri = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    args = ["train", "--json", "--set", f"output.runs_dir={tmp_path / 'runs'}", *TINY_TRAIN, "--set", "device=cpu"]
    res = cli(*args, "--set", "output.mlflow=true", "--set", f"output.mlflow_uri={uri}")
    assert res.exit_code == 0, res.output
    assert res.stderr.count("could not log") == 1 and "training goes on" in res.stderr
    summary = json.loads(res.stdout)
    run_dir = Path(summary["run_dir"])
    assert summary["mlflow"]["run_id"] is None and summary["mlflow"]["tracking_uri"] == uri
    assert summary["mlflow"]["not_logged"][:2] == ["metrics of epochs 1-2", "the whole run"]
    assert json.loads((run_dir / "summary.json").read_text())["mlflow"] == summary["mlflow"]
    for name in ("report.html", "best.pt", "curves.png", "metrics.csv"):
        assert (run_dir / name).is_file(), name


def test_only_rank_0_tracks(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    from nntrain.config import load_config
    from nntrain.tracking import Off, start_tracking

    cfg = load_config(None, ["output.mlflow=true", "output.mlflow_uri=sqlite:///unused.db"])
    monkeypatch.setenv("RANK", "1")
    assert isinstance(start_tracking(cfg), Off)
    monkeypatch.setenv("RANK", "0")
    assert not isinstance(start_tracking(cfg), Off)  # the same settings on rank 0 do track


def test_a_store_that_cannot_be_opened_is_one_warning_too(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # whatever MLflow might write lands there
    args = ["train", "--json", "--set", f"output.runs_dir={tmp_path / 'runs'}", *TINY_TRAIN, "--set", "device=cpu"]
    (tmp_path / "a-file").write_text("not a folder")
    uri = f"sqlite:///{tmp_path / 'a-file' / 'mlflow.db'}"  # no database can live under a file
    res = cli(*args, "--set", "output.mlflow=true", "--set", f"output.mlflow_uri={uri}")
    assert res.exit_code == 0, res.output
    assert res.stderr.count("could not log") == 1 and "Traceback" not in res.output
    assert "the whole run" in json.loads(res.stdout)["mlflow"]["not_logged"]
