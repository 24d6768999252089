"""Pruning per epoch inside a trial's first fold, decided wherever that fold runs.

The steps a trial reports to its pruner (``E``: ``Plan.first_fold_epochs``, ``train.epochs`` or its
largest value when the search varies it, so that a step means the same for every trial):

- fold 0, epoch e = 1..E: step e-1, the fold's val accuracy at epoch e. Fold 0's split (and its
  initialization seed) is the same for every trial, so the values at one step are comparable;
- after fold f ≥ 1: step E-1+f, the honest score over folds 0..f (``score.honest``).

A NaN value (a diverged fold) is reported as 0, as a diverged trial's value is 0 for the sampler.
A fold 0 that stopped early (``train.patience``) reports fewer epoch steps; the fold steps stay E-1+f.
The pruners are Optuna's, unchanged (``study.make_pruner``): the median pruner compares a trial's best
value so far with the median of the complete trials' values at the same step.

Inside fold 0 the decision is made where the fold runs: this process (``--jobs 1``), a pool worker or
a Ray worker, which may not reach the study's storage. When the main process dispatches fold 0 it
puts into the job a snapshot of the study's trials as plain data (``snapshot``: state, value,
intermediate values and system attributes — what Optuna's pruners read) and the pruner's settings
(name, E). ``PruneCheck``, a ``fit`` callback, rebuilds that study in memory with the same pruner,
creates a trial there, reports each epoch's value and asks Optuna's
``should_prune()``; on "prune" it stops ``fit`` after that epoch (``StopTraining``) and the fold's
result carries ``pruned_step``. The main process then replays the fold's reports on the real trial
(``replay``), so the study holds its per-epoch intermediate values (which TPE reads for pruned
trials, as Optuna normally does), and tells it PRUNED.

Staleness, the one difference from a pruner called in the main process: trials that finish while
the fold runs (other trials of the same batch, other processes on a shared study) are not seen by
that fold's decision. The snapshot is taken at dispatch, so the decision depends on nothing else:
every executor makes the same decisions for the same study.
"""

from __future__ import annotations

from typing import Any

from nntrain.cv.plan import Plan
from nntrain.cv.study import make_pruner
from nntrain.training.callbacks import StopTraining


def fold_step(epochs: int, fold: int) -> int:
    """The step after fold ``fold`` ≥ 1: E-1+f (fold 0's epochs hold steps 0..E-1)."""
    return epochs - 1 + fold


def value(v: float | None) -> float:
    """What a step reports: the value, 0 where it is NaN (diverged)."""
    return 0.0 if v is None or v != v else float(v)


def snapshot(study: Any, exclude: set[int] | frozenset[int] = frozenset()) -> list[dict[str, Any]]:
    """The study's trials as the pruner sees them, as plain data (picklable, small): every trial that
    is not waiting, less ``exclude`` (the batch being dispatched, which has reported nothing)."""
    from optuna.trial import TrialState

    return [
        {
            "state": t.state.name,
            "value": t.value if t.state in (TrialState.COMPLETE, TrialState.PRUNED) else None,
            "intermediate": sorted(t.intermediate_values.items()),
            "system_attrs": dict(t.system_attrs),
        }
        for t in study.get_trials(deepcopy=False)
        if t.state != TrialState.WAITING and t.number not in exclude
    ]


def spec(study: Any, plan: Plan, exclude: set[int]) -> dict[str, Any]:
    """What a fold-0 job needs to decide itself: the pruner (name, E) and the study's snapshot."""
    return {"pruner": plan.pruner, "epochs": plan.first_fold_epochs(), "trials": snapshot(study, exclude)}


def _in_memory(job_spec: dict[str, Any]) -> Any:
    """A study in memory with the snapshot's trials and the same pruner."""
    import optuna
    from optuna.trial import TrialState, create_trial

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # a worker: no INFO line per fold
    study = optuna.create_study(
        storage=optuna.storages.InMemoryStorage(),
        sampler=optuna.samplers.RandomSampler(seed=0),  # asks for nothing: any sampler will do
        pruner=make_pruner(job_spec["pruner"], job_spec["epochs"]),
        direction="maximize",
    )
    study.add_trials(
        [
            create_trial(
                state=TrialState[t["state"]],
                value=t["value"],
                intermediate_values={int(s): v for s, v in t["intermediate"]},
                system_attrs=t["system_attrs"],
            )
            for t in job_spec["trials"]
        ]
    )
    return study


class PruneCheck:
    """``fit`` callback of a trial's fold 0: reports each epoch's val accuracy at step epoch-1 to a trial
    of the in-memory study and stops training after the epoch the pruner prunes (``pruned_step``)."""

    def __init__(self, job_spec: dict[str, Any]):
        self.trial = _in_memory(job_spec).ask()
        self.pruned_step: int | None = None

    def on_epoch_end(self, record: dict[str, Any]) -> None:
        step = record["epoch"] - 1
        self.trial.report(value(record["val_acc"]), step)
        if self.pruned_step is None and self.trial.should_prune():
            self.pruned_step = step
            raise StopTraining(f"pruned: val accuracy {value(record['val_acc']):.4f} at epoch {record['epoch']}")


def replay(trial: Any, curve: list[float | None]) -> None:
    """Fold 0's reports, epoch by epoch, on the real trial. ``should_prune()`` follows each report as it
    did in the job: its answer was given there (on the snapshot), but a pruner may keep records on the
    trial (ASHA writes the value at each rung), which must land in the real study."""
    for step, v in enumerate(curve):
        trial.report(value(v), step)
        trial.should_prune()
