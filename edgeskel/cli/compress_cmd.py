"""`edgeskel compress --recipe R [--checkpoint C] --out DIR`."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from edgeskel.cli.app import app


@app.command("compress")
def compress_cmd(
    recipe: str = typer.Option(..., "--recipe", help="recipe name (recipes/<name>.yaml) or path"),
    checkpoint: Optional[Path] = typer.Option(None, "--checkpoint", help="edgeskel checkpoint (overrides the recipe's model)"),
    data: Optional[str] = typer.Option(None, "--data", help="dataset spec (overrides the recipe)"),
    out: Path = typer.Option(Path("runs/compress"), "--out", help="writes compressed.ckpt + compression.json here"),
    rank_multiple: Optional[int] = typer.Option(None, "--rank-multiple", help="override the recipe's rank rounding"),
    quiet: bool = typer.Option(False, "--quiet"),
) -> None:
    """Factorize a trained model per a recipe and fine-tune it with distillation."""
    from edgeskel.pipeline.compress_only import compress_recipe

    summary = compress_recipe(recipe, out, checkpoint=checkpoint, data=data, rank_multiple=rank_multiple, quiet=quiet)
    t = Table(title=f"compression: {summary['recipe']}")
    for c in ("params", "GFLOPs", "top-1 ref", "top-1 compressed", "top-1 fine-tuned"):
        t.add_column(c, justify="right")
    tot, top = summary["totals"], summary["top1"]
    t.add_row(f"{tot['params_before']:,} -> {tot['params_after']:,} ({tot['param_ratio']:.2f}x)",
              f"{tot['flops_before'] / 1e9:.3f} -> {tot['flops_after'] / 1e9:.3f} ({tot['flop_ratio']:.2f}x)",
              f"{top['reference']:.2f}", f"{top['after_compression']:.2f}", f"{top['after_finetune']:.2f}")
    Console().print(t)
    Console().print(f"wrote {out / 'compressed.ckpt'} and {out / 'compression.json'}")
