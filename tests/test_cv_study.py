"""nntrain cv on a real Optuna study: honest scores, pruning, SQLite and PostgreSQL shared by
several processes, kill -9 and --resume, bad storage URLs."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from nntrain.cv.score import honest
from tests.helpers import free_port

REPO = Path(__file__).resolve().parents[1]
TINY = {"device": "cpu", "model": {"name": "mlp", "hidden": [16]}, "train": {"epochs": 2, "batch_size": 128}}
SPACE = ["--folds", "2", "--sample", "train.optimizer.lr=log:1e-3:0.5"]


@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump({**TINY, "output": {"runs_dir": str(tmp_path / "runs")}}))
    return path


def nntrain(*args: str, cwd: Path, env: dict | None = None) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", **(env or {})}
    cmd = [sys.executable, "-m", "nntrain.cli.app", *args]
    return subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def trials(url: str, name: str = "shared") -> list:
    import optuna

    return optuna.load_study(study_name=name, storage=url).get_trials()


# --------------------------------------------------------------------------- honest scores


def test_per_fold_best_is_biased_upward_on_noisy_curves_and_the_common_epoch_much_less():
    """Oracle: every epoch's true accuracy is 0.8; val accuracy is that plus noise (sd 0.03), 40 epochs, 5 folds."""
    rng = np.random.default_rng(0)
    own_best, common = [], []
    for _ in range(200):
        curves = 0.8 + 0.03 * rng.standard_normal((5, 40))
        folds = [{"val_acc_curve": c.tolist(), "val_loss_curve": (1 - c).tolist(), "diverged": False} for c in curves]
        own_best.append(curves.max(axis=1).mean())
        common.append(honest(folds)["score"])
    bias_own, bias_common = np.mean(own_best) - 0.8, np.mean(common) - 0.8
    assert bias_own > 0.06  # ≈ 0.03 · E[max of 40 normals] ≈ 0.067
    assert bias_common < bias_own / 2  # one epoch for all folds: noise averaged over folds before the max
    # scored at the argmax of the mean curve, reported as mean ± std of the folds at that one epoch
    folds = [
        {"val_acc_curve": [0.5, 0.9, 0.7], "val_loss_curve": [1, 1, 1]},
        {"val_acc_curve": [0.6, 0.7, 0.95], "val_loss_curve": [1, 1, 1]},
    ]
    h = honest(folds)
    assert h["epoch"] == 3 and h["score"] == pytest.approx(0.825) and h["std"] == pytest.approx(0.125)
    assert h["last"] == pytest.approx(0.825)
    short = [folds[0], {"val_acc_curve": [0.6, 0.95], "val_loss_curve": [1, 1]}]  # early stop: common epochs only
    assert honest(short)["epoch"] == 2 and honest(short)["score"] == pytest.approx(0.925)
    assert np.isnan(honest([{**folds[0], "diverged": True}, folds[1]])["score"])


# --------------------------------------------------------------------------- pruning


def test_median_pruner_stops_poor_trials_early_and_ranks_them_apart(tiny, tmp_path):
    grid = "train.optimizer.lr=0.3,0.2,0.1,0.00001,0.00002,0.00003,0.00004"
    p = nntrain(
        "cv", "--config", str(tiny), "--folds", "3", "--grid", grid, "--pruner", "median", "--json", cwd=tmp_path
    )
    out, _ = p.communicate(timeout=600)
    assert p.returncode == 0, out
    s = json.loads(out[out.index("{") :])
    pruned = [s["combos"][i] for i in s["pruned"]]
    assert pruned, "no trial was pruned"
    for c in pruned:  # kept with the folds they ran, never among the ranked
        assert c["state"] == "pruned" and 1 <= c["folds_run"] < 3 and len(c["folds"]) == c["folds_run"]
        assert c["index"] not in s["ranking"]
    # oracle, the median rule at the steps of nntrain/cv/pruning.py (E = 2 epochs: fold 0's epochs are steps
    # 0 and 1, fold f ≥ 1 step 1+f): a pruned trial's best value up to its last step lies below the median of
    # the earlier complete trials' values at that step (from the 4th trial on)
    epochs = TINY["train"]["epochs"]
    ts = {t.number: t for t in trials(f"sqlite:///{s['cv_dir']}/study.db", "nntrain-cv")}
    for n, t in ts.items():
        if t.state.name != "PRUNED":
            continue
        step = t.last_step
        earlier = [u.intermediate_values[step] for m, u in ts.items() if m < n and u.state.name == "COMPLETE"]
        assert len(earlier) >= 3 and max(t.intermediate_values.values()) < np.median(earlier)
        c = s["combos"][[c["trial"] for c in s["combos"]].index(n)]
        if step < epochs:  # inside fold 0, after epoch step+1
            assert c["folds_run"] == 1 and c["fold_epochs"] == step + 1
        else:
            assert c["folds_run"] == step - (epochs - 1) + 1
    best = s["combos"][s["best"]]
    assert best["state"] == "complete" and best["folds_run"] == 3  # the best trial ran every fold
    assert s["fold_epochs"] == sum(c["fold_epochs"] for c in s["combos"]) < 7 * 3 * 2
    assert sorted(c["trial"] for c in pruned) == sorted(n for n, t in ts.items() if t.state.name == "PRUNED")


# --------------------------------------------------------------------------- shared studies


def two_processes(url: str, tiny: Path, tmp_path: Path) -> None:
    procs = [
        nntrain(
            "cv", "--config", str(tiny), *SPACE, "--trials", "2", "--storage", url, "--study", "shared", cwd=tmp_path
        )
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=600)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    ts = trials(url)
    assert sorted(t.number for t in ts) == [0, 1, 2, 3]  # two processes × --trials 2, no duplicate numbers
    assert all(t.state.name == "COMPLETE" and len(t.user_attrs["folds"]) == 2 for t in ts)  # no lost results
    assert len({t.user_attrs["cv_dir"] for t in ts}) == 2  # each process wrote its folds into its own cv dir
    for t in ts:
        assert (Path(t.user_attrs["cv_dir"]) / f"combo-{t.number:03d}" / "fold-2" / "result.json").is_file()
    assert "ranking" in outs[0] and "ranking" in outs[1]  # each process ranks the whole study it saw


def test_two_processes_share_one_sqlite_study(tiny, tmp_path):
    two_processes(f"sqlite:///{tmp_path / 'shared.db'}", tiny, tmp_path)


def test_resume_after_kill_9_mid_trial_finishes_the_study(tiny, tmp_path):
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    slow = ["--set", "train.epochs=40"]  # folds of a second or more: time to catch one mid-trial
    p = nntrain(
        "cv", "--config", str(tiny), *SPACE, *slow, "--trials", "3", "--storage", url, "--study", "shared", cwd=tmp_path
    )
    deadline = time.monotonic() + 300

    def done(trial: int, fold: int) -> bool:
        return bool(list((tmp_path / "runs").glob(f"cv-*/combo-{trial:03d}/fold-{fold + 1}/result.json")))

    def half_done() -> bool:  # a trial after the first is RUNNING with its first fold finished, not its second
        if not done(0, 0):
            return False
        running = [t.number for t in trials(url) if t.state.name == "RUNNING"]
        return any(n >= 1 and done(n, 0) and not done(n, 1) for n in running)

    while not half_done():
        assert p.poll() is None and time.monotonic() < deadline, p.stdout.read() if p.poll() is not None else "slow"
        time.sleep(0.05)
    p.send_signal(signal.SIGKILL)
    p.wait()
    (cv_dir,) = (tmp_path / "runs").glob("cv-*")
    before = trials(url)
    # the kill lands inside a trial (when exactly depends on the machine's speed): earlier ones are complete
    (killed,) = [t.number for t in before if t.state.name == "RUNNING"]
    assert killed >= 1 and all(t.state.name == "COMPLETE" for t in before if t.number < killed)
    done_folds = len(list(cv_dir.glob("combo-*/fold-*/result.json")))
    r = nntrain("cv", "--resume", str(cv_dir), cwd=tmp_path)
    out = r.communicate(timeout=600)[0]
    assert r.returncode == 0, out
    ts = trials(url)
    # the killed trial is marked FAIL and its parameters re-run as a new trial, reusing its finished folds
    states = {t.number: t.state.name for t in ts}
    assert states[killed] == "FAIL" and sum(s == "COMPLETE" for s in states.values()) == 3 and len(ts) == 4
    (retry,) = [t for t in ts if t.user_attrs.get("retry_of") == killed]
    assert retry.state.name == "COMPLETE" and retry.params == ts[killed].params
    assert f"resumed: {done_folds} finished folds were skipped" in out
    summary = json.loads((cv_dir / "summary.json").read_text())
    assert sorted(c["trial"] for c in summary["combos"]) == sorted(n for n, s in states.items() if s == "COMPLETE")


PG_PASSWORD = "pg-s3cret"


@pytest.fixture
def postgres(tmp_path):
    """A real PostgreSQL server (Debian's postgresql package), on 127.0.0.1 only, run by the postgres user."""
    bins = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if not bins:
        pytest.skip("PostgreSQL is not installed (apt-get install postgresql; .ci/run does it)")
    pytest.importorskip("psycopg", reason="the postgres extra: pip install 'nntrain[postgres]'")
    bindir = bins[-1].parent
    top = Path(tempfile.mkdtemp(prefix="nntrain-pg-"))  # pytest's tmp dirs are private to this user
    top.chmod(0o755)
    data = top / "data"
    as_pg: list[str] = []
    if os.geteuid() == 0:  # initdb refuses root
        as_pg = ["runuser", "-u", "postgres", "--"]
        data.mkdir()
        shutil.chown(data, "postgres")
    port = free_port()
    pwfile = top / "pw"
    pwfile.write_text(PG_PASSWORD + "\n")
    pwfile.chmod(0o644)
    subprocess.run(  # password authentication, as a shared server would have it
        [*as_pg, str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=scram-sha-256"]
        + [f"--pwfile={pwfile}"],
        check=True,
        capture_output=True,
    )
    opts = f"-h 127.0.0.1 -p {port} -k {data}"
    subprocess.run(
        [*as_pg, str(bindir / "pg_ctl"), "-D", str(data), "-o", opts, "-w", "-l", str(data / "log"), "start"],
        check=True,
        capture_output=True,
    )
    try:
        yield f"postgresql://postgres:{PG_PASSWORD}@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(
            [*as_pg, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"], capture_output=True
        )


def test_two_processes_share_one_postgresql_study(postgres, tiny, tmp_path):
    two_processes(postgres, tiny, tmp_path)


def test_the_cv_directory_keeps_no_password_and_resume_takes_it_back(postgres, tiny, tmp_path):
    """plan.json records where the study lives, without the password: --resume gets it from --storage
    (the same URL) or from PGPASSWORD; without either it exits 2 saying so; another database is refused."""
    p = nntrain("cv", "--config", str(tiny), *SPACE, "--trials", "1", "--storage", postgres, cwd=tmp_path)
    out = p.communicate(timeout=300)[0]
    assert p.returncode == 0, out
    (cv_dir,) = (tmp_path / "runs").glob("cv-*")
    files = [f for f in cv_dir.rglob("*") if f.is_file()]
    assert files and not [f for f in files if PG_PASSWORD.encode() in f.read_bytes()]
    assert json.loads((cv_dir / "plan.json").read_text())["storage"] == postgres.replace(f":{PG_PASSWORD}@", "@")

    def resume(*args: str, env: dict | None = None) -> tuple[int, str]:
        r = nntrain("cv", "--resume", str(cv_dir), *args, cwd=tmp_path, env=env)
        out = r.communicate(timeout=300)[0]
        return r.returncode, out

    rc, out = resume(env={"PGPASSWORD": ""})
    assert rc == 2 and "cannot open the database" in out and "PGPASSWORD" in out, out
    assert "Traceback" not in out and PG_PASSWORD not in out
    rc, out = resume("--storage", postgres)
    assert rc == 0, out
    rc, out = resume(env={"PGPASSWORD": PG_PASSWORD})
    assert rc == 0, out
    other = postgres.replace("/postgres", "/other")
    rc, out = resume("--storage", other)
    assert rc == 2 and "is another database" in out and PG_PASSWORD not in out, out
    assert len(trials(postgres, "nntrain-cv")) == 1  # resuming a finished search adds no trial


# --------------------------------------------------------------------------- bad storage


def test_unreachable_storage_exits_2_naming_the_url_without_its_password(tiny, tmp_path):
    port = free_port()  # nothing listens there
    url = f"postgresql://ann:s3cret@127.0.0.1:{port}/db"
    p = nntrain("cv", "--config", str(tiny), *SPACE, "--storage", url, cwd=tmp_path)
    out = p.communicate(timeout=120)[0]
    assert p.returncode == 2, out
    assert f"--storage postgresql://ann:***@127.0.0.1:{port}/db: cannot open the database" in out
    assert "s3cret" not in out and "Traceback" not in out and not (tmp_path / "runs").exists()


def test_missing_driver_says_how_to_install(tiny, tmp_path, monkeypatch):
    from nntrain.cv.study import open_storage
    from nntrain.errors import ConfigError

    monkeypatch.setitem(sys.modules, "psycopg", None)  # as if the postgres extra were not installed
    with pytest.raises(ConfigError, match=r"driver is missing .*pip install 'nntrain\[postgres\]'"):
        open_storage("postgresql://ann:pw@127.0.0.1:1/db")


def test_study_with_another_search_space_exits_2_saying_how_to_start_a_new_one(tiny, tmp_path):
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    args = ["cv", "--config", str(tiny), "--folds", "2", "--storage", url, "--study", "s", "--trials", "1"]
    p = nntrain(*args, "--sample", "train.optimizer.lr=log:1e-3:0.5", cwd=tmp_path)
    assert p.wait(timeout=600) == 0, p.stdout.read()
    p = nntrain(*args, "--sample", "train.optimizer.lr=log:1e-2:0.5", cwd=tmp_path)
    out = p.communicate(timeout=600)[0]
    assert p.returncode == 2, out
    assert "study 's' in sqlite:///" in out and "was started with another search space (differs in: sample)" in out
    assert "another --study NAME" in out and "Traceback" not in out
    assert len(list((tmp_path / "runs").glob("cv-*"))) == 1  # refused before its cv directory
