"""``nntrain eval``: a finished run's best model on its test or val split."""

from __future__ import annotations

from pathlib import Path

import typer

from nntrain.cli.common import guarded


@guarded
def eval_cmd(
    run_dir: Path = typer.Argument(..., help="A run directory written by nntrain train."),
    split: str = typer.Option("test", "--split", help="Which split to evaluate: test or val."),
    json_out: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Recompute a run's confusion matrix and per-class accuracy (best.pt) on its test or val split."""
    from nntrain.errors import ConfigError

    if split not in ("test", "val"):
        raise ConfigError(f"--split {split!r}: allowed: test, val")
    from nntrain.cli.render import per_class_table, plain
    from nntrain.pipeline.reopen import eval_run
    from nntrain.plots import confusion_figure, save

    result = eval_run(run_dir, split=split)
    target = run_dir / ("confusion.png" if split == "test" else f"confusion-{split}.png")
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
                    "figure": str(target),
                }
            ).rstrip()
        )
        return
    per_class_table(result.per_class(), f"per-class {split} accuracy")
    plain(f"{split} accuracy {result.accuracy:.4f} (n={result.n})")
    plain(f"wrote {target}")
