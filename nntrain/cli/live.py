"""The live epoch table of ``nntrain train`` (and of ``cv --refit``), no taller than the terminal."""

from __future__ import annotations

import math
import time
from typing import Any

from rich import box
from rich.console import Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from nntrain.cli import render


class EpochReporter:
    """Training callback: a live table on a terminal, one plain line per epoch otherwise.

    The live region never grows taller than the terminal: it holds the last epochs, the
    best epoch (once it has scrolled out) and the progress inside the running epoch
    (steps done / total, ETA). Older rows are printed once above it, so the scrollback
    holds each row once. ``auto_refresh=False`` (tests) redraws only at epoch ends.
    """

    COLUMNS = (("epoch", 7), ("loss", 9), ("train acc", 9), ("val acc", 9), ("val loss", 9), ("lr", 9), ("time", 8))

    def __init__(self, title: str = "training", *, live: bool | None = None, auto_refresh: bool = True):
        self.title = title
        self.live = render.is_tty() if live is None else live
        self.auto_refresh = auto_refresh
        self.records: list[dict[str, Any]] = []
        self.printed = 0  # records already printed above the live region
        self.epochs = 0
        self._step: tuple[int, int] = (0, 0)
        self._t_epoch = self._t_fit = time.perf_counter()
        self._live: Live | None = None

    def on_fit_start(self, info: dict[str, Any]) -> None:
        self.epochs = info["epochs"]
        self._t_epoch = self._t_fit = time.perf_counter()
        if self.live:
            self._live = Live(
                console=render.console,
                auto_refresh=self.auto_refresh,
                refresh_per_second=4,
                vertical_overflow="crop",
                get_renderable=self._renderable,
            )
            self._live.start(refresh=True)
        else:
            render.plain(f"{self.title}: {info['epochs']} epochs on {info['device']}, {info['n_train']} train samples")

    def on_step(self, step: int, n_steps: int) -> None:
        """Progress inside an epoch (Python ints from the engine: no device sync)."""
        self._step = (step, n_steps)

    def on_epoch_end(self, record: dict[str, Any]) -> None:
        self.records.append(dict(record))
        self._step = (0, self._step[1])
        self._t_epoch = time.perf_counter()
        if self._live is not None:
            keep = self._window()
            if len(self.records) - self.printed > keep:
                self.flush(len(self.records) - keep)
            self._live.refresh()
        else:
            render.plain(render.epoch_line(record, self.epochs))

    def flush(self, upto: int | None = None) -> None:
        """Print the finished rows up to ``upto`` (default: all) once above the live region."""
        upto = len(self.records) if upto is None else upto
        if self._live is None or upto <= self.printed:
            return
        render.console.print(self._table(self.records[self.printed : upto], header=self.printed == 0, best_row=False))
        self.printed = upto

    def on_fit_end(self, history: Any) -> None:
        self.close()

    def close(self) -> None:
        if self._live is not None:
            self._step = (0, 0)
            self._live.stop()
            self._live = None

    def _window(self) -> int:
        """How many epoch rows the live region shows: the terminal's height less title,
        header, rule, best row and progress line (at least 1)."""
        return max(1, render.console.size.height - 6)

    def _renderable(self) -> Any:
        parts: list[Any] = [self._table()]
        line = self._progress()
        if line:
            parts.append(Text(line, style="dim"))
        return Group(*parts)

    def _progress(self) -> str:
        step, n = self._step
        done = len(self.records)
        if self._live is None or done >= self.epochs or n == 0:
            return ""
        now = time.perf_counter()
        text = f"epoch {done + 1}/{self.epochs}  step {step}/{n}"
        if step:
            eta = (now - self._t_epoch) / step * (n - step)
            text += f"  epoch ETA {_clock(eta)}"
        if done:
            per_epoch = (self._t_epoch - self._t_fit) / done
            text += f"  run ETA {_clock(per_epoch * (self.epochs - done) - (now - self._t_epoch))}"
        return text

    def _table(self, records: list[dict[str, Any]] | None = None, *, header: bool | None = None, best_row=True):
        """The live table (the rows not printed yet) or, with ``records``, rows to print above it."""
        live_part = records is None
        records = self.records[self.printed :] if live_part else records
        header = self.printed == 0 if header is None else header
        t = Table(
            title=self.title if header else None,
            title_justify="left",
            show_header=header,
            box=box.SIMPLE_HEAD,
            show_edge=False,
        )
        for col, width in self.COLUMNS:
            t.add_column(col, justify="right", width=width, no_wrap=True)
        if not self.records:
            return t
        best_val = max((r["val_acc"] for r in self.records if not math.isnan(r["val_acc"])), default=math.nan)
        best_loss = min((r["train_loss"] for r in self.records if math.isfinite(r["train_loss"])), default=math.nan)
        best_train = max(r["train_acc"] for r in self.records)

        def mark(text: str, hit: bool) -> str:
            return f"[bold green]{text}[/]" if hit else text

        def row(r: dict[str, Any], label: str) -> list[str]:
            return [
                label,
                mark(f"{r['train_loss']:.4f}", r["train_loss"] == best_loss),
                mark(render.fmt_acc(r["train_acc"]), r["train_acc"] == best_train),
                mark(render.fmt_acc(r["val_acc"]), r["val_acc"] == best_val),
                f"{r['val_loss']:.4f}",
                f"{r['lr']:.2e}",
                f"{r['seconds']:.2f}s",
            ]

        for r in records:
            t.add_row(*row(r, f"{r['epoch']}/{self.epochs}"))
        best = [r for r in self.records[: self.printed] if r.get("best")]
        if live_part and best_row and best and not any(r.get("best") for r in records):
            t.add_row(*row(best[-1], f"best {best[-1]['epoch']}"), style="dim")
        return t


def _clock(seconds: float) -> str:
    s = max(0, int(round(seconds)))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"
