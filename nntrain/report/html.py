"""Rendering: the Jinja2 environment (autoescape on) and pictures as data: URIs."""

from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Any

import numpy as np

from nntrain.runs.files import atomic_write_text

_ENV = None


def environment() -> Any:
    global _ENV
    if _ENV is None:
        import jinja2

        _ENV = jinja2.Environment(
            loader=jinja2.PackageLoader("nntrain.report", "templates"),
            autoescape=True,  # every value is escaped: a class or run name cannot inject markup
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        _ENV.filters["pct"] = pct
        _ENV.filters["num"] = num
    return _ENV


def write_html(template: str, context: dict[str, Any], target: Path) -> Path:
    import nntrain

    html = environment().get_template(template).render(**context, generator_version=nntrain.__version__)
    atomic_write_text(target, html)
    return target


def pct(v: Any, digits: int = 2) -> str:
    return "–" if v is None or (isinstance(v, float) and v != v) else f"{100 * float(v):.{digits}f}%"


def num(v: Any, digits: int = 4) -> str:
    if v is None or (isinstance(v, float) and v != v):
        return "–"
    return f"{float(v):.{digits}g}" if isinstance(v, float) else str(v)


def file_uri(path: Path) -> str | None:
    """A PNG already drawn by the run, inline; None when the file is missing."""
    try:
        return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode("ascii")
    except OSError:
        return None


def array_uri(img: np.ndarray, scale: int = 1) -> str:
    """(H, W) or (H, W, 3) uint8 → PNG data URI, each pixel a ``scale``×``scale`` block."""
    from PIL import Image

    if scale > 1:
        img = np.repeat(np.repeat(img, scale, axis=0), scale, axis=1)
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(img)).save(buf, format="PNG", optimize=False, compress_level=6)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def figure_uri(fig: Any) -> str:
    """A matplotlib Figure → PNG data URI (only for pictures the run did not draw already)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def images_uris(x: Any, *, lo: float | None = None, hi: float | None = None, target_px: int = 64) -> list[str]:
    """(B, C, H, W) normalized images → one data URI each, one linear map [lo, hi] → black..white
    (default: the batch's own min and max: the values the network receives)."""
    a = np.asarray(x.detach().cpu().float() if hasattr(x, "detach") else x, dtype=np.float32)
    lo = float(a.min()) if lo is None else lo
    hi = float(a.max()) if hi is None else hi
    u8 = np.round(np.clip((a - lo) / max(hi - lo, 1e-12), 0, 1) * 255).astype(np.uint8)
    scale = max(1, round(target_px / max(a.shape[2:])))
    out = []
    for img in u8:
        out.append(array_uri(img[0] if img.shape[0] == 1 else img[:3].transpose(1, 2, 0), scale))
    return out
