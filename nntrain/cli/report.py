"""``nntrain report``: (re)build the one-page HTML report of a run or cv directory."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from nntrain.cli.common import ForceOpt, guarded


@guarded
def report_cmd(
    directory: Path = typer.Argument(
        ..., help="A run directory (runs/<name>-<time>) or a cv directory (runs/cv-<time>)."
    ),
    out: Optional[Path] = typer.Option(
        None,
        "--out",
        "-o",
        help="HTML file to write (default: report.html in the directory, rebuilt; needed if it is read-only).",
    ),
    force: bool = ForceOpt,
) -> None:
    """Write one self-contained HTML page of a run or a cv (pictures inline, no script, nothing fetched)."""
    from nntrain.cli.render import plain
    from nntrain.errors import NntrainError
    from nntrain.report import build_report
    from nntrain.report.table import is_sweep
    from nntrain.runs.files import refuse_overwrite

    if directory.is_dir() and is_sweep(directory):  # refused before anything is written
        raise NntrainError(
            f"'{directory}' is an lr-sweep folder (nntrain lr-sweep), not a training run: it has no report; "
            f"its figure is {directory / 'lr-sweep.png'} and its results {directory / 'lr-sweep.json'}"
        )

    if out is not None:
        refuse_overwrite(out, "--out", force)  # the directory's own report.html is rebuilt; a named file is kept

    target = build_report(directory, out=out)
    plain(f"wrote {target} ({target.stat().st_size / 1024:.0f} KiB)")
