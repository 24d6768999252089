"""``nntrain eval``: a finished run's best model on its test or val split."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from nntrain.cli.common import ForceOpt, guarded, out_path


@guarded
def eval_cmd(
    run_dir: Path = typer.Argument(..., help="A run directory written by nntrain train."),
    split: str = typer.Option("test", "--split", help="Which split to evaluate: test or val."),
    json_out: bool = typer.Option(False, "--json", help="Print the result as JSON."),
    out: Optional[Path] = typer.Option(
        None,
        "--out",
        "-o",
        help="Also draw the confusion matrix into this PNG (default: no picture; the run is only read).",
    ),
    force: bool = ForceOpt,
) -> None:
    """Recompute a run's confusion matrix and per-class accuracy (best.pt) on its test or val split."""
    from nntrain.errors import ConfigError

    if split not in ("test", "val"):
        raise ConfigError(f"--split {split!r}: allowed: test, val")
    from nntrain.cli.render import per_class_table, plain
    from nntrain.pipeline.reopen import eval_run
    from nntrain.plots import confusion_figure, save

    target = out_path(out, force=force) if out is not None else None
    result = eval_run(run_dir, split=split)
    if target is not None:
        save(confusion_figure(result.confusion, result.classes, title=f"{split} confusion"), target)
    if json_out:
        from nntrain.runs.files import json_text

        plain(
            json_text(
                {
                    "split": split,
                    "n": result.n,
                    "accuracy": result.accuracy,
                    "per_class": result.per_class(),
                    "confusion": result.confusion.tolist(),
                    "figure": str(target) if target is not None else None,
                }
            ).rstrip()
        )
        return
    per_class_table(result.per_class(), f"per-class {split} accuracy")
    plain(f"{split} accuracy {result.accuracy:.4f} (n={result.n})")
    if target is not None:
        plain(f"wrote {target}")
