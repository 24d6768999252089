"""The cv directory and the plan it holds, written so an interrupted cv can resume.

``<runs_dir>/cv-<timestamp>/`` (never overwritten): ``config.yaml`` (resolved base config),
``plan.json`` (folds, combinations, search space, each fold's val indices),
``combo-NNN/fold-F/{metrics.csv, result.json}`` (result.json written last: a fold is done
when it exists), ``combo-NNN/oof.csv`` (out-of-fold predictions), ``summary.json``,
``refit/`` (``--refit``: a run directory of its own).

Folds are numbered 1..k on disk (``fold-1``, result.json's and oof.csv's ``fold``), as on screen;
in memory, jobs and the study they are the indices 0..k-1 (fold seeds, plan.json's list of val
indices). A cv directory written before the 1..k numbering (plan.json without ``first_fold``)
keeps its ``fold-0..`` names when resumed, so its finished folds are still found.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from nntrain.config import to_yaml
from nntrain.cv.plan import Plan
from nntrain.errors import ConfigError, DataError
from nntrain.runs.files import atomic_write_text, json_text  # json_text: re-exported for cv
from nntrain.runs.rundir import RunDir, metrics_csv


class CvDir:
    """One cv directory (layout in the module docstring)."""

    FIRST = 1  # the number of the first fold on disk (older cv directories: 0)

    def __init__(self, path: Path, first: int = FIRST):
        self.path = Path(path)
        self.first = first

    @classmethod
    def create(cls, plan: Plan, fold_val: list[np.ndarray]) -> CvDir:
        run = RunDir.create(plan.base.output.runs_dir, "cv", config_yaml=to_yaml(plan.base))
        d = cls(run.path)
        atomic_write_text(
            d.path / "plan.json",
            json_text({**plan.to_json(), "first_fold": cls.FIRST, "fold_val_indices": [v.tolist() for v in fold_val]}),
        )
        return d

    @classmethod
    def open(cls, path: str | Path) -> tuple[CvDir, Plan]:
        try:
            raw = json.loads((Path(path) / "plan.json").read_text())
            first = raw.get("first_fold", 0)  # absent: written before folds were numbered 1..k
            if first not in (0, 1):
                raise ValueError(f"first_fold is {first!r}, not 0 or 1")
            return cls(Path(path), first), Plan.from_json(raw)
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise ConfigError(
                f"--resume '{path}': not a readable nntrain cv directory (plan.json: {e}); "
                "pass a directory written by 'nntrain cv'"
            ) from None

    def check_folds(self, fold_val: list[np.ndarray]) -> None:
        saved = json.loads((self.path / "plan.json").read_text())["fold_val_indices"]
        if saved != [v.tolist() for v in fold_val]:
            raise DataError(
                f"--resume '{self.path}': the dataset or its splits changed since this cv started; "
                "start a new cv instead of resuming"
            )

    def fold_dir(self, combo: int, fold: int) -> Path:
        """Where fold index ``fold`` (0..k-1) of trial ``combo`` lives: ``fold-{fold + first}``."""
        return self.path / f"combo-{combo:03d}" / f"fold-{fold + self.first}"

    def done(self, combo: int, fold: int) -> bool:
        return (self.fold_dir(combo, fold) / "result.json").is_file()

    def save(self, result: dict[str, Any]) -> None:
        d = self.fold_dir(result["combo"], result["fold"])
        d.mkdir(parents=True, exist_ok=True)
        atomic_write_text(d / "metrics.csv", metrics_csv(result["records"]))
        shown = {**result, "fold": result["fold"] + self.first}  # the fold's number, as its folder and the screen say
        atomic_write_text(d / "result.json", json_text(shown))  # last: its presence marks the fold as done

    def load(self, combo: int, fold: int) -> dict[str, Any]:
        r = json.loads((self.fold_dir(combo, fold) / "result.json").read_text())
        r["fold"] -= self.first  # back to the index every other part uses
        return {k: (math.nan if v is None and k in ("best_val_acc", "val_loss") else v) for k, v in r.items()}
