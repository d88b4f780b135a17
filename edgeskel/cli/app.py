"""The typer application object. Command modules (`edgeskel/cli/*_cmd.py`) add commands to it;
each command is a thin layer over a Python API function."""

from __future__ import annotations

import typer

app = typer.Typer(
    name="edgeskel",
    help="Compress, quantize, export and validate skeleton action recognizers for edge devices.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
