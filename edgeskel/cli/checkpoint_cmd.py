"""`edgeskel half IN OUT`: store a checkpoint's weights as fp16 (for committing references)."""

from __future__ import annotations

from pathlib import Path

import typer

from edgeskel.cli.app import app


@app.command("half")
def half_cmd(src: Path = typer.Argument(..., help="edgeskel checkpoint"),
             dst: Path = typer.Argument(..., help="output checkpoint (fp16 weights)")) -> None:
    """Write a copy of a checkpoint with fp16 weights (half the size; reloads into fp32)."""
    from edgeskel.checkpoint import save_half

    save_half(src, dst)
    print(f"wrote {dst} ({dst.stat().st_size / 1e6:.2f} MB, from {src.stat().st_size / 1e6:.2f} MB)")
