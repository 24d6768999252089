"""One MLflow client for a run or a cv, and what it could not send: the first failed call warns once
and stops the sending (the tracker never costs the training)."""

from __future__ import annotations

import contextlib
import json
import re
import sys
import time
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlsplit, urlunsplit

Warn = Callable[[str], None]

RUN_FILE = "mlflow.json"


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested config dict → dotted keys (``train.optimizer.lr``)."""
    out: dict[str, Any] = {}
    for k, v in tree.items():
        if isinstance(v, dict) and v:
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def metric_name(name: str) -> str:
    """MLflow allows letters, digits, _ - . space / in a metric name."""
    return re.sub(r"[^A-Za-z0-9_\-. /]", "_", str(name))


class Session:
    """One MLflow client and what it failed to send: the first failure warns once and stops the sending."""

    def __init__(self, uri: str | None, experiment: str, warn: Warn | None):
        from mlflow.tracking import MlflowClient

        self.uri = safe_uri(uri)
        self.experiment = experiment
        self.warn = warn or (lambda _: None)
        self.error: str | None = None
        self.missed: list[str] = []
        self.missed_epochs: list[int] = []
        # a store that cannot be opened (an SQLite file in a missing folder, ...): as unreachable, the run goes on
        self.client = self.call("the tracking store", MlflowClient, tracking_uri=uri)
        if self.client is not None:
            self.missed.clear()
            self.uri = self.uri or self.client.tracking_uri

    def call(self, what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        if self.error is None:
            try:
                # MLflow prints its "View run at" links: to stderr, so that --json keeps stdout to itself
                with contextlib.redirect_stdout(sys.stderr):
                    return fn(*args, **kwargs)
            except Exception as e:  # any failure of the tracker: the run goes on
                self.error = (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
                self.warn(
                    f"MLflow ({self.uri}): could not log {what} ({self.error}); training goes on, "
                    "nothing more is sent to MLflow this run"
                )
        self.missed.append(what)
        return None

    def not_logged(self) -> list[str]:
        epochs = sorted(set(self.missed_epochs))
        out = [f"metrics of epoch{'s' if len(epochs) > 1 else ''} {_ranges(epochs)}"] if epochs else []
        return out + self.missed

    def experiment_id(self) -> str:
        exp = self.client.get_experiment_by_name(self.experiment)
        if exp is not None:
            return exp.experiment_id
        try:
            return self.client.create_experiment(self.experiment)
        except Exception:  # another process created it meanwhile
            exp = self.client.get_experiment_by_name(self.experiment)
            if exp is None:
                raise
            return exp.experiment_id

    def log_params(self, run_id: str, params: dict[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(k, str(v)) for k, v in params.items()]
        for i in range(0, len(items), 100):  # MLflow's batch limit
            self.client.log_batch(run_id, params=items[i : i + 100])

    def log_metrics(self, run_id: str, values: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        batch = [Metric(metric_name(k), float(v), now, step) for k, v in values.items() if v is not None]
        for i in range(0, len(batch), 1000):
            self.client.log_batch(run_id, metrics=batch[i : i + 1000])

    def report(self, where: dict[str, Any]) -> dict[str, Any]:
        """What summary.json records: where the run went and what did not get there."""
        missed = self.not_logged()
        if missed:
            self.warn(f"MLflow: not logged: {'; '.join(missed)}")
        return {**where, "tracking_uri": self.uri, "experiment": self.experiment, "not_logged": missed}


def read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _ranges(ns: list[int]) -> str:
    out, start = [], None
    for i, n in enumerate(ns):
        start = n if start is None else start
        if i + 1 == len(ns) or ns[i + 1] != n + 1:
            out.append(str(start) if start == n else f"{start}-{n}")
            start = None
    return ", ".join(out)


def safe_uri(uri: str | None) -> str | None:
    """``uri`` without a password (what files and messages may show)."""
    if not uri or "://" not in uri:
        return uri
    parts = urlsplit(uri)
    if parts.password is None:
        return uri
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"{parts.username}:***@{host}"))
