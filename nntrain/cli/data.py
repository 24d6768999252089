"""``nntrain data``: the data as training will see it."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from nntrain.cli.common import ConfigOpt, ForceOpt, SetOpt, guarded, load_cfg, out_path


@guarded
def data_cmd(
    config: Optional[Path] = ConfigOpt,
    set_: Optional[List[str]] = SetOpt,
    grid: Optional[Path] = typer.Option(
        None,
        "--grid",
        help="Write a grid of training images, as the network sees them, to this PNG "
        "(default: none; nothing is written into the current folder unasked).",
    ),
    images: int = typer.Option(16, "--images", min=1, max=64, help="How many training images the grid shows."),
    json_out: bool = typer.Option(False, "--json", help="Print the report as JSON (machine-readable)."),
    force: bool = ForceOpt,
) -> None:
    """Inspect the data as training will see it: class counts per split, image shape, value range
    after normalization, duplicates across splits; with --grid, a grid of normalized, augmented train images."""
    cfg = load_cfg(config, set_)
    from nntrain.cli.render import note, plain, warn
    from nntrain.data.report import describe, image_grid, network_view, report_lines
    from nntrain.pipeline.setup import setup
    from nntrain.plots import save

    if grid is not None:
        out_path(grid, "--grid", force=force)
    s = setup(cfg)
    for line in s.dataset.notes:
        note(line)
    report = describe(s)
    n_grid = 0
    if grid is not None:
        x, y = network_view(s, min(images, len(s.data.train)))
        fig = image_grid(x, y, s.data.classes, title=f"{cfg.data.dataset}: train images as the network sees them")
        save(fig, grid)
        n_grid = len(x)
    report["grid"] = None if grid is None else str(grid)
    if json_out:
        from nntrain.runs.files import json_text

        plain(json_text(report).rstrip())
        return
    for line in report_lines(report):
        plain(line)
    augmented = ", augmented" if cfg.data.augment.crop_padding or cfg.data.augment.hflip else ""
    if grid is not None:
        plain(f"\ngrid of {n_grid} train images (normalized{augmented}) written to {grid}")
    else:
        plain(f"\nto see {images} train images as the network sees them: --grid FILE.png")
    if len(s.data.val) == 0:
        warn(
            "data.val_fraction is 0: train/test only (the lecture's last resort); choose hyperparameters on a val split"
        )
    dups = sum(d["count"] for d in (report["duplicates"] or {}).values())
    if dups:
        warn(
            f"{dups} sample(s) have an exact copy in an earlier split: scores on val/test overstate generalization; "
            "remove the copies"
        )
