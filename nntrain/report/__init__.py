"""One self-contained HTML page per run or cv directory, and the table of all runs.

``build_report(path)`` reads only the files a run or cv directory holds (config.yaml,
summary.json, metrics.csv, plan.json, the PNGs already drawn, best.pt/init.pt) and writes
``report.html`` (Jinja2, autoescaped; every picture inline as a data: URI, no script, no
network). ``runs.table``/``runs.compare`` list and compare run directories.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from nntrain.errors import NntrainError


def writable(d: Path) -> bool:
    return os.access(d, os.W_OK)


def build_report(path: str | Path, *, out: str | Path | None = None, setup: Any = None, test: Any = None) -> Path:
    """Write the report of a run or cv directory to ``out`` (default ``<dir>/report.html``); returns the path.

    ``setup``: the run's ``pipeline.Setup`` when the caller has it (``nntrain train``), else it is
    rebuilt from the run's config.yaml (same config and seed → same splits). ``test``: the best model's
    test outputs (``History.test``) when the caller has them, else the run's checkpoint is tested again."""
    from nntrain.report.html import write_html

    d = Path(path)
    if not d.is_dir():
        raise NntrainError(f"'{d}' is not a directory; pass a run or cv directory (runs/<name>-<time>, runs/cv-<time>)")
    if out is None:
        if not writable(d):
            raise NntrainError(
                f"'{d}' is read-only: its report cannot be written beside it; pass --out FILE (e.g. --out report.html)"
            )
        target = d / "report.html"
    else:
        target = Path(out)
        if not target.parent.is_dir():
            raise NntrainError(f"--out {target}: the directory '{target.parent}' does not exist; create it first")
    if (d / "plan.json").is_file():
        from nntrain.report.cv import cv_context

        return write_html("cv.html.j2", cv_context(d), target)
    if not (d / "config.yaml").is_file():
        raise NntrainError(
            f"'{d}' is neither a run directory (no config.yaml) nor a cv directory (no plan.json); "
            "pass a directory written by nntrain train or nntrain cv"
        )
    from nntrain.report.run import run_context

    return write_html("run.html.j2", run_context(d, setup=setup, test=test), target)
