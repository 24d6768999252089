"""Is tracking on, where does it go, and can it go there: checked before any training (bad input →
``ConfigError``, exit 2, no run directory); mlflow itself is imported only when tracking is on."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from nntrain.errors import ConfigError
from nntrain.tracking.session import Warn, safe_uri

INSTALL = "pip install 'nntrain[mlflow]'"

# a tracker must never hold the training up for long: MLflow's own defaults retry for minutes
HTTP_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
}
DATABASES = ("sqlite", "postgresql", "mysql", "mssql")  # SQLAlchemy stores, also as dialect+driver
OTHER_SCHEMES = ("file", "databricks", "databricks-uc", "uc")


class Off:
    """Tracking off: every hook is a no-op and ``finish`` returns the summary unchanged."""

    def finish(self, run_dir: Path, summary: dict[str, Any]) -> dict[str, Any]:
        return summary

    def log_cv(self, cv_dir: Path, summary: dict[str, Any], **_: Any) -> dict[str, Any]:
        return summary


def start_tracking(cfg: Any, *, warn: Warn | None = None, resume: Path | None = None) -> Any:
    """The tracker for a run or a cv of ``cfg`` (``Off`` when ``output.mlflow`` is false, or on a torchrun
    rank > 0). ``warn``: prints a warning (the CLI's); ``resume``: the run directory ``--resume`` continues,
    whose MLflow run is continued."""
    if cfg is None or not cfg.output.mlflow or os.environ.get("RANK", "0") != "0":
        return Off()
    uri = cfg.output.mlflow_uri or os.environ.get("MLFLOW_TRACKING_URI") or None
    if uri is not None:
        check_uri(uri, "output.mlflow_uri" if cfg.output.mlflow_uri else "MLFLOW_TRACKING_URI")
    require_mlflow()
    for key, value in HTTP_DEFAULTS.items():
        os.environ.setdefault(key, value)  # the user's own settings win
    from nntrain.tracking.mlflow import MlflowTracker

    return MlflowTracker(uri, cfg.output.mlflow_experiment or cfg.output.run_name, cfg, warn=warn, resume=resume)


def require_mlflow() -> None:
    try:
        import mlflow  # noqa: F401
    except ImportError:
        raise ConfigError(
            f"output.mlflow: true, but the 'mlflow' package is not installed; {INSTALL} (or pip install mlflow), "
            "or set output.mlflow: false"
        ) from None


def check_uri(uri: str, source: str) -> None:
    """The URI's form only (no connection: an unreachable server is a warning during the run, not an error)."""
    hint = "use http(s)://host:port, sqlite:///path.db, file:///dir or a directory"
    if not uri.strip():
        raise ConfigError(f"{source} is empty; {hint}")
    if not re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", uri) and not uri.startswith("file:"):
        return  # a local directory: MLflow's file store
    parts = urlsplit(uri)
    scheme = parts.scheme.lower()
    bad = None
    if scheme in ("http", "https"):
        try:
            port_ok = parts.port is None or parts.port > 0
        except ValueError:
            port_ok = False
        if not parts.hostname:
            bad = "no host"
        elif not port_ok:
            bad = "the port is not a number between 1 and 65535"
    elif scheme.split("+")[0] in DATABASES:
        if scheme.startswith("sqlite") and not uri.split("://", 1)[1].startswith("/"):
            bad = "an SQLite URI has three slashes before a relative path (sqlite:///mlflow.db)"
        elif not scheme.startswith("sqlite") and not parts.hostname:
            bad = "no database host"
    elif scheme not in OTHER_SCHEMES:
        bad = f"MLflow has no tracking store for '{scheme}://'"
    if bad:
        raise ConfigError(f"{source} {safe_uri(uri)!r} is not a tracking URI ({bad}); {hint}")
