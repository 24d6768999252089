"""``nntrain runs``: a table of every run under a directory, or runs compared side by side."""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer

from nntrain.cli.common import guarded


@guarded
def runs_cmd(
    paths: Optional[List[Path]] = typer.Argument(
        None, help="The runs directory (default: runs); with --compare, the run directories to compare."
    ),
    sort: str = typer.Option(
        "date",
        "--sort",
        help="Column to sort by: date, name, test_acc, best_val, time, epochs, status, dataset, model.",
    ),
    compare: bool = typer.Option(
        False, "--compare", help="Compare the run directories given: config keys that differ, metrics side by side."
    ),
    json_out: bool = typer.Option(False, "--json", help="Print JSON (machine-readable)."),
) -> None:
    """One row per run (name, date, dataset, model, epochs, best val, test acc, time, status); or, with
    --compare RUN RUN..., the config keys that differ and the metrics side by side."""
    from nntrain.cli.render import plain, rows_table
    from nntrain.errors import NntrainError
    from nntrain.report.html import num, pct
    from nntrain.report.table import compare as compare_runs
    from nntrain.report.table import table

    if compare:
        c = compare_runs(list(paths or []))
        if json_out:
            plain(json.dumps(c, indent=2, default=str))
            return
        fmt = {"best_val": pct, "test_acc": pct, "time": lambda v: num(v, 3), "test_loss": num}
        rows = [[k, *(str(v) for v in vals)] for k, vals in c["config"].items()]
        rows_table(
            "config keys that differ", ["key", *c["runs"]], rows or [["(none: same config)", *[""] * len(c["runs"])]]
        )
        rows = [
            [k, *(fmt.get(k, lambda v: "–" if v is None else str(v))(v) for v in vals)]
            for k, vals in c["metrics"].items()
        ]
        rows_table("metrics", ["metric", *c["runs"]], rows)
        plain(f"curves on the same axes: nntrain plot-curves {' '.join(c['paths'])} --out compare.png")
        return
    if paths and len(paths) > 1:
        raise NntrainError(f"nntrain runs takes one directory, got {len(paths)}; to compare runs add --compare")
    directory = paths[0] if paths else Path("runs")
    rows = table(directory, sort=sort)
    if json_out:
        plain(json.dumps(rows, indent=2, default=str))
        return
    if not rows:
        plain(f"no runs under {directory}")
        return
    cols = ["name", "date", "dataset", "model", "epochs", "best val", "test acc", "time (s)", "status"]
    body = [
        [r["name"], r["date"], r["dataset"] or "–", r["model"] or "–", str(r["epochs"]), pct(r["best_val"]),
         pct(r["test_acc"]), num(r["time"], 3), r["status"]]
        for r in rows
    ]  # fmt: skip
    rows_table(f"{len(rows)} runs under {directory} (sorted by {sort})", cols, body)
