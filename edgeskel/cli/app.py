"""The typer application object. Command modules (`edgeskel/cli/*_cmd.py`) add commands to it;
each command is a thin layer over a Python API function."""

from __future__ import annotations

from typing import Any

import typer

app = typer.Typer(
    name="edgeskel",
    help="Compress, quantize, export and validate skeleton action recognizers for edge devices.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

# `edgeskel --help` lists commands in the order a user runs them (then the tools); a command
# not named here (a new *_cmd.py) follows in registration order.
PIPELINE_ORDER = ("data", "train", "eval", "import", "compress", "export", "device-run", "results", "devices",
                  "models", "predict", "sweep", "bench", "ort-int8-study", "half")


def _print_version(value: bool) -> None:
    if value:
        from edgeskel import __version__

        typer.echo(f"edgeskel {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: bool = typer.Option(False, "--version", is_eager=True, callback=_print_version,
                                       help="Print edgeskel's version and exit.")) -> None:
    """Compress, quantize, export and validate skeleton action recognizers for edge devices."""


def tidy(cmd: typer.core.TyperGroup) -> typer.core.TyperGroup:
    """The click command tree, cleaned for people: commands in PIPELINE_ORDER, and flags shown
    without a type (typer prints `--quiet <bool>` / `--help <bool>` for on/off switches)."""
    names = list(cmd.commands)
    ordered = [n for n in PIPELINE_ORDER if n in cmd.commands] + [n for n in names if n not in PIPELINE_ORDER]
    cmd.commands = {n: cmd.commands[n] for n in ordered}
    stack = [cmd]
    while stack:
        c = stack.pop()
        for p in c.params:
            if getattr(p, "is_flag", False) and p.metavar is None:
                p.metavar = ""
        c.get_help_option = _bare_help(c.get_help_option)  # --help is made when help is shown
        stack += list(getattr(c, "commands", {}).values())
    return cmd


def _bare_help(make: Any) -> Any:
    def get_help_option(ctx: Any) -> Any:
        opt = make(ctx)
        if opt is not None and opt.metavar is None:
            opt.metavar = ""
        return opt

    return get_help_option
