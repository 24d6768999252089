"""What a cv run does (folds, search space, how it searches, where the study lives), saved as ``plan.json``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from nntrain.config import Config
from nntrain.cv.space import Dist


def without_password(url: str | None) -> str | None:
    """``url`` without its password (what plan.json keeps: ``--resume`` takes it back from ``--storage``,
    or the driver from the environment, e.g. PostgreSQL's PGPASSWORD or ~/.pgpass)."""
    if url is None:
        return None
    try:
        from sqlalchemy.engine import URL, make_url

        u = make_url(url)
    except Exception:  # not a URL SQLAlchemy reads: open_storage refused it before any plan.json was written
        return url
    if u.password is None:
        return url
    parts = {k: getattr(u, k) for k in ("drivername", "username", "host", "port", "database", "query")}
    return URL.create(**parts).render_as_string(hide_password=False)  # (URL.set(password=None) keeps it)


@dataclass
class Plan:
    """What a cv run does; saved as ``plan.json`` so ``--resume`` repeats it exactly.

    ``trials``: how many trials this process runs (Optuna's ``n_trials``); ``storage`` None: the
    study lives in ``study.db`` inside the cv directory."""

    base: Config
    folds: int
    grid: dict[str, list[Any]] = field(default_factory=dict)
    space: dict[str, Dist] = field(default_factory=dict)
    trials: int = 1
    sampler: str = "grid"
    pruner: str = "none"
    storage: str | None = None
    study: str = "nntrain-cv"

    def to_json(self) -> dict[str, Any]:
        return {
            "folds": self.folds,
            "grid": self.grid,
            "sample": {k: vars(d) for k, d in self.space.items()},
            "trials": self.trials,
            "sampler": self.sampler,
            "pruner": self.pruner,
            "storage": without_password(self.storage),  # a file in the cv directory: no secret in it
            "study": self.study,
            "config": self.base.model_dump(mode="json"),
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Plan:
        return cls(
            Config.model_validate(d["config"]),
            d["folds"],
            d["grid"],
            {k: Dist(**v) for k, v in d["sample"].items()},
            d["trials"],
            d["sampler"],
            d["pruner"],
            d["storage"],
            d["study"],
        )

    def first_fold_epochs(self) -> int:
        """E: the most epochs a trial of this search trains (``train.epochs``, its largest value when the
        search varies it); fold 0's epochs are the pruner's steps 0..E-1 (``pruning``)."""
        key = "train.epochs"
        if key in self.grid:
            return max(int(v) for v in self.grid[key])
        if key in self.space:
            return int(self.space[key].high)
        return self.base.train.epochs

    def fingerprint(self) -> dict[str, Any]:
        """What every process sharing a study must agree on: folds, search space, the base config
        (less where it writes, which device, and where this machine keeps the data)."""
        cfg = self.base.model_dump(mode="json")
        cfg.pop("output", None)
        cfg.pop("device", None)
        cfg.get("data", {}).pop("root", None)
        return {
            "folds": self.folds,
            "grid": self.grid,
            "sample": {k: vars(d) for k, d in self.space.items()},
            "config": cfg,
        }
