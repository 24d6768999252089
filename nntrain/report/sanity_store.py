"""Sanity results kept for the report: ``nntrain sanity`` saves them to
``<runs_dir>/sanity/<config-hash>.json``; a run's report looks them up by its config's hash.

The hash covers what decides the checks' outcome (data, model, train, sanity, seed, device):
the ``output`` and ``diagnostics`` sections (where files go, what advice is printed) are left out,
so a run with another run name or runs_dir still finds the sanity results of its config.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

from nntrain.config import Config
from nntrain.errors import NntrainError
from nntrain.runs.files import atomic_write_text


def config_hash(cfg: Config) -> str:
    raw = cfg.model_dump(mode="json", exclude={"output", "diagnostics"})
    return hashlib.sha256(json.dumps(raw, sort_keys=True).encode()).hexdigest()[:16]


def sanity_path(runs_dir: str | Path, cfg: Config) -> Path:
    return Path(runs_dir) / "sanity" / f"{config_hash(cfg)}.json"


def save_sanity(cfg: Config, checks: list[dict[str, Any]]) -> Path:
    """Write the checks (``CheckResult.to_dict()``) of ``cfg`` under its runs_dir; returns the file."""
    path = sanity_path(cfg.output.runs_dir, cfg)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise NntrainError(f"cannot save the sanity results under '{path.parent}': {e.strerror or e}") from None
    doc = {
        "config_hash": config_hash(cfg),
        "date": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "passed": all(c.get("passed") for c in checks),
        "checks": checks,
    }
    atomic_write_text(path, json.dumps(doc, indent=2, default=str) + "\n")
    return path


def find_sanity(run_dir: Path, cfg: Config) -> dict[str, Any] | None:
    """The saved sanity results of a run's config: beside the run (its parent is the runs_dir), else
    under the config's own runs_dir. None when ``nntrain sanity`` was not run for this config."""
    for root in (run_dir.parent, Path(cfg.output.runs_dir)):
        path = sanity_path(root, cfg)
        try:
            return {**json.loads(path.read_text()), "file": str(path)}
        except (OSError, ValueError):
            continue
    return None
