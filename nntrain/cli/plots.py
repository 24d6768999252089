"""``nntrain plot-filters`` and ``plot-curves``: pictures of finished runs."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from nntrain.cli.common import default_out, guarded, out_path, run_name


@guarded
def plot_filters(
    source: Path = typer.Argument(..., help="A run directory (uses its best.pt) or a .pt checkpoint."),
    out: Optional[Path] = typer.Option(
        None,
        "--out",
        "-o",
        help="PNG to write (default: <run>-filters.png in the current directory; never inside the run).",
    ),
    compare_init: bool = typer.Option(
        False, "--compare-init", help="Put the filters at initialization (the run's init.pt) beside the trained ones."
    ),
) -> None:
    """Draw the first layer's weights as an image grid: conv filters, or each MLP hidden unit as an image."""
    from nntrain.cli.render import plain
    from nntrain.errors import CheckpointError
    from nntrain.models import first_layer_weights
    from nntrain.pipeline.reopen import load_model, resolve_checkpoint
    from nntrain.plots import filter_tiles, filters_figure, save
    from nntrain.runs.files import load_checkpoint

    def tiles(path: Path):
        ckpt = load_checkpoint(path)
        weights = first_layer_weights(load_model(ckpt, path))
        return ckpt, filter_tiles(weights, ckpt["input_shape"])

    path = resolve_checkpoint(source)
    suffix = "filters-vs-init" if compare_init else "filters"
    target = out_path(out) if out else default_out(f"{run_name(path.parent)}-{suffix}.png")
    ckpt, trained = tiles(path)
    kind = "conv filters" if ckpt["config"]["model"]["name"] == "cnn" else "hidden units"
    panels = [(f"{len(trained)} {kind}, trained (epoch {ckpt.get('epoch', '?')})", trained)]
    if compare_init:
        init = path.parent / "init.pt"
        if not init.is_file():
            raise CheckpointError(
                f"no init.pt beside '{path}': that run did not keep its initial weights; run without --compare-init"
            )
        panels.insert(0, (f"{len(trained)} {kind}, at initialization", tiles(init)[1]))
    save(filters_figure(panels), target)
    plain(f"wrote {target}")


@guarded
def plot_curves(
    runs: List[Path] = typer.Argument(..., help="One or more run directories, drawn on the same axes."),
    out: Optional[Path] = typer.Option(
        None, "--out", "-o", help="PNG to write (default: curves.png in the current directory; never inside a run)."
    ),
) -> None:
    """Learning curves of one or several runs: loss (per step and per epoch), train vs val accuracy, lr."""
    from nntrain.cli.render import plain
    from nntrain.pipeline.artifacts import read_curves
    from nntrain.plots import curves_figure, save

    target = out_path(out) if out else default_out("curves.png")
    curves = [read_curves(r) for r in runs]
    save(curves_figure(curves), target)
    plain(f"wrote {target} ({len(curves)} run(s): {', '.join(c.label for c in curves)})")
