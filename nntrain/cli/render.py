"""The one place that writes to the terminal.

On a TTY: rich live tables and panels. Not a TTY (CI, ``| tee log``, tests): plain
one-line-per-epoch text with no escape codes. Library code never prints; it reports
through callbacks such as ``EpochReporter``.
"""

from __future__ import annotations

import math
import sys
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)


def is_tty() -> bool:
    return console.is_terminal


def plain(line: str) -> None:
    """A plain line on stdout: no markup, no wrapping, no escape codes."""
    print(line, flush=True)


def error(message: str) -> None:
    print(f"error: {message}", file=sys.stderr, flush=True)


def warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr, flush=True)


def note(message: str) -> None:
    """Information about the input (on stderr, so --json output stays clean)."""
    print(f"note: {message}", file=sys.stderr, flush=True)


def fmt_acc(v: float) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.4f}"


def epoch_line(r: dict[str, Any], epochs: int) -> str:
    return (
        f"epoch {r['epoch']:>{len(str(epochs))}}/{epochs}  loss {r['train_loss']:.4f}  "
        f"train {fmt_acc(r['train_acc'])}  val {fmt_acc(r['val_acc'])}  "
        f"val_loss {r['val_loss']:.4f}  lr {r['lr']:.2e}  {r['seconds']:.2f}s" + ("  *" if r.get("best") else "")
    )


def train_summary(summary: dict[str, Any], run_dir: str, wall_seconds: float | None = None) -> None:
    """The result panel; ``wall_seconds``: the whole command's wall time (start-up, data, test included)."""
    took = f"{summary['train_seconds']:.1f}s"
    if wall_seconds is not None:
        took += f" training, {wall_seconds:.1f}s in all,"
    lines = [
        f"test accuracy  {fmt_acc(summary['test_acc'])}  (best model: epoch {summary['best_epoch']}, "
        f"val accuracy {fmt_acc(summary['best_val_acc'])})",
        *_balanced_lines(summary),
        f"epochs run     {summary['epochs_run']}  in {took} on {summary['device']}",
        f"run directory  {run_dir}",
    ]
    if summary.get("stopped"):
        lines.append(f"stopped        {summary['stopped']}")
    for a in summary.get("advice") or ():  # the run's advice, repeated where the user looks last
        if summary.get("stopped") and a["message"] in summary["stopped"]:
            continue  # the divergence advice is the 'stopped' line already
        lines.append(f"advice         (epoch {a['epoch']}) {a['message']}")
    if is_tty():
        console.print(Panel("\n".join(lines), title="result", expand=False))
    else:
        for line in lines:
            plain(line)


def _balanced_lines(summary: dict[str, Any]) -> list[str]:
    """Balanced accuracy (mean per-class recall) and the per-class recalls, lowest first (at most 5 shown)."""
    recall = summary.get("test_recall") or {}
    if summary.get("test_balanced_acc") is None or not recall:
        return []
    worst = sorted(((r, c) for c, r in recall.items() if r is not None))
    shown = ", ".join(f"{c} {fmt_acc(r)}" for r, c in worst[:5]) + (" ..." if len(worst) > 5 else "")
    return [
        f"balanced acc   {fmt_acc(summary['test_balanced_acc'])}  (mean per-class recall on test)",
        f"recall         {shown}  (lowest first; all in summary.json)",
    ]


# --------------------------------------------------------------------------- sanity


def overfit_line(r: dict[str, Any]) -> str:
    """The lecture's log line: ``Finished epoch 3 / 200: cost 2.301849, train: 0.600000, lr 1.000000e-03``."""
    return (
        f"Finished epoch {r['epoch']} / {r['epochs']}: cost {r['cost']:.6f}, "
        f"train: {r['train_acc']:.6f}, lr {r['lr']:.6e}"
    )


class SanityReporter:
    """Sanity callback: a live status line on a terminal (the running check, the overfit
    epoch); plain lines otherwise. ``verbose`` prints every overfit epoch in the lecture's format."""

    def __init__(self, *, verbose: bool = False, live: bool | None = None, auto_refresh: bool = True):
        self.verbose = verbose
        self.live = is_tty() if live is None else live
        self.auto_refresh = auto_refresh  # False: redrawn only on each update (no refresh thread: deterministic)
        self._status: Any = None
        self._label = ""

    def _show(self, text: str) -> None:
        """The status line (a spinner and ``text``, rich markup), started on first use."""
        from rich.live import Live
        from rich.spinner import Spinner

        spinner = Spinner("dots", text)
        if self._status is None:
            self._status = Live(spinner, console=console, transient=True, auto_refresh=self.auto_refresh)
            self._status.start(refresh=True)
        else:
            self._status.update(spinner, refresh=True)

    def on_check_start(self, info: dict[str, Any]) -> None:
        self._label = f"[{info['index']}/{info['total']}] {info['title']}"
        if not self.live:
            plain(f"{self._label} ...")
        else:
            self._show(escape(self._label))

    def on_overfit_epoch(self, record: dict[str, Any]) -> None:
        if self.verbose:
            if self._status is not None:
                console.print(overfit_line(record), highlight=False, markup=False)
            else:
                plain(overfit_line(record))
        if self._status is not None:
            self._show(
                f"{escape(self._label)}: epoch {record['epoch']}/{record['epochs']}, train {record['train_acc']:.0%}"
            )

    def on_check_end(self, result: Any) -> None:
        if self._status is not None:
            console.print(f"{'[green]PASS[/]' if result.passed else '[bold red]FAIL[/]'} {escape(self._label)}")

    def close(self) -> None:
        if self._status is not None:
            self._status.stop()
            self._status = None


def sanity_report(results: list[Any]) -> None:
    """One row per check (name, measured, expected, verdict) and, for a failure, the hint."""
    passed = sum(r.passed for r in results)
    verdict = f"{passed}/{len(results)} checks passed"
    if is_tty():
        t = Table(title="sanity checks", title_justify="left")
        for col in ("result", "check", "measured", "expected"):
            t.add_column(col, overflow="fold")
        for r in results:
            t.add_row(
                "[green]PASS[/]" if r.passed else "[bold red]FAIL[/]",
                escape(r.name),
                escape(r.measured),
                escape(r.expected),
            )
        console.print(t)
        for r in results:
            if not r.passed and r.hint:
                console.print(f"[bold red]{escape(r.name)}[/]: {escape(r.hint)}")
        console.print(f"[bold]{verdict}[/]")
        return
    width = max(len(r.name) for r in results) if results else 0
    for r in results:
        plain(f"{'PASS' if r.passed else 'FAIL'}  {r.name:<{width}}  {r.measured}  (expected {r.expected})")
        if not r.passed and r.hint:
            plain(f"      {'':<{width}}  hint: {r.hint}")
    plain(verdict)


# --------------------------------------------------------------------------- monitoring


def advice(a: Any, *, stderr: bool = False) -> None:
    """A diagnostics message (``nntrain.diagnostics.Advice``), printed once when its rule first holds."""
    line = f"advice (epoch {a.epoch}): {a.message}"
    if stderr:
        print(line, file=sys.stderr, flush=True)
    elif is_tty():
        console.print(f"[bold yellow]advice[/] (epoch {a.epoch}): {a.message}", soft_wrap=True, markup=True)
    else:
        plain(line)


def rows_table(title: str, columns: list[str], rows: list[list[str]]) -> None:
    """A rich table on a terminal; aligned plain text otherwise."""
    if is_tty():
        t = Table(title=title, title_justify="left")
        for col in columns:
            t.add_column(col, justify="right")
        for row in rows:
            t.add_row(*row)
        console.print(t)
        return
    widths = [max(len(c), *(len(r[i]) for r in rows)) if rows else len(c) for i, c in enumerate(columns)]
    plain(title)
    plain("  ".join(c.rjust(w) for c, w in zip(columns, widths)))
    for row in rows:
        plain("  ".join(v.rjust(w) for v, w in zip(row, widths)))


def predictions_table(title: str, columns: list[str], rows: list[list[str]]) -> None:
    """``nntrain predict``'s terminal table: the path column left-aligned and never wrapped (the caller has
    fitted the paths to the width)."""
    t = Table(title=title, title_justify="left")
    for i, col in enumerate(columns):
        t.add_column(col, justify="left" if i == 0 or col == "next guesses" else "right", no_wrap=i == 0)
    for row in rows:
        t.add_row(*(escape(v) for v in row))
    console.print(t)


def per_class_table(rows: list[dict[str, Any]], title: str) -> None:
    rows_table(
        title,
        ["class", "n", "correct", "accuracy"],
        [[str(r["class"]), str(r["n"]), str(r["correct"]), fmt_acc(r["acc"])] for r in rows],
    )


def sweep_table(rows: list[dict[str, Any]]) -> None:
    def num(v: Any) -> str:
        return "-" if v is None else f"{v:.4f}"

    rows_table(
        "learning-rate sweep",
        ["lr", "epochs", "final loss", "val acc", "verdict"],
        [
            [
                f"{r['lr']:g}",
                str(r["epochs_run"]),
                num(r["final_loss"]) if not r["diverged"] else "diverged",
                fmt_acc(r["val_acc"]),
                r["verdict"],
            ]
            for r in rows
        ],
    )


# --------------------------------------------------------------------------- cv


def _params(p: dict[str, Any]) -> str:
    return "  ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in p.items()) or "(config as is)"


def pruned_line(m: dict[str, Any], n_folds: int) -> str:
    """A pruned trial: stopped inside its first fold (per-epoch pruning) or after a later fold."""
    epochs = f", {m['epochs_run']} epochs" if "epochs_run" in m else ""
    if m["folds_run"] == 1 and m.get("epochs_run") is not None:
        where = f"pruned in fold 1 of {n_folds} after {m['epochs_run']} epochs"
    else:
        where = f"pruned after {m['folds_run']} of {n_folds} folds{epochs}"
    return f"cv trial {m['combo']}: {where} (score so far {m['score']:.4f})"


class CvProgress:
    """cv progress callable: a live table of running folds on a terminal, plain lines otherwise."""

    def __init__(self, search: bool, n_folds: int, *, live: bool | None = None):
        self.search, self.n_folds = search, n_folds
        self.live = is_tty() if live is None else live
        self.running: dict[tuple[int, int], dict[str, Any]] = {}
        self.finished = 0
        self._live: Live | None = None
        if self.live:
            # transient: the running folds vanish when cv ends, leaving only its results
            self._live = Live(self._table(), console=console, refresh_per_second=8, transient=True)
            self._live.start()

    def _name(self, m: dict[str, Any]) -> str:
        fold = f"fold {m['fold'] + 1}/{self.n_folds}"
        return f"trial {m['combo']} {fold}" if self.search else fold

    def __call__(self, m: dict[str, Any]) -> None:
        if m["event"] == "pruned":  # a pruned trial's line, on a terminal too
            return plain(pruned_line(m, self.n_folds))
        key = (m["combo"], m["fold"])
        if m["event"] == "done":
            self.running.pop(key, None)
            self.finished += 1
            if not self.live:
                plain(
                    f"cv {self._name(m)}: best val {fmt_acc(m['best_val_acc'])} at epoch {m['best_epoch']}  "
                    f"{m['seconds']:.1f}s"
                )
        else:
            self.running[key] = m
            if not self.live and m["event"] == "epoch":
                plain(
                    f"cv {self._name(m)} epoch {m['epoch']}/{m['epochs']}  loss {m['train_loss']:.4f}  val "
                    f"{fmt_acc(m['val_acc'])}"
                )
        if self._live is not None:
            self._live.update(self._table())

    def _table(self) -> Table:
        t = Table(title=f"cv: {self.finished} folds finished", title_justify="left")
        for col in ("running", "epoch", "loss", "val acc"):
            t.add_column(col, justify="right")
        for m in self.running.values():
            if m["event"] == "epoch":
                t.add_row(self._name(m), f"{m['epoch']}/{m['epochs']}", f"{m['train_loss']:.4f}", fmt_acc(m["val_acc"]))
            else:
                t.add_row(self._name(m), f"0/{m['epochs']}", "-", "-")
        return t

    def close(self) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None


def _pm(mean: float, std: float) -> str:
    return "-" if mean is None or math.isnan(mean) else f"{mean:.4f} ± {std:.4f}"


def _tab(title: str, cols: tuple[str, ...], rows: list[list[str]]) -> Table:
    t = Table(title=title, title_justify="left")
    for col in cols:
        t.add_column(col, justify="left" if col == "hyperparameters" else "right")
    for row in rows:
        t.add_row(*row)
    return t


def cv_report(summary: dict[str, Any], cv_dir: str) -> None:
    """Fold table of the best trial (honest mean ± std last), then the ranking and the pruned trials."""
    best, c = summary["combos"][summary["best"]], summary["combos"]
    rows = [
        [
            str(r["fold"] + 1 - summary.get("first_fold", 0)),  # 1..k (summaries from before count from 0)
            str(r["n_train"]),
            str(r["n_val"]),
            fmt_acc(r.get("val_acc_at")),
            fmt_acc(r["best_val_acc"]),
        ]
        + [str(r["best_epoch"]), f"{r['seconds']:.2f}s"]
        for r in best["folds"]
    ]
    cols = ("fold", "train", "val", f"val acc @{best['epoch']}", "own best", "epoch", "time")
    folds = _tab(f"folds of {_params(best['params'])} (trial {best['trial']})", cols, rows)
    folds.add_row(
        "mean ± std", "", "", _pm(best["mean_val_acc"], best["std_val_acc"]), f"{best['mean_best_val_acc']:.4f}",
        f"{best['mean_best_epoch']:.1f}", f"{best['mean_seconds']:.2f}s", style="bold",
    )  # fmt: skip
    tables = [folds]
    if len(summary["ranking"]) > 1 or summary["pruned"]:
        # the score is taken at one epoch common to all folds; the last common epoch's accuracy beside it
        cols = ("rank", "trial", "hyperparameters", "mean ± std val acc", "scored at epoch",
                "val acc at last common epoch", "out-of-fold acc")  # fmt: skip
        rows = [
            [str(i), str(s["trial"]), _params(s["params"]), _pm(s["mean_val_acc"], s["std_val_acc"]), str(s["epoch"])]
            + [_pm(s["last_val_acc"], s["last_std_val_acc"]), fmt_acc(s["oof_acc"])]
            for i, s in enumerate((c[k] for k in summary["ranking"]), start=1)
        ]
        tables.append(_tab("ranking by mean val accuracy at one epoch common to all folds", cols, rows))
    if summary["pruned"]:
        cols = ("trial", "hyperparameters", "folds run", "mean ± std val acc")
        rows = [
            [str(s["trial"]), _params(s["params"]), f"{s['folds_run']}/{summary['folds']}"]
            + [_pm(s["mean_val_acc"], s["std_val_acc"])]
            for s in (c[k] for k in summary["pruned"])
        ]
        tables.append(_tab("pruned trials (score over the folds they ran)", cols, rows))
    for t in tables:
        if is_tty():
            console.print(t)
            continue
        cols = [[str(c.header)] + [str(x) for x in c.cells] for c in t.columns]
        widths, just = [max(len(x) for x in col) for col in cols], [c.justify for c in t.columns]
        plain(str(t.title))
        for row in zip(*cols):
            plain("  ".join(x.rjust(w) if j == "right" else x.ljust(w) for x, w, j in zip(row, widths, just)).rstrip())
    for w in summary["warnings"]:
        warn(w)
    plain(f"fold-epochs    {summary['fold_epochs']} trained in this study")
    plain(f"cv directory   {cv_dir}")
