"""The ``nntrain`` command: one Typer app, a module per verb (``nntrain/cli/<verb>.py``).

Commands are thin (parse → call the library → render). torch and the library are imported
inside commands so ``nntrain --help`` stays instant.
"""

from __future__ import annotations

from typing import Any

import typer
from typer.core import TyperGroup

from nntrain.cli import config_cmd, cv, data, evaluate, lrsweep, plots, sanity, train
from nntrain.cli.common import set_hint
from nntrain.cli.startup import before_exit


class _Commands(TyperGroup):
    """An unknown option that names a config key (``--epochs 3``) points to the ``--set`` that sets it."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except Exception as e:  # click's NoSuchOption (typer vendors its own click: matched by name)
            if type(e).__name__ == "NoSuchOption" and isinstance(getattr(e, "option_name", None), str):
                hint = set_hint(e.option_name, ctx.invoked_subcommand)
                if hint:
                    e.message = f"{e.message}; {hint}"
            raise


app = typer.Typer(
    cls=_Commands,
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
app.command("plot-curves")(plots.plot_curves)
app.command("plot-filters")(plots.plot_filters)
app.command()(cv.cv)
config_app.command("show")(config_cmd.config_show)
config_app.command("validate")(config_cmd.config_validate)
app.add_typer(config_app, name="config")


def main() -> None:
    try:
        app(prog_name="nntrain")
    finally:
        before_exit()  # the command's files are written: a quick exit


if __name__ == "__main__":
    main()
