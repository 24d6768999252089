"""``nntrain sanity``: the lecture's checks before training."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from nntrain.cli.common import ConfigOpt, SetOpt, guarded, load_cfg, sigterm_as_ctrl_c
from nntrain.cli.startup import collector_paused, settle_heap


@guarded
@collector_paused()
def sanity(
    config: Optional[Path] = ConfigOpt,
    set_: Optional[List[str]] = SetOpt,
    json_out: bool = typer.Option(False, "--json", help="Print the results as JSON (machine-readable)."),
    verbose: bool = typer.Option(
        False, "--verbose", "-v", help="Print every epoch of the overfit check (the lecture's log)."
    ),
) -> None:
    """Check the model and data before training: loss at init, regularization, overfitting 20
    samples, gradients, batch independence, split hygiene, learning rate. Exit 1 if any fails."""
    cfg = load_cfg(config, set_)
    from nntrain.cli.render import SanityReporter, plain, sanity_report, warn
    from nntrain.pipeline.setup import setup
    from nntrain.sanity.runner import run_sanity
    from nntrain.training.threads import apply_threads

    s = setup(cfg)
    apply_threads(s.threads)  # the thread policy (nntrain.training.threads)
    settle_heap()
    reporter = SanityReporter(verbose=verbose, live=False if json_out else None)
    try:
        with sigterm_as_ctrl_c():
            results = run_sanity(s, callbacks=[] if json_out else [reporter])
    finally:
        reporter.close()
    ok = all(r.passed for r in results)
    from nntrain.errors import NntrainError
    from nntrain.report.sanity_store import save_sanity

    try:  # the run reports of this config show them; the verdict stands without them
        saved = save_sanity(cfg, [r.to_dict() for r in results])
    except NntrainError as e:
        saved = None
        warn(f"{e}; the run reports will not show these checks")
    if json_out:
        from nntrain.runs.files import json_text

        plain(json_text({"passed": ok, "checks": [r.to_dict() for r in results]}).rstrip())
    else:
        if saved is not None:  # before the table: the verdict stays the last line
            plain(f"saved {saved} (shown in the report of every run with this config)")
        sanity_report(results)
    if not ok:
        raise typer.Exit(1)
