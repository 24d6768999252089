"""What a cv run does (folds, combinations, search space), saved as ``plan.json``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from nntrain.config import Config
from nntrain.cv.space import Dist


@dataclass
class Plan:
    """What a cv run does; saved as ``plan.json`` so ``--resume`` repeats it exactly."""

    base: Config
    folds: int
    combos: list[dict[str, Any]] = field(default_factory=lambda: [{}])
    grid: dict[str, list[Any]] = field(default_factory=dict)
    space: dict[str, Dist] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "folds": self.folds,
            "combos": self.combos,
            "grid": self.grid,
            "sample": {k: vars(d) for k, d in self.space.items()},
            "config": self.base.model_dump(mode="json"),
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Plan:
        return cls(
            Config.model_validate(d["config"]),
            d["folds"],
            d["combos"],
            d["grid"],
            {k: Dist(**v) for k, v in d["sample"].items()},
        )
