"""``nntrain export``: a run's model as ONNX, a torch.export program or safetensors, parity-checked."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from nntrain.cli.common import ForceOpt, guarded
from nntrain.cli.startup import collector_paused


@guarded
@collector_paused()  # export is all start-up (imports of torch.export/onnxscript, data, tracing): no GC walks
def export_cmd(
    source: Path = typer.Argument(..., help="A run directory (its best.pt) or a .pt checkpoint."),
    fmt: Optional[str] = typer.Option(
        None,
        "--format",
        "-f",
        help="onnx, pt2 (torch.export) or safetensors (+ .json); default: --out's extension, else onnx.",
    ),
    out: Optional[Path] = typer.Option(
        None, "--out", "-o", help="Output file, ending in the format's extension (default: ./<run name>.<format>)."
    ),
    force: bool = ForceOpt,
) -> None:
    """Export the model with its classes and normalization; kept only if it matches the checkpoint
    on the run's test split (max |Δprobability| ≤ 1e-5, 100 % top-1 agreement), else exit 1."""
    from nntrain.cli import render
    from nntrain.deploy.export import export

    res = export(source, fmt, out, force=force)
    render.plain(res.parity.line())
    for f in res.files:
        render.plain(f"wrote {f}")
    render.plain(f"{res.fmt} export and parity check took {res.seconds:.1f}s")
