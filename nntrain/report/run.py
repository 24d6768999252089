"""A run's report: everything its directory holds, gathered into one template context."""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any

from nntrain.errors import NntrainError
from nntrain.report.html import figure_uri, file_uri, images_uris

SUMMARY_KEYS = (
    "best_val_acc", "best_epoch", "test_acc", "test_loss", "epochs_run", "stopped", "diverged", "train_seconds",
    "started", "seed", "device", "world_size", "split_sizes", "data_notes", "command", "nntrain", "torch", "python",
)  # fmt: skip


def read_summary(run_dir: Path) -> dict[str, Any] | None:
    try:
        return json.loads((run_dir / "summary.json").read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        raise NntrainError(f"cannot read '{run_dir / 'summary.json'}': {e}; the run directory is damaged") from None


def status(run_dir: Path, summary: dict[str, Any] | None) -> str:
    """finished · diverged · interrupted (no summary.json: stopped before its end, or still running)."""
    if summary is None:
        return "interrupted"
    return "diverged" if summary.get("diverged") else "finished"


def stop_reason(summary: dict[str, Any], epochs: int) -> str:
    if summary.get("stopped"):
        return str(summary["stopped"])
    return f"ran all {summary.get('epochs_run', epochs)} epochs"


def run_context(run_dir: Path, *, setup: Any = None, test: Any = None) -> dict[str, Any]:
    from nntrain.config import load_config

    cfg = load_config(run_dir / "config.yaml")
    summary = read_summary(run_dir)
    ctx: dict[str, Any] = {
        "name": run_dir.name,
        "status": status(run_dir, summary),
        "summary": {k: None for k in SUMMARY_KEYS} | (summary or {}),
        "stop": stop_reason(summary, cfg.train.epochs) if summary else "interrupted before its end (no summary.json)",
        "config_yaml": (run_dir / "config.yaml").read_text(),
        "cfg": cfg,
        "command": shlex.join(["nntrain", *summary["command"][1:]]) if summary and summary.get("command") else None,
        "advice": [_advice(a) for a in (summary or {}).get("advice", [])],
    }
    from nntrain.report.sanity_store import find_sanity

    ctx["sanity"] = find_sanity(run_dir, cfg)
    ctx.update(_model_views(run_dir, cfg, summary, setup, test))
    ctx["curves"] = file_uri(run_dir / "curves.png") or _curves(run_dir)
    ctx["confusion"] = file_uri(run_dir / "confusion.png")
    if ctx["confusion"] is None and ctx.get("cm") is not None:  # not drawn by the run: draw it now
        from nntrain.plots import confusion_figure

        ctx["confusion"] = figure_uri(confusion_figure(ctx["cm"], ctx["classes"], title="test confusion"))
    return ctx


def _advice(a: Any) -> dict[str, Any]:
    """One advice item (a string, or a dict with a message and details) → {message, details}."""
    if isinstance(a, dict):
        msg = a.get("message") or a.get("text") or a.get("rule") or json.dumps(a, default=str)
        rest = {k: v for k, v in a.items() if k not in ("message", "text")}
        return {"message": str(msg), "details": rest}
    return {"message": str(a), "details": {}}


def _curves(run_dir: Path) -> str | None:
    """Curves drawn from metrics.csv (a run that stopped before drawing curves.png)."""
    from nntrain.pipeline.reopen import read_curves
    from nntrain.plots import curves_figure

    try:
        return figure_uri(curves_figure([read_curves(run_dir)]))
    except NntrainError:
        return None


def _model_views(run_dir: Path, cfg: Any, summary: dict[str, Any] | None, s: Any, test: Any) -> dict[str, Any]:
    """Sample images, top losses, precision/recall and filters: need the data and a checkpoint. ``test``: the
    best model's test outputs when the caller has them (``nntrain train``), else the checkpoint is tested here."""
    from nntrain.pipeline.reopen import load_model
    from nntrain.report.predictions import filters, per_class_scores, top_losses
    from nntrain.runs.files import load_checkpoint

    out: dict[str, Any] = {"samples": [], "top_losses": [], "scores": [], "filters": [], "classes": []}
    ckpt_path = next((run_dir / n for n in ("best.pt", "last.pt") if (run_dir / n).is_file()), None)
    ckpt = load_checkpoint(ckpt_path) if ckpt_path is not None else None
    if s is None:
        from nntrain.pipeline.setup import setup

        s = setup(cfg, norm=ckpt)  # same config and seed → the same splits the run trained on
    from nntrain.data.stats import split_class_counts

    classes = list(s.data.classes)
    out["classes"] = classes
    out["class_counts"] = (summary or {}).get("class_counts") or split_class_counts(s.data)
    from nntrain.data.report import network_view

    if len(s.data.train):
        x, y = network_view(s, min(16, len(s.data.train)))
        out["samples"] = [{"img": u, "label": classes[int(c)]} for u, c in zip(images_uris(x), y.tolist())]
        out["sample_range"] = (float(x.min()), float(x.max()))
    if ckpt is None:
        return out
    if list(ckpt.get("classes", [])) != classes:
        return out  # the dataset changed since training: no per-sample views
    model = load_model(ckpt, ckpt_path)
    out["checkpoint"] = ckpt_path.name
    out["filters"] = filters(run_dir, model, s.data.input_shape)
    if len(s.data.test):
        if test is None:
            from nntrain.training.engine import evaluate
            from nntrain.training.metrics import with_tta

            net = with_tta(model.to(s.device), cfg.eval.tta)  # as the run tested it
            test = evaluate(net, s.data.test, batch_size=cfg.train.eval_batch_size, keep=True)
        out["cm"] = test.confusion(len(classes))
        out["scores"] = per_class_scores(out["cm"], classes)
        out["top_losses"] = top_losses(test, s.data.test, classes)
    return out
