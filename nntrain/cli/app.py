"""The ``nntrain`` command: one Typer app, a module per verb (``nntrain/cli/<verb>.py``).

Commands are thin (parse → call the library → render). torch and the library are imported
inside commands so ``nntrain --help`` stays instant.
"""

from __future__ import annotations

import typer

from nntrain.cli import config_cmd, cv, data, evaluate, export, lrsweep, plots, predict, report, runs, sanity, train
from nntrain.cli.startup import before_exit
from nntrain.training.threads import passive_waits

app = typer.Typer(
    help="Train small image classifiers with PyTorch the disciplined way: "
    "sanity checks, SGD watched epoch by epoch, cross-validation, pictures.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    add_completion=False,
)

config_app = typer.Typer(help="Show or validate configuration files.", no_args_is_help=True)

# in the order of the workflow: look at the data, check, pick an lr, train, inspect, search
app.command("data")(data.data_cmd)
app.command()(sanity.sanity)
app.command("lr-sweep")(lrsweep.lr_sweep_cmd)
app.command()(train.train)
app.command("eval")(evaluate.eval_cmd)
app.command("predict")(predict.predict_cmd)
app.command("export")(export.export_cmd)
app.command("plot-curves")(plots.plot_curves)
app.command("plot-filters")(plots.plot_filters)
app.command("report")(report.report_cmd)
app.command("runs")(runs.runs_cmd)
app.command()(cv.cv)
config_app.command("show")(config_cmd.config_show)
config_app.command("validate")(config_cmd.config_validate)
app.add_typer(config_app, name="config")


def main() -> None:
    passive_waits()  # before torch is imported: waiting OpenMP threads yield their core
    try:
        app(prog_name="nntrain")
    finally:
        before_exit()  # the command's files are written: a quick exit


if __name__ == "__main__":
    main()
