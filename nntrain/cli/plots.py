"""``nntrain plot-filters`` and ``plot-curves``: pictures of finished runs."""

from __future__ import annotations

from pathlib import Path
from typing import List

import typer

from nntrain.cli.common import ForceOpt, guarded, out_path


@guarded
def plot_filters(
    source: Path = typer.Argument(..., help="A run directory (uses its best.pt) or a .pt checkpoint."),
    out: Path = typer.Option(
        ...,
        "--out",
        "-o",
        help="PNG to write (required: reading a run never writes into it, and nothing lands in the current folder "
        "unasked).",
    ),
    compare_init: bool = typer.Option(
        False, "--compare-init", help="Put the filters at initialization (the run's init.pt) beside the trained ones."
    ),
    force: bool = ForceOpt,
) -> None:
    """Draw the first layer's weights as an image grid: conv filters, or each MLP hidden unit as an image."""
    from nntrain.cli.render import plain
    from nntrain.errors import CheckpointError
    from nntrain.models import first_layer_weights
    from nntrain.pipeline.reopen import load_model, resolve_checkpoint
    from nntrain.plots import filter_tiles, filters_figure, save
    from nntrain.report.predictions import filter_kind, start_title
    from nntrain.runs.files import load_checkpoint

    layer, kind = "", ""

    def tiles(path: Path):
        nonlocal layer, kind
        ckpt = load_checkpoint(path)
        model = load_model(ckpt, path)
        weights = first_layer_weights(model)
        name = next((n for n, p in model.named_parameters() if p is not None and p.dim() >= 2), "first layer")
        layer, kind = f"layer {name.removesuffix('.weight')}, weight {tuple(weights.shape)}", filter_kind(weights)
        return ckpt, filter_tiles(weights, ckpt["input_shape"])

    path = resolve_checkpoint(source)
    target = out_path(out, force=force)
    ckpt, trained = tiles(path)
    panels = [(f"{len(trained)} {kind}, trained (epoch {ckpt.get('epoch', '?')})", trained)]
    if compare_init:
        init = path.parent / "init.pt"
        if not init.is_file():
            raise CheckpointError(
                f"no init.pt beside '{path}': that run did not keep its initial weights; run without --compare-init"
            )
        panels.insert(0, (f"{len(trained)} {kind}, {start_title(ckpt['config'])}", tiles(init)[1]))
    save(filters_figure(panels, layer=layer), target)
    plain(f"wrote {target}")


@guarded
def plot_curves(
    runs: List[Path] = typer.Argument(..., help="One or more run directories, drawn on the same axes."),
    out: Path = typer.Option(
        ...,
        "--out",
        "-o",
        help="PNG to write (required: nothing is written into the current folder or over a run's own curves.png "
        "unasked; each run already holds its curves.png).",
    ),
    force: bool = ForceOpt,
) -> None:
    """Learning curves of one or several runs: loss (per step and per epoch), train vs val accuracy, lr.

    Each run directory already holds its own curves.png; this draws several runs on the same axes into --out."""
    from nntrain.cli.render import plain
    from nntrain.pipeline.reopen import read_curves
    from nntrain.plots import curves_figure, save

    target = out_path(out, force=force)
    curves = [read_curves(r) for r in runs]
    save(curves_figure(curves), target)
    plain(f"wrote {target} ({len(curves)} run(s): {', '.join(c.label for c in curves)})")
