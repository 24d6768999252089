"""``nntrain data``: the data as training will see it."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from nntrain.cli.common import ConfigOpt, SetOpt, guarded, load_cfg


@guarded
def data_cmd(
    config: Optional[Path] = ConfigOpt,
    set_: Optional[List[str]] = SetOpt,
    grid: Path = typer.Option(
        Path("data-grid.png"), "--grid", help="Where to write the grid of training images (PNG)."
    ),
    images: int = typer.Option(16, "--images", min=1, max=64, help="How many training images the grid shows."),
    json_out: bool = typer.Option(False, "--json", help="Print the report as JSON (machine-readable)."),
) -> None:
    """Inspect the data as training will see it: class counts per split, image shape, value range
    after normalization, duplicates across splits, and a grid of normalized, augmented train images."""
    cfg = load_cfg(config, set_)
    from nntrain.cli.render import note, plain, warn
    from nntrain.data.report import describe, image_grid, network_view, report_lines
    from nntrain.errors import NntrainError
    from nntrain.pipeline.setup import setup

    if grid.suffix.lower() != ".png" or not grid.parent.is_dir():
        raise NntrainError(f"--grid {grid}: must be a .png file in an existing folder")
    s = setup(cfg)
    for line in s.dataset.notes:
        note(line)
    report = describe(s)
    x, y = network_view(s, min(images, len(s.data.train)))
    fig = image_grid(x, y, s.data.classes, title=f"{cfg.data.dataset}: train images as the network sees them")
    fig.savefig(grid, dpi=100)
    report["grid"] = str(grid)
    if json_out:
        from nntrain.runs.files import json_text

        plain(json_text(report).rstrip())
        return
    for line in report_lines(report):
        plain(line)
    augmented = ", augmented" if cfg.data.augment.crop_padding or cfg.data.augment.hflip else ""
    plain(f"\ngrid of {len(x)} train images (normalized{augmented}) written to {grid}")
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
