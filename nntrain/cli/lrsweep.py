"""``nntrain lr-sweep``: one short run per learning rate, drawn on one figure."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from nntrain.cli.common import ConfigOpt, ForceOpt, SetOpt, guarded, load_cfg, out_path, sigterm_as_ctrl_c


@guarded
def lr_sweep_cmd(
    config: Optional[Path] = ConfigOpt,
    set_: Optional[List[str]] = SetOpt,
    lrs: str = typer.Option("1e-4,1e-3,1e-2,1e-1,1", "--lrs", help="Comma-separated learning rates to try."),
    epochs: int = typer.Option(5, "--epochs", min=1, help="Epochs per learning rate (short runs show the shape)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Also write the figure here."),
    force: bool = ForceOpt,
) -> None:
    """Train a fresh net per learning rate and draw all loss curves on one figure, with a recommendation."""
    from nntrain.pipeline.lrsweep import parse_lrs

    cfg = load_cfg(config, set_)
    values = parse_lrs(lrs)
    target = out_path(out, force=force) if out else None
    from nntrain.cli.render import plain, sweep_table
    from nntrain.config import to_yaml
    from nntrain.pipeline.lrsweep import lr_sweep, recommendation
    from nntrain.pipeline.setup import setup
    from nntrain.plots import lr_sweep_figure, save
    from nntrain.runs.rundir import RunDir
    from nntrain.training.threads import apply_threads

    s = setup(cfg)
    apply_threads(s.threads)  # the thread policy (nntrain.training.threads)

    def progress(r) -> None:
        status = "diverged" if r.diverged else f"final loss {r.final_loss:.4f}"
        plain(f"lr {r.lr:g}: {len(r.curves.records)} epoch(s), {status}")

    with sigterm_as_ctrl_c():  # nothing is written before every rate has run
        runs = lr_sweep(s, values, epochs=epochs, progress=progress)
    run = RunDir.create(cfg.output.runs_dir, f"{cfg.output.run_name}-lr-sweep", config_yaml=to_yaml(cfg))
    fig = lr_sweep_figure([(r.lr, r.curves, r.diverged) for r in runs], [r.verdict for r in runs])
    save(fig, run.path / "lr-sweep.png")
    if target is not None:
        save(fig, target)
    advice = recommendation(runs)
    run.write_json("lr-sweep.json", {"epochs": epochs, "runs": [r.row() for r in runs], "recommendation": advice})
    sweep_table([r.row() for r in runs])
    plain(advice)
    plain(f"wrote {target or run.path / 'lr-sweep.png'} (run directory {run.path})")
    if all(r.diverged for r in runs):
        raise typer.Exit(1)
