"""Experiment tracking in MLflow (``output.mlflow: true``; docs/tracking.md).

``start_tracking(cfg)`` checks the settings (the URI's form, the installed extra) and returns a
tracker: a training callback with a ``finish`` step for a train run, ``log_cv`` for a cv. With
tracking off it returns ``Off``, whose hooks do nothing, so call sites need no ``if``; mlflow is
imported only when tracking is on.
"""

from nntrain.tracking.settings import Off, start_tracking

__all__ = ["Off", "start_tracking"]
