"""The ``nntrain`` command: one Typer app, a module per verb (``nntrain/cli/<verb>.py``).

Commands are thin (parse → call the library → render). torch and the library are imported
inside commands so ``nntrain --help`` stays instant.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable, Optional

import typer
from typer.core import TyperCommand, TyperGroup

from nntrain.cli import config_cmd, cv, data, evaluate, export, lrsweep, plots, predict, report, runs, sanity, train
from nntrain.cli.common import set_hint
from nntrain.cli.startup import before_exit
from nntrain.training.threads import set_wait_policy


def _flags_take_no_value(params: list[Any]) -> list[Any]:
    """Typer shows a ``<bool>`` type beside flags such as ``--json``, which take no value: show none."""
    for p in params:
        if getattr(p, "is_flag", False) and p.metavar is None:  # (typer bundles its own click)
            p.metavar = ""
    return params


class _Command(TyperCommand):
    def get_params(self, ctx: Any) -> list[Any]:
        return _flags_take_no_value(super().get_params(ctx))


class _Group(TyperGroup):
    def get_params(self, ctx: Any) -> list[Any]:
        return _flags_take_no_value(super().get_params(ctx))


HELP = {"help_option_names": ["-h", "--help"]}


class _Commands(_Group):
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
    context_settings=HELP,
)

config_app = typer.Typer(
    cls=_Group, help="Show or validate configuration files.", no_args_is_help=True, context_settings=HELP
)


def _version(value: bool) -> None:
    if value:
        import nntrain

        print(f"nntrain {nntrain.__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Optional[bool] = typer.Option(
        None, "--version", callback=_version, is_eager=True, help="Print nntrain's version and exit."
    ),
) -> None:
    pass


def _paragraphs(fn: Callable[..., Any]) -> str:
    """A docstring as help text: paragraphs kept, each one's line breaks joined (rich reflows them)."""
    doc = inspect.cleandoc(fn.__doc__ or "")
    return "\n\n".join(" ".join(p.split()) for p in doc.split("\n\n"))


def _add(group: typer.Typer, fn: Callable[..., Any], name: str) -> None:
    group.command(name, cls=_Command, help=_paragraphs(fn), context_settings=HELP)(fn)


# in the order of the workflow: look at the data, check, pick an lr, train, inspect, search
_add(app, data.data_cmd, "data")
_add(app, sanity.sanity, "sanity")
_add(app, lrsweep.lr_sweep_cmd, "lr-sweep")
_add(app, train.train, "train")
_add(app, evaluate.eval_cmd, "eval")
_add(app, predict.predict_cmd, "predict")
_add(app, export.export_cmd, "export")
_add(app, plots.plot_curves, "plot-curves")
_add(app, plots.plot_filters, "plot-filters")
_add(app, report.report_cmd, "report")
_add(app, runs.runs_cmd, "runs")
_add(app, cv.cv, "cv")
_add(config_app, config_cmd.config_show, "show")
_add(config_app, config_cmd.config_validate, "validate")
app.add_typer(config_app, name="config")


def main() -> None:
    set_wait_policy()  # before torch is imported: waiting OpenMP threads sleep (a user's own setting wins)
    try:
        app(prog_name="nntrain")  # (click's standalone mode: always ends in SystemExit)
    finally:
        before_exit()


if __name__ == "__main__":
    main()
