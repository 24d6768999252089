"""Get the end of a run ready while it trains: import and compile what the pictures and the
report need, on a background thread, so that the idle core does it.

After ``fit``, ``nntrain train`` draws curves.png and confusion.png (matplotlib), and builds
report.html (Jinja2, PIL, scikit-learn's metrics). In a fresh process the first call of each
pays its import and set-up (matplotlib ~0.25 s, Jinja2 and the compiled templates ~0.1 s, the
first text drawn loads the font). Training small work runs on one thread, and torch releases
the GIL inside its operations, so ``WarmUp`` (a ``fit`` callback) does that work on a daemon
thread started at fit start. It only imports and compiles: nothing is written, and a failure
here is ignored (the real call after training raises it again, with its own message).
``wait()`` joins the thread (the run's end calls it before drawing).
"""

from __future__ import annotations

import gc
import io
import threading
from typing import Any


def warm_up() -> None:
    """Import matplotlib's Agg backend, PIL's PNG codec, Jinja2 and scikit-learn's metrics;
    compile the run report's templates; draw one tiny figure with text (font and renderer set-up);
    then freeze what was built (``gc.freeze``: the collector need not walk it during training)."""
    from matplotlib.backends import backend_agg  # noqa: F401  (what Figure.savefig uses)
    from PIL import PngImagePlugin  # noqa: F401
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support  # noqa: F401

    import nntrain.pipeline.artifacts  # noqa: F401  (nntrain.plots: matplotlib.figure, ticker)
    import nntrain.report.predictions  # noqa: F401
    import nntrain.report.run  # noqa: F401
    from nntrain.plots import DPI, Figure, FormatStrFormatter, save  # noqa: F401
    from nntrain.report.html import environment

    env = environment()
    for name in ("base.html.j2", "run.html.j2"):
        env.get_template(name)
    fig = Figure(figsize=(2, 1), dpi=DPI)
    ax, ax_log = fig.subplots(1, 2)
    ax.plot([0, 1], [0, 1], marker="o")
    ax.imshow([[0.0, 1.0]], cmap="Blues")
    ax.set(title="warm-up", xlabel="x")
    ax_log.plot([1, 2], [1e-3, 10.0])  # a loss curve over decades gets a log axis: mathtext tick labels
    ax_log.set_yscale("log")  # (its parser is built on first use)
    fig.savefig(io.BytesIO(), format="png", dpi=DPI)
    gc.freeze()


class WarmUp:
    """Callback: ``warm_up()`` on a daemon thread from fit start; ``wait()`` joins it."""

    def __init__(self) -> None:
        self._thread: threading.Thread | None = None

    def on_fit_start(self, info: dict[str, Any]) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="nntrain-warm-up", daemon=True)
            self._thread.start()

    @staticmethod
    def _run() -> None:
        try:
            warm_up()
        except Exception:  # noqa: BLE001  (only a head start: the real call reports any error)
            pass

    def wait(self) -> None:
        if self._thread is not None:
            self._thread.join()

    def on_fit_end(self, history: Any) -> None:
        self.wait()  # the pictures are drawn next, on this thread: matplotlib is not thread-safe
