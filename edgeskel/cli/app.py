"""The typer application object. Command modules (`edgeskel/cli/*_cmd.py`) add commands to it;
each command is a thin layer over a Python API function."""

from __future__ import annotations

import logging
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
PIPELINE_ORDER = ("data", "train", "eval", "import", "check", "compress", "tune", "export", "device-run", "results", "devices",
                  "models", "predict", "stream", "sweep", "bench", "ort-int8-study", "half")


def _print_version(value: bool) -> None:
    if value:
        from edgeskel import __version__

        typer.echo(f"edgeskel {__version__}")
        raise typer.Exit()


# Libraries whose INFO lines (e.g. NNCF's `INFO:nncf:...` per quantized layer) would bury
# edgeskel's own progress; their warnings and errors always show.
THIRD_PARTY_LOGGERS = ("nncf",)


class _WarningsAndAbove(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING


_QUIET = _WarningsAndAbove()


def quiet_third_party(quiet: bool = True) -> None:
    """Drop third-party INFO/DEBUG records (a logger filter, so it holds even though NNCF resets
    its logger's level when it is imported); `--verbose` shows them again."""
    for name in THIRD_PARTY_LOGGERS:
        logger = logging.getLogger(name)
        logger.removeFilter(_QUIET)
        if quiet:
            logger.addFilter(_QUIET)


@app.callback()
def _root(version: bool = typer.Option(False, "--version", is_eager=True, callback=_print_version,
                                       help="Print edgeskel's version and exit."),
          verbose: bool = typer.Option(False, "--verbose", "-v",
                                       help="Also show third-party libraries' info logs (NNCF, ...).")) -> None:
    """Compress, quantize, export and validate skeleton action recognizers for edge devices."""
    quiet_third_party(not verbose)


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
