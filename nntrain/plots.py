"""Pictures: first-layer filters, learning curves, the learning-rate study, confusion matrix.

matplotlib's object API only (``matplotlib.figure.Figure``, no pyplot and its global
state): each function returns a Figure and the caller saves it with ``save`` (atomic,
no display needed, so it works in CI). matplotlib is imported by the functions that draw,
not by this module: the filter tiles (numpy) serve the report and TensorBoard without it.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

if TYPE_CHECKING:
    from matplotlib.figure import Figure

# padding between filter tiles: a neutral, barely tinted light gray (saturation 6%) that does not draw the eye,
# yet R != G != B, so it never equals a grayscale tile pixel
BACKGROUND = (200, 196, 188)
DPI = 100


def _margins(fig: Figure, *, left: float, right: float, bottom: float, top: float, wspace: float = 0.0) -> None:
    """Fixed margins in inches: the figures drawn after every run skip matplotlib's layout
    engine, which draws the figure once more to measure it (about 40% of the drawing time)."""
    w, h = fig.get_size_inches()
    fig.subplots_adjust(left=left / w, right=1 - right / w, bottom=bottom / h, top=1 - top / h, wspace=wspace)


def _text_inches(labels: Sequence[str], fontsize: float = 10.0) -> float:
    """Rough width of the longest label (DejaVu Sans averages ~0.6 em per character)."""
    return max((len(s) for s in labels), default=0) * 0.6 * fontsize / 72


def save(fig: Figure, path: str | Path) -> Path:
    """Write ``fig`` as PNG at its own dpi (pixel-exact for ``figimage``), atomically."""
    from nntrain.runs.files import atomic_write_bytes

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=fig.dpi, facecolor=fig.get_facecolor())
    atomic_write_bytes(Path(path), buf.getvalue())
    return Path(path)


# --------------------------------------------------------------------------- filters


def filter_tiles(weights: Any, input_shape: Sequence[int]) -> np.ndarray:
    """First-layer weights → one image tile per filter/unit, each scaled to its own range.

    ``weights``: conv (out, C, kh, kw) or linear (out, C·H·W) — for an MLP each hidden
    unit's weights are reshaped to the input image (C, H, W), as cs231n shows them.
    Returns (n, h, w, 3) in [0, 1] when C == 3 (RGB), else (n, h, w·C) grayscale with the
    C channels side by side. Each tile's min → 0 and max → 1; a constant tile is 0.5.
    """
    w = np.asarray(weights.detach().cpu() if hasattr(weights, "detach") else weights, dtype=np.float64)
    c = int(input_shape[0])
    if w.ndim == 2:  # linear: (out, C·H·W) → (out, C, H, W)
        if w.shape[1] != int(np.prod(input_shape)):
            raise ValueError(f"linear weights {w.shape} do not match the input shape {tuple(input_shape)}")
        w = w.reshape(w.shape[0], *input_shape)
    if w.ndim != 4:
        raise ValueError(f"expected conv (out, C, kh, kw) or linear (out, in) weights, got shape {w.shape}")
    n = w.shape[0]
    flat = w.reshape(n, -1)
    lo, hi = flat.min(1), flat.max(1)
    span = np.where(hi > lo, hi - lo, 1.0)
    scaled = (w - lo[:, None, None, None]) / span[:, None, None, None]
    scaled[hi == lo] = 0.5
    if c == 3:
        return scaled.transpose(0, 2, 3, 1)  # (n, h, w, 3)
    return np.concatenate(list(scaled.transpose(1, 0, 2, 3)), axis=2)  # (n, h, w·C)


def tile_mosaic(tiles: np.ndarray, *, pad: int = 1, cols: int | None = None) -> np.ndarray:
    """Tiles (n, h, w[, 3]) → one grid image, ``pad`` NaN pixels around and between tiles."""
    n, h, w = tiles.shape[:3]
    cols = cols or math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    shape = (rows * (h + pad) + pad, cols * (w + pad) + pad) + tiles.shape[3:]
    grid = np.full(shape, np.nan)
    for i, tile in enumerate(tiles):
        r, c = divmod(i, cols)
        y, x = pad + r * (h + pad), pad + c * (w + pad)
        grid[y : y + h, x : x + w] = tile
    return grid


def tile_scale(tiles: np.ndarray, target_px: int = 48) -> int:
    """Integer enlargement so a tile is about ``target_px`` pixels wide (3x3 conv: 16x)."""
    return int(min(16, max(2, round(target_px / max(tiles.shape[1:3])))))


def mosaic_rgb(grid: np.ndarray, scale: int) -> np.ndarray:
    """NaN-padded grid in [0, 1] → (H·scale, W·scale, 3) uint8, padding in BACKGROUND."""
    rgb = grid if grid.ndim == 3 else np.repeat(grid[..., None], 3, axis=2)
    pad = np.isnan(rgb).any(axis=2)
    img = np.round(np.nan_to_num(rgb) * 255).astype(np.uint8)
    img[pad] = BACKGROUND
    return np.repeat(np.repeat(img, scale, axis=0), scale, axis=1)


def filters_figure(
    panels: Sequence[tuple[str, np.ndarray]], *, scale: int | None = None, layer: str | None = None
) -> Figure:
    """One mosaic per (title, tiles) panel side by side, drawn pixel-exact with ``figimage``
    (no resampling: every filter pixel is a ``scale``×``scale`` block in the PNG). Below them:
    ``layer`` (its name and weight shape) and the note that each tile has its own scale."""
    scale = scale or tile_scale(panels[0][1])
    images = [mosaic_rgb(tile_mosaic(tiles), scale) for _, tiles in panels]
    note = "each tile is scaled separately: its own min = black, max = white"
    note = f"{layer} · {note}" if layer else note
    margin, title_h, note_h = 10, 28, 22
    panels_w = sum(im.shape[1] for im in images) + margin * (len(images) + 1)
    height = max(im.shape[0] for im in images) + title_h + note_h + 2 * margin
    width = max(panels_w, 160 * len(images), int(len(note) * 5.6) + 2 * margin)
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width / DPI, height / DPI), dpi=DPI, facecolor="white")
    fig.text(margin / width, (margin + note_h / 2) / height, note, ha="left", va="center", fontsize=8, gid="note")
    x = margin + (width - panels_w) // 2  # the panels centred above the note
    for (title, _), im in zip(panels, images):
        fig.figimage(im, xo=x, yo=height - margin - title_h - im.shape[0], origin="upper")
        fig.text(
            (x + im.shape[1] / 2) / width,
            (height - margin - title_h / 2) / height,
            title,
            ha="center",
            va="center",
            fontsize=10,
        )
        x += im.shape[1] + margin
    return fig


# --------------------------------------------------------------------------- learning curves


@dataclass
class Curves:
    """One run's curves: epoch records (metrics.csv rows as floats) and every step's loss."""

    label: str
    records: list[dict[str, float]]
    step_losses: list[float] = field(default_factory=list)
    test_acc: float | None = None  # the best model's test accuracy, for the title

    def column(self, key: str) -> np.ndarray:
        return np.array([_finite(r.get(key, math.nan)) for r in self.records], dtype=float)

    def step_x(self) -> np.ndarray:
        """Step i's position in epochs (step i of epoch e sits in (e-1, e])."""
        n, epochs = len(self.step_losses), max(len(self.records), 1)
        return np.arange(1, n + 1) * (epochs / n) if n else np.array([])


def _finite(v: Any) -> float:
    v = float(v)
    return v if math.isfinite(v) else math.nan  # inf would break axis limits; NaN leaves a gap


def curves_figure(runs: Sequence[Curves]) -> Figure:
    """Loss (per step faint, per epoch bold; val dashed), train vs val accuracy, and lr — per run."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import FormatStrFormatter, MaxNLocator

    fig = Figure(figsize=(15, 4.7), dpi=DPI)
    _margins(fig, left=0.75, right=0.15, bottom=0.55, top=0.65, wspace=0.22)
    ax_loss, ax_acc, ax_lr = fig.subplots(1, 3)
    colors = [f"C{i % 10}" for i in range(len(runs))]
    many = len(runs) > 1
    for run, color in zip(runs, colors):
        name = f"{run.label}: " if many else ""
        epochs = run.column("epoch")
        if run.step_losses:
            ax_loss.plot(
                run.step_x(),
                [_finite(v) for v in run.step_losses],
                color=color,
                alpha=0.25,
                linewidth=0.8,
                gid="step-loss",
                label=f"{name}train (per step)",
            )
        ax_loss.plot(
            epochs,
            run.column("train_loss"),
            color=color,
            marker="o",
            markersize=3,
            gid="train-loss",
            label=f"{name}train" if many else "train (per epoch)",
        )
        ax_loss.plot(epochs, run.column("val_loss"), color=color, linestyle="--", gid="val-loss", label=f"{name}val")
        ax_acc.plot(
            epochs,
            run.column("train_acc"),
            color=color,
            marker="o",
            markersize=3,
            gid="train-acc",
            label=f"{name}train",
        )
        ax_acc.plot(epochs, run.column("val_acc"), color=color, linestyle="--", gid="val-acc", label=f"{name}val")
        ax_lr.plot(epochs, run.column("lr"), color=color, marker="o", markersize=3, gid="lr", label=run.label)
    ax_loss.set(title="loss", xlabel="epoch", ylabel="loss (data + reg)")
    if _spans_decades(ax_loss):
        ax_loss.set_yscale("log")
    ax_acc.set(title="accuracy: train vs val (a big gap = overfitting)", xlabel="epoch", ylabel="accuracy")
    ax_lr.set(title="learning rate", xlabel="epoch", ylabel="lr")
    if _spans_decades(ax_lr):
        ax_lr.set_yscale("log")
    for ax in (ax_loss, ax_acc, ax_lr):
        ax.minorticks_off()  # log axes: decade labels only (minor ticks are most of the drawing time)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers
        if ax.get_yscale() == "linear":
            ax.yaxis.set_major_formatter(FormatStrFormatter("%.3g"))  # lr 0.05, not 0.0500000 or an offset
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(_curves_title(runs), fontsize=11)
    return fig


def _curves_title(runs: Sequence[Curves]) -> str:
    def one(c: Curves) -> str:
        acc = "not tested" if c.test_acc is None or math.isnan(c.test_acc) else f"test accuracy {c.test_acc:.4f}"
        return f"{c.label}: {acc}"

    return "; ".join(one(c) for c in runs)


def _spans_decades(ax: Any) -> bool:
    """A log scale only where it labels at least two powers of ten: positive data spanning them.
    Narrower (an lr varying by less than a decade, a loss from 0.15 to 1.6): linear, with labels."""
    if not _positive(ax):
        return False
    ys = np.concatenate([np.asarray(line.get_ydata(), dtype=float) for line in ax.get_lines()])
    ys = ys[np.isfinite(ys)]
    return math.floor(math.log10(ys.max())) - math.ceil(math.log10(ys.min())) >= 1


def _positive(ax: Any) -> bool:
    ys = np.concatenate([np.asarray(line.get_ydata(), dtype=float) for line in ax.get_lines()] or [np.array([])])
    ys = ys[np.isfinite(ys)]
    return ys.size > 0 and bool((ys > 0).all())


# --------------------------------------------------------------------------- learning-rate study


def lr_sweep_figure(runs: Sequence[tuple[float, Curves, bool]], verdicts: Sequence[str] | None = None) -> Figure:
    """The lecture's picture: one loss curve per learning rate on shared axes, plus val accuracy.

    ``runs``: (lr, curves, diverged); ``verdicts``: each lr's verdict (the terminal's table), shown in
    the legend. The loss axis is clipped at 2x the highest initial loss, so an exploding curve leaves
    through the top; a diverged run ends in an 'x' labelled with its lr, each a little lower than
    the one before, so runs that diverged at the same step stay apart. Epoch axes: integer ticks.
    """
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(12, 4.6), dpi=DPI, layout="constrained")
    ax_loss, ax_acc = fig.subplots(1, 2)
    top = 0.0
    marks = []
    for i, (lr, run, diverged) in enumerate(runs):
        color = f"C{i % 10}"
        verdict = verdicts[i] if verdicts is not None else ""
        label = f"lr={lr:g}" + (f": {verdict}" if verdict else " (diverged)" if diverged else "")
        ys = np.array([_finite(v) for v in run.step_losses]) if run.step_losses else run.column("train_loss")
        xs = run.step_x() if run.step_losses else run.column("epoch")
        if ys.size and math.isfinite(ys[0]):
            top = max(top, ys[0])
        ax_loss.plot(xs, ys, color=color, linewidth=1.2, gid="lr-loss", label=label)
        if diverged:  # an 'x' on the top edge where the curve was last finite
            ok = np.flatnonzero(np.isfinite(ys))
            marks.append((xs[ok[-1]] if ok.size else 0.0, color, lr))
        ax_acc.plot(
            run.column("epoch"),
            run.column("val_acc"),
            color=color,
            marker="o",
            markersize=3,
            gid="lr-val-acc",
            label=label,
        )
    ax_loss.set(title="loss per step, one curve per learning rate", xlabel="epoch", ylabel="train loss")
    if top > 0:
        ax_loss.set_ylim(0, 2 * top)
    low, high = ax_loss.get_ylim()
    for j, (x, color, lr) in enumerate(marks):
        y = high - j * 0.07 * (high - low)  # stacked down from the top edge: one 'x' never hides another
        ax_loss.plot(
            [x], [y], color=color, marker="x", markersize=10, mew=2, gid="diverged-mark", clip_on=False,
            label="_nolegend_",
        )  # fmt: skip
        ax_loss.annotate(
            f"lr={lr:g} diverged", (x, y), xytext=(7, -3), textcoords="offset points", color=color, fontsize=8,
            gid="diverged-label", annotation_clip=False,
        )  # fmt: skip
    ax_acc.set(title="val accuracy", xlabel="epoch", ylabel="accuracy", ylim=(0, 1.02))
    for ax in (ax_loss, ax_acc):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs: 1, 2, 3, never 1.25
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="upper right" if ax is ax_loss else "best")
    return fig


# --------------------------------------------------------------------------- confusion matrix


def confusion_figure(cm: np.ndarray, classes: Sequence[str], *, title: str = "confusion matrix") -> Figure:
    """Rows = true class, columns = predicted; color = row-normalized, text = counts."""
    cm = np.asarray(cm)
    k = len(classes)
    side = min(12.0, 2.5 + 0.45 * k)
    names = [str(c) for c in classes]
    rotate = k > 10
    from matplotlib.figure import Figure

    fig = Figure(figsize=(side + 1.2, side), dpi=DPI)
    label_w = _text_inches(names)
    _margins(fig, left=0.45 + label_w, right=0.75, top=0.4, bottom=0.5 + (label_w if rotate else 0.2))
    ax = fig.subplots()
    rows = cm.sum(axis=1, keepdims=True)
    norm = np.divide(cm, rows, out=np.zeros(cm.shape, dtype=float), where=rows > 0)
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1, interpolation="nearest")
    fig.colorbar(im, ax=ax, fraction=0.046, label="fraction of the true class")
    if k <= 30:
        for i in range(k):
            for j in range(k):
                if cm[i, j]:
                    ax.text(
                        j,
                        i,
                        str(int(cm[i, j])),
                        ha="center",
                        va="center",
                        fontsize=8,
                        color="white" if norm[i, j] > 0.5 else "black",
                    )
    ticks = np.arange(k)
    ax.set_xticks(ticks, names, rotation=90 if rotate else 0)
    ax.set_yticks(ticks, names)
    acc = np.trace(cm) / max(cm.sum(), 1)
    ax.set(xlabel="predicted", ylabel="true", title=f"{title} (accuracy {acc:.4f}, n={int(cm.sum())})")
    return fig
