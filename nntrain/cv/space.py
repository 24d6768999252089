"""Hyperparameter search spaces for ``nntrain cv``: ``--grid`` (values) and ``--sample``
(ranges), checked against the config before any training, turned into Optuna distributions
(the sampling itself is Optuna's), and the lecture's "best value on the edge of the range →
widen the search" warning.

A combination is a plain ``{dotted key: value}`` dict, applied with ``config.override``.
"""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import dataclass
from typing import Any

import yaml

from nntrain.config import Config, override, parse_assignment
from nntrain.errors import ConfigError


@dataclass(frozen=True)
class Dist:
    """A ``--sample`` distribution: ``log`` (log-uniform) or ``uniform`` on [low, high]."""

    kind: str
    low: float
    high: float
    integer: bool  # the config field holds an int: an Optuna IntDistribution


def get_dotted(cfg: Config, key: str) -> Any:
    node: Any = cfg
    for part in key.split("."):
        node = getattr(node, part)
    return node


def _checked(cfg: Config, flag: str, item: str, key: str, value: Any) -> Any:
    """The value as the validated config holds it (e.g. '1e-4' → 0.0001); ConfigError otherwise."""
    try:
        v = get_dotted(override(cfg, {key: value}), key)
    except ConfigError as e:
        raise ConfigError(f"{flag} {item}: {e}") from None
    return list(v) if isinstance(v, tuple) else v  # JSON-shaped, so a resumed plan compares equal


def parse_grid(items: list[str], cfg: Config) -> dict[str, list[Any]]:
    """``['train.optimizer.lr=0.01,0.05', ...]`` → ``{'train.optimizer.lr': [0.01, 0.05]}``, each value validated."""
    grid: dict[str, list[Any]] = {}
    for item in items:
        key, _ = parse_assignment(item, flag="--grid")
        text = item.partition("=")[2]
        try:
            values = yaml.safe_load(f"[{text}]")  # "0.01,0.1" → [0.01, 0.1]; "[16],[32]" → [[16], [32]]
        except yaml.YAMLError:
            values = None
        if not isinstance(values, list) or not values or any(v is None for v in values):
            raise ConfigError(f"--grid {item!r}: expected key=v1,v2,... e.g. --grid train.optimizer.lr=0.01,0.05,0.1")
        if key in grid:
            raise ConfigError(f"--grid {item!r}: '{key}' is swept twice; give all its values in one --grid")
        checked = [_checked(cfg, "--grid", item, key, v) for v in values]
        if len({repr(v) for v in checked}) != len(checked):
            raise ConfigError(f"--grid {item!r}: a value is repeated; list each value once")
        grid[key] = checked
    return grid


def parse_sample(items: list[str], cfg: Config) -> dict[str, Dist]:
    """``['train.optimizer.lr=log:1e-4:1e-1']`` → ``{'train.optimizer.lr': Dist('log', 1e-4, 0.1)}``."""
    space: dict[str, Dist] = {}
    example = "e.g. --sample train.optimizer.lr=log:1e-4:1e-1 or --sample model.dropout=uniform:0:0.5"
    for item in items:
        key, _ = parse_assignment(item, flag="--sample")
        parts = item.partition("=")[2].split(":")
        try:
            kind, low, high = parts[0].strip(), float(parts[1]), float(parts[2])
        except (IndexError, ValueError):
            kind, low, high = "", math.nan, math.nan
        if len(parts) != 3 or kind not in ("log", "uniform") or not (math.isfinite(low) and math.isfinite(high)):
            raise ConfigError(f"--sample {item!r}: expected key=log:LOW:HIGH or key=uniform:LOW:HIGH; {example}")
        if not low < high:
            raise ConfigError(f"--sample {item!r}: LOW must be below HIGH (got {low:g} and {high:g})")
        if kind == "log" and low <= 0:
            raise ConfigError(
                f"--sample {item!r}: log-uniform needs LOW > 0 (got {low:g}); use uniform: for ranges from 0"
            )
        if key in space:
            raise ConfigError(f"--sample {item!r}: '{key}' is sampled twice; give one range")
        try:
            current = get_dotted(cfg, key)
        except AttributeError:
            current = None  # unknown key: _checked below names it
        integer = isinstance(current, int) and not isinstance(current, bool)
        dist = Dist(kind, low, high, integer)
        for bound in (low, high):  # both ends must be valid values (type and range)
            _checked(cfg, "--sample", item, key, int(round(bound)) if integer else bound)
        space[key] = dist
    return space


def check_space(cfg: Config, grid: dict[str, list[Any]], space: dict[str, Dist]) -> list[dict[str, Any]]:
    """Combinations that must be valid before any training: the grid's cross product, or the corners
    of the sampled box (keys valid one by one can still clash together, e.g. nesterov + momentum 0)."""
    if grid and space:
        raise ConfigError("--grid and --sample cannot be combined; sweep with one of them (ranges: --sample)")
    if space:
        combos = [
            {k: (int(round(v)) if space[k].integer else v) for k, v in zip(space, vals)}
            for vals in itertools.product(*[(d.low, d.high) for d in space.values()])
        ]
    else:
        keys = list(grid)
        combos = [dict(zip(keys, vals)) for vals in itertools.product(*(grid[k] for k in keys))]
    for c in combos:
        try:
            override(cfg, c)
        except ConfigError as e:
            raise ConfigError(f"combination {c}: {e}") from None
    return combos or [{}]


def _primitive(v: Any) -> bool:
    return v is None or isinstance(v, (bool, int, float, str))


def grid_choices(values: list[Any]) -> list[Any]:
    """Optuna choices hold None/bool/int/float/str: other values (e.g. [16, 32]) travel as JSON text."""
    return list(values) if all(_primitive(v) for v in values) else [json.dumps(v) for v in values]


def distributions(grid: dict[str, list[Any]], space: dict[str, Dist]) -> dict[str, Any]:
    """The search space as Optuna distributions: --grid → categorical, --sample → float/int (log or not)."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    out: dict[str, Any] = {k: CategoricalDistribution(grid_choices(v)) for k, v in grid.items()}
    for k, d in space.items():
        if d.integer:
            out[k] = IntDistribution(int(round(d.low)), int(round(d.high)), log=d.kind == "log")
        else:
            out[k] = FloatDistribution(d.low, d.high, log=d.kind == "log")
    return out


def decode(params: dict[str, Any], grid: dict[str, list[Any]]) -> dict[str, Any]:
    """Optuna's trial params → config values (grid values that travelled as JSON text decoded)."""
    out = {}
    for k, v in params.items():
        if k in grid and grid_choices(grid[k]) != grid[k]:
            v = json.loads(v)
        out[k] = v
    return out


_OFF = {"reg": "no regularization", "dropout": "no dropout", "label_smoothing": "no label smoothing"}


def _off(key: str) -> str:
    """What a value of 0 means for ``key`` ('no regularization' for train.reg), in the warning's words."""
    return _OFF.get(key.rsplit(".", 1)[-1], f"{key}=0 (off)")


def edge_warnings(best: dict[str, Any], grid: dict[str, list[Any]], space: dict[str, Dist]) -> list[str]:
    """Swept numeric keys whose best value sits at the edge of what was tried: extend the search there.
    A best 0 at the lower edge is said too: nothing lies below it, but it means the key was best off."""
    out = []
    for key, values in grid.items():
        nums = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
        if len(nums) < 2 or len(nums) != len(values) or key not in best:
            continue
        v = best[key]
        if v == max(nums):
            out.append(
                f"best {key}={v:g} is the largest value tried, at the upper edge of the range; extend the grid above it"
            )
        elif v == min(nums) and v == 0:  # nothing below 0 to try: say what winning there means
            above = min(n for n in nums if n > 0)
            out.append(
                f"best {key}=0 is the smallest value tried, at the lower edge of the range: {_off(key)} won and there "
                f"is nothing smaller to try; to see whether a little helps, try values between 0 and {above:g}"
            )
        elif v == min(nums):
            out.append(
                f"best {key}={v:g} is the smallest value tried, at the lower edge of the range; extend the grid "
                "below it"
            )
    for key, d in space.items():
        if key not in best:
            continue
        f = (lambda v: math.log(v)) if d.kind == "log" else (lambda v: v)
        pos = (f(best[key]) - f(d.low)) / (f(d.high) - f(d.low))  # 0..1 within the range
        if pos >= 0.9:
            out.append(
                f"best {key}={best[key]:.3g} lies in the top 10% of {d.kind}:{d.low:g}:{d.high:g}, at the upper edge; "
                "extend the range above it"
            )
        elif pos <= 0.1 and d.low == 0:  # uniform from 0: nothing below to sample
            out.append(
                f"best {key}={best[key]:.3g} lies in the bottom 10% of {d.kind}:0:{d.high:g}, at the lower edge: "
                f"little or {_off(key)} won and there is nothing below 0 to try; compare with {key}=0 itself (--grid)"
            )
        elif pos <= 0.1:
            out.append(
                f"best {key}={best[key]:.3g} lies in the bottom 10% of {d.kind}:{d.low:g}:{d.high:g}, at the lower "
                "edge; extend the range below it"
            )
    return out
