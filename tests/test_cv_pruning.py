"""Pruning inside a trial's first fold, per epoch (nntrain/cv/pruning.py): real short searches on digits
with a small MLP, read back through Optuna's own API from the study's storage."""

from __future__ import annotations

import math

import numpy as np
import pytest

from nntrain.cv.score import honest

E, K = 4, 3  # epochs per fold, folds
HEALTHY = (0.1, 0.2, 0.3)  # three start-up trials that learn (the median pruner's n_startup_trials)
CANNOT_LEARN = 1e-5  # lr: the weights hardly move in E epochs, val accuracy stays near chance


def search(tmp_path, lrs, *, trials=None, pruner="median", jobs=1, parallel=1, folds=K, sets=(), executor=None):
    """run_search of a small MLP on digits over lr, the first trials enqueued at ``lrs`` (TPE, seed 0);
    returns (summary, the study's trials loaded from its storage, storage URL, plan, cv dir, folds)."""
    import optuna

    from nntrain.config import load_config
    from nntrain.cv.folds import check
    from nntrain.cv.local import LocalExecutor
    from nntrain.cv.plan import Plan
    from nntrain.cv.search import run_search
    from nntrain.cv.space import parse_sample
    from nntrain.cv.store import CvDir
    from nntrain.cv.study import default_storage, open_study

    sets = ["device=cpu", "model.name=mlp", "model.hidden=[16]", f"train.epochs={E}", "train.batch_size=128", *sets]
    cfg = load_config(None, [*sets, f"output.runs_dir={tmp_path / 'runs'}"])
    space = parse_sample(["train.optimizer.lr=log:1e-5:0.5"], cfg)
    plan = Plan(cfg, folds, {}, space, trials or len(lrs), "tpe", pruner)
    fold_idx = check(plan)
    d = CvDir.create(plan, [va for _, va in fold_idx])
    url = default_storage(d.path)
    study = open_study(plan, url, seed=0)
    for lr in lrs:
        study.enqueue_trial({"train.optimizer.lr": lr})
    ex = executor or LocalExecutor(jobs, 1)
    s = run_search(plan, d, fold_idx, study, executor=ex, parallel=parallel)
    return s, optuna.load_study(study_name=plan.study, storage=url).get_trials(), url, plan, d, fold_idx


def by_state(ts, name):
    return [t for t in ts if t.state.name == name]


def median_before(ts, n, step):
    """The median pruner's threshold for trial ``n`` at ``step``: complete trials before it (one trial per
    batch: all of them had finished when its fold 0 was dispatched), their values at that step."""
    return np.median([t.intermediate_values[step] for t in ts if t.number < n and t.state.name == "COMPLETE"])


def test_a_trial_that_cannot_learn_is_pruned_inside_its_first_fold_and_a_healthy_one_ranks_best(tmp_path):
    # the 5th trial trains exactly as the best start-up trial (same parameters, same fold seeds)
    s, ts, *_ = search(tmp_path, [*HEALTHY, CANNOT_LEARN, HEALTHY[-1]])
    (bad,) = by_state(ts, "PRUNED")
    assert bad.params["train.optimizer.lr"] == CANNOT_LEARN
    (fold0,) = bad.user_attrs["folds"]  # stopped inside fold 0: one fold, fewer epochs than E
    assert fold0["fold"] == 0 and fold0["epochs_run"] < E and fold0["stopped"].startswith("pruned")
    assert fold0["epochs_run"] >= math.ceil(E / 2)  # the median pruner's warm-up: not before mid fold 0
    # its per-epoch values at steps 0..epochs-1, as Optuna stores them; they are the fold's val accuracy
    assert sorted(bad.intermediate_values) == list(range(fold0["epochs_run"]))
    assert [bad.intermediate_values[i] for i in range(fold0["epochs_run"])] == fold0["val_acc_curve"]
    last = bad.last_step  # the median rule at the step it stopped: best value so far below the median
    assert max(bad.intermediate_values.values()) < median_before(ts, bad.number, last)
    for t in by_state(ts, "COMPLETE"):  # every healthy trial: all folds, all epochs, never pruned
        assert [f["epochs_run"] for f in t.user_attrs["folds"]] == [E] * K
        if t.number >= len(HEALTHY):  # after the start-up trials the rule said "go on" at every step it judged
            for step in sorted(t.intermediate_values)[math.ceil(E / 2) - 1 : -1]:
                best = max(v for i, v in t.intermediate_values.items() if i <= step)
                assert best >= median_before(ts, t.number, step)
    assert len(by_state(ts, "COMPLETE")) == 4
    best = s["combos"][s["best"]]
    assert best["state"] == "complete" and best["folds_run"] == K and best["params"]["train.optimizer.lr"] >= 0.1
    (i,) = [c["index"] for c in s["combos"] if c["trial"] == bad.number]
    assert s["pruned"] == [i] and i not in s["ranking"]
    assert s["fold_epochs"] == 4 * K * E + fold0["epochs_run"]


def test_steps_after_fold_0_continue_at_E_minus_1_plus_f(tmp_path):
    s, ts, *_ = search(tmp_path, [0.2], folds=3, pruner="median")
    (t,) = ts
    folds = t.user_attrs["folds"]
    assert sorted(t.intermediate_values) == [*range(E), E, E + 1]  # fold 0's epochs, then E-1+f for f = 1, 2
    assert [t.intermediate_values[i] for i in range(E)] == folds[0]["val_acc_curve"]
    for f in (1, 2):  # the running honest score over folds 0..f
        assert t.intermediate_values[E - 1 + f] == pytest.approx(honest(folds[: f + 1])["score"])
    assert t.value == pytest.approx(honest(folds)["score"])


def test_first_fold_epochs_is_the_most_any_trial_trains(tiny_cfg):
    from nntrain.cv.plan import Plan
    from nntrain.cv.pruning import fold_step
    from nntrain.cv.space import parse_sample

    cfg = tiny_cfg("train.epochs=7")
    assert Plan(cfg, 3).first_fold_epochs() == 7
    assert Plan(cfg, 3, {"train.epochs": [3, 12, 5]}).first_fold_epochs() == 12  # searched: its largest value
    space = parse_sample(["train.epochs=uniform:2:9"], cfg)
    assert Plan(cfg, 3, {}, space).first_fold_epochs() == 9
    assert [fold_step(7, f) for f in (1, 2, 3)] == [7, 8, 9]


def test_patience_in_fold_0_keeps_the_fold_steps(tmp_path):
    """A fold 0 that early-stops reports fewer epoch steps; the fold steps stay E-1+f."""
    s, ts, *_ = search(tmp_path, [CANNOT_LEARN], folds=2, sets=["train.patience=1"])
    (t,) = ts
    run = t.user_attrs["folds"][0]["epochs_run"]
    assert run < E  # val accuracy flat: stopped by patience (the one trial: nothing to prune against)
    assert sorted(t.intermediate_values) == [*range(run), E]  # fold 1 at step E-1+1, whatever fold 0 ran


def test_asha_prunes_inside_the_first_fold_at_its_rungs_with_the_same_steps(tmp_path):
    s, ts, *_ = search(tmp_path, [0.2, CANNOT_LEARN, 0.3], pruner="asha")
    bad = next(t for t in ts if t.params["train.optimizer.lr"] == CANNOT_LEARN)
    assert bad.state.name == "PRUNED" and len(bad.user_attrs["folds"]) == 1
    assert bad.user_attrs["folds"][0]["epochs_run"] < E  # rung 0: min_resource 1 → step 1, epoch 2
    for t in ts:  # the rungs the job's pruner recorded reach the real study (replayed there)
        rungs = {int(k.rsplit("_", 1)[1]): v for k, v in t.system_attrs.items() if k.startswith("completed_rung_")}
        assert rungs and all(v == t.intermediate_values[3**r] for r, v in rungs.items())
    best = s["combos"][s["best"]]
    assert best["state"] == "complete" and best["folds_run"] == K


def decisions(ts):
    return [
        (
            t.number,
            t.state.name,
            t.params,
            t.intermediate_values,
            [(f["epochs_run"], f["val_acc_curve"]) for f in t.user_attrs.get("folds", [])],
        )
        for t in ts
    ]


@pytest.mark.slow
def test_pool_and_in_process_executors_make_the_same_pruning_decisions(tmp_path):
    """Two trials at a time (parallel=2) in this process, then on two worker processes: each fold 0 decides
    on the snapshot it was sent, so the decisions and the values are the same."""
    lrs = [*HEALTHY, 0.25, CANNOT_LEARN, 0.3]  # the last two run together, after four complete trials
    a, ts_a, *_ = search(tmp_path / "in-process", lrs, jobs=1, parallel=2)
    b, ts_b, *_ = search(tmp_path / "pool", lrs, jobs=2, parallel=2)
    assert decisions(ts_a) == decisions(ts_b)
    assert by_state(ts_a, "PRUNED")  # the comparison covers a pruned trial
    assert a["ranking"] == b["ranking"] and a["pruned"] == b["pruned"]


def test_resume_keeps_a_fold_0_pruning_decision_without_training_it_again(tmp_path):
    """Killed after fold 0 of a trial was pruned (its result saved) but before the study heard: the retry
    reuses that fold and prunes the trial again, with the same per-epoch values."""
    from nntrain.cv.local import LocalExecutor

    class KilledAfterAPrunedFold(LocalExecutor):
        def map(self, fn, jobs, report=None):
            for r in super().map(fn, jobs, report):
                yield r
                if r["pruned_step"] is not None:
                    raise KeyboardInterrupt  # after the fold is saved, before the trial is told

    lrs = [*HEALTHY, CANNOT_LEARN]
    with pytest.raises(KeyboardInterrupt):
        search(tmp_path, lrs, executor=KilledAfterAPrunedFold(1, 1))
    import optuna

    from nntrain.cv.search import run_search
    from nntrain.cv.store import CvDir
    from nntrain.cv.study import default_storage, open_study

    ((d,),) = [list((tmp_path / "runs").glob("cv-*"))]
    cvdir, plan = CvDir.open(d)
    url = default_storage(d)
    study = open_study(plan, url, seed=0)
    killed = [t for t in study.get_trials() if t.user_attrs.get("interrupted")]
    assert [t.params["train.optimizer.lr"] for t in killed] == [CANNOT_LEARN]
    trained = []

    class Counting(LocalExecutor):
        def map(self, fn, jobs, report=None):
            jobs = list(jobs)
            trained.extend(jobs)
            return super().map(fn, jobs, report)

    from nntrain.cv.folds import check

    s = run_search(plan, cvdir, check(plan), study, executor=Counting(1, 1))
    ts = optuna.load_study(study_name=plan.study, storage=url).get_trials()
    (retry,) = [t for t in ts if t.user_attrs.get("retry_of") == killed[0].number]
    assert retry.state.name == "PRUNED" and trained == [] and s["skipped_done"] == len(HEALTHY) * K + 1
    saved = cvdir.load(killed[0].number, 0)
    assert [retry.intermediate_values[i] for i in sorted(retry.intermediate_values)] == saved["val_acc_curve"]


def test_the_pruned_line_says_where_the_trial_stopped():
    from nntrain.cli.render import pruned_line

    inside = {"combo": 4, "folds_run": 1, "epochs_run": 5, "score": 0.8123}
    assert pruned_line(inside, 3) == "cv trial 4: pruned in fold 1 of 3 after 5 epochs (score so far 0.8123)"
    later = {"combo": 7, "folds_run": 2, "epochs_run": 20, "score": 0.95}
    assert pruned_line(later, 3) == "cv trial 7: pruned after 2 of 3 folds, 20 epochs (score so far 0.9500)"
