"""``nntrain predict``: label new images (or an .npz) with a run's model or an exported .onnx."""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path
from typing import Any, List, Optional

import typer

from nntrain.cli.common import ForceOpt, guarded

SHOWN = 20  # rows in the terminal table; --out or a pipe gets them all

OUT_FORMATS = (".csv", ".json", ".jsonl")


def _csv(columns: list[str], rows: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue()


def serialize(columns: list[str], rows: list[dict[str, Any]], summary: dict[str, Any], suffix: str) -> str:
    if suffix == ".csv":
        return _csv(columns, rows)
    if suffix == ".jsonl":
        return "".join(json.dumps(r) + "\n" for r in rows)
    return json.dumps({"columns": columns, "rows": rows, "summary": summary}, indent=2) + "\n"


def summary_lines(s: dict[str, Any]) -> list[str]:
    lines = [f"{s['predicted']} of {s['inputs']} inputs predicted, {s['failed']} failed"]
    if "accuracy" in s:
        lines.append(f"accuracy {s['accuracy']:.4f} on {s['labelled']} labelled inputs (label = class folder name)")
    return lines


@guarded
def predict_cmd(
    source: Path = typer.Argument(..., help="A run directory (its best.pt), a .pt checkpoint or an exported .onnx."),
    inputs: List[str] = typer.Argument(
        ..., help="Image files, folders (recursive), glob patterns, an .npz with x, or - for paths on stdin."
    ),
    top_k: int = typer.Option(3, "--top-k", min=1, help="Classes per row (capped at the class count)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Write all rows to FILE: .csv, .json or .jsonl."),
    batch_size: int = typer.Option(256, "--batch-size", min=1, help="Images per forward pass."),
    json_out: bool = typer.Option(False, "--json", help="Print rows and summary as JSON on stdout."),
    device: str = typer.Option(
        "cpu", "--device", help="cpu (default: the numbers eval reports), cuda[:N], or auto (CUDA when available)."
    ),
    force: bool = ForceOpt,
) -> None:
    """Predict classes for new inputs, preprocessed exactly as in training. Exit 2 if any input failed."""
    from nntrain.errors import NntrainError

    if out is not None:
        from nntrain.cli.common import out_path

        out_path(out, suffixes=tuple(OUT_FORMATS), force=force)
        if not os.access(out.parent, os.W_OK):
            raise NntrainError(f"--out {out}: the directory '{out.parent}' is not writable; choose another path")
    from nntrain.cli import render
    from nntrain.deploy.predict import predict

    res = predict(source, inputs, top_k=top_k, batch_size=batch_size, device=device)
    s = res.summary
    for line in res.notes:
        render.note(line)
    if json_out:
        render.plain(serialize(res.columns, res.rows, s, ".json").rstrip("\n"))
    elif out is not None:
        from nntrain.runs.files import atomic_write_text

        try:
            atomic_write_text(out, serialize(res.columns, res.rows, s, out.suffix.lower()))
        except OSError as e:
            raise NntrainError(f"--out {out}: cannot write it ({e.strerror or e}); choose another path") from None
        for line in summary_lines(s):
            render.plain(line)
        if "per_class" in s:
            render.per_class_table(s["per_class"], "per-class accuracy")
        render.plain(f"wrote {len(res.rows)} rows to {out}")
    elif render.is_tty():
        head = res.rows[:SHOWN]
        folder, header, cells = terminal_rows(head, res.columns, render.console.width)
        if folder:
            render.plain(f"paths under {folder}{os.sep}")
        render.predictions_table(
            f"predictions ({len(head)} of {len(res.rows)} shown; --out FILE for all)", header, cells
        )
        if "per_class" in s:
            render.per_class_table(s["per_class"], "per-class accuracy")
        for line in summary_lines(s):
            render.plain(line)
    else:  # piped: CSV on stdout, the summary on stderr
        render.plain(_csv(res.columns, res.rows).rstrip("\n"))
        for line in summary_lines(s):
            render.note(line)
    if s["failed"]:
        first = next(r for r in res.rows if r["error"])
        raise NntrainError(failed_line(s, first["error"]))


def failed_line(s: dict[str, Any], first: str) -> str:
    """The exit-2 line when some inputs failed, in words that fit the counts."""
    if s["inputs"] == 1:
        return f"the input could not be predicted: {first}"
    if s["predicted"] == 0:
        return f"none of the {s['inputs']} inputs could be predicted; first: {first}"
    done = "1 was" if s["predicted"] == 1 else f"the other {s['predicted']} were"
    return f"{s['failed']} of {s['inputs']} inputs could not be predicted ({done}); first: {first}"


def shorten(text: str, width: int) -> str:
    """``text`` in at most ``width`` characters, cut in the middle (the file name at the end stays whole)."""
    if len(text) <= width:
        return text
    tail = min(len(text), max(width * 2 // 3, width - 12))
    return text[: max(width - tail - 1, 0)] + "…" + text[len(text) - tail :]


def terminal_rows(rows: list[dict[str, Any]], columns: list[str], width: int) -> tuple[str, list[str], list[list[str]]]:
    """The terminal table: paths relative to their common folder (named in the title) and given the width the
    other columns leave (cut in the middle if still too long); empty label/error columns left out; the
    runners-up in one column. → (common folder or "", header, cells)."""
    paths = [str(r["path"]) for r in rows]
    try:
        folder = os.path.commonpath([os.path.dirname(p) for p in paths]) if paths else ""
    except ValueError:  # absolute and relative paths mixed
        folder = ""
    shown = [p[len(folder) + 1 :] if folder and p.startswith(folder + os.sep) else p for p in paths]
    if not all(shown):
        folder, shown = "", paths
    header = ["path", "predicted", "probability"]
    cells = [[r["predicted"], _cell(r["probability"])] for r in rows]
    for name in ("label", "error"):
        if any(r[name] for r in rows):
            header.append(name)
            cells = [c + [str(r[name])] for c, r in zip(cells, rows)]
    ranks = [c for c in columns if c.startswith("top") and not c.endswith("_probability")]
    if ranks:
        header.append("next guesses")
        nxt = [", ".join(f"{r[k]} {r[k + '_probability']:.4f}" for k in ranks if r[k] != "") for r in rows]
        cells = [c + [n] for c, n in zip(cells, nxt)]
    others = sum(max(len(h), *(len(c[i]) for c in cells)) + 3 for i, h in enumerate(header[1:])) if rows else 0
    room = max(width - others - 4, 24)  # 4: the path column's borders and padding
    return folder, header, [[shorten(p, room), *c] for p, c in zip(shown, cells)]


def _cell(v: Any) -> str:
    return f"{v:.4f}" if isinstance(v, float) else str(v)
