"""``nntrain runs``: one row per run directory, and two or more runs compared side by side."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from nntrain.errors import NntrainError
from nntrain.report.run import read_summary, status

SORT_KEYS = ("date", "name", "test_acc", "best_val", "time", "epochs", "status", "dataset", "model")
_DESCENDING = {"date", "test_acc", "best_val", "epochs"}  # newest / best / longest first


SWEEP_FILES = ("lr-sweep.png", "lr-sweep.json")  # what `nntrain lr-sweep` writes beside its config.yaml


def is_sweep(d: Path) -> bool:
    """An lr-sweep folder (``<run_name>-lr-sweep-<time>``): no epochs, no summary.json, so not a run;
    by its files, or by its name while it has no metrics.csv (the figure not yet written)."""
    if any((d / f).is_file() for f in SWEEP_FILES):
        return True
    return "-lr-sweep-" in d.name and not (d / "metrics.csv").exists()


def run_row(d: Path) -> dict[str, Any]:
    from nntrain.config import read_yaml

    damaged = False  # a config.yaml or summary.json that cannot be read: the run is listed as damaged
    try:
        raw = read_yaml(d / "config.yaml")
    except NntrainError:
        raw, damaged = {}, True
    try:
        summary = read_summary(d)
    except NntrainError:
        summary, damaged = None, True
    s = summary or {}
    return {
        "name": d.name,
        "date": s.get("started") or _stamp(d),
        "dataset": (raw.get("data") or {}).get("dataset"),
        "model": (raw.get("model") or {}).get("name"),
        "epochs": s.get("epochs_run", _epochs_done(d)),
        "best_val": s.get("best_val_acc"),
        "test_acc": s.get("test_acc"),
        "time": s.get("train_seconds"),
        "status": "damaged" if damaged else status(d, summary),
        "path": str(d),
    }


def _stamp(d: Path) -> str:
    import time

    return time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(d.stat().st_mtime))


def _epochs_done(d: Path) -> int:
    try:
        return max(0, len((d / "metrics.csv").read_text().splitlines()) - 1)
    except OSError:
        return 0


def table(root: str | Path, sort: str = "date") -> list[dict[str, Any]]:
    """Every run directory directly under ``root`` (cv directories, lr-sweep folders and sanity/ are not runs)."""
    root = Path(root)
    if sort not in SORT_KEYS:
        raise NntrainError(f"--sort {sort}: unknown column; choose one of {', '.join(SORT_KEYS)}")
    if not root.is_dir():
        raise NntrainError(f"'{root}' is not a directory; pass the runs directory (output.runs_dir, default runs)")
    rows = [
        run_row(d)
        for d in sorted(root.iterdir())
        if d.is_dir() and (d / "config.yaml").is_file() and not (d / "plan.json").exists() and not is_sweep(d)
    ]
    present = [r for r in rows if r[sort] is not None]
    present.sort(key=lambda r: r[sort], reverse=sort in _DESCENDING)
    return present + [r for r in rows if r[sort] is None]  # runs without the value last


def _flat(raw: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in raw.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


COMPARED = ("status", "epochs", "best_val", "best_epoch", "test_acc", "test_loss", "time", "stopped", "device")


def compare(runs: list[str | Path]) -> dict[str, Any]:
    """The config keys whose values differ between ``runs`` and their metrics side by side."""
    from nntrain.config import read_yaml

    dirs = [Path(r) for r in runs]
    for d in dirs:
        if not (d / "config.yaml").is_file():
            raise NntrainError(f"--compare: '{d}' is not a run directory (no config.yaml); pass runs/<name>-<time>")
    if len(dirs) < 2:
        raise NntrainError("--compare needs at least two run directories")
    configs = [_flat(read_yaml(d / "config.yaml")) for d in dirs]
    keys = sorted(set().union(*configs))
    differ = {k: [c.get(k) for c in configs] for k in keys if len({repr(c.get(k)) for c in configs}) > 1}
    metrics: dict[str, list[Any]] = {k: [] for k in COMPARED}
    for d in dirs:
        s, row = read_summary(d) or {}, run_row(d)
        extra = {"best_epoch": s.get("best_epoch"), "test_loss": s.get("test_loss"), "stopped": s.get("stopped")}
        extra["device"] = s.get("device")
        for k in COMPARED:
            metrics[k].append(row.get(k, extra.get(k)) if k in row else extra[k])
    return {"runs": [d.name for d in dirs], "paths": [str(d) for d in dirs], "config": differ, "metrics": metrics}
