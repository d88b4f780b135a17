"""`edgeskel compress --recipe R [--checkpoint C] --out DIR`."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from edgeskel.cli.app import app
from edgeskel.train.device import DEVICE_HELP, Runtime, check_device_spec


@app.command("compress")
def compress_cmd(
    recipe: str = typer.Option(..., "--recipe", help="recipe name (recipes/<name>.yaml) or path"),
    checkpoint: Path | None = typer.Option(None, "--checkpoint", help="edgeskel checkpoint (overrides the recipe's model)"),
    data: str | None = typer.Option(None, "--data", help="dataset spec (overrides the recipe)"),
    out: Path = typer.Option(Path("runs/compress"), "--out", help="writes compressed.ckpt + compression.json here"),
    rank_multiple: int | None = typer.Option(None, "--rank-multiple", help="override the recipe's rank rounding"),
    device: str = typer.Option("auto", "--device", help=DEVICE_HELP),
    workers: int | None = typer.Option(None, "--workers", min=0, help="DataLoader workers (default 0 on CPU, up to 8 on GPU)"),
    no_amp: bool = typer.Option(False, "--no-amp", help="no mixed precision on GPU (fp32 throughout)"),
    quiet: bool = typer.Option(False, "--quiet"),
) -> None:
    """Factorize a trained model per a recipe and fine-tune it with distillation (torchrun-ready)."""
    from edgeskel.pipeline.compress_only import compress_recipe
    from edgeskel.train.distributed import is_main

    summary = compress_recipe(recipe, out, checkpoint=checkpoint, data=data, rank_multiple=rank_multiple, quiet=quiet,
                              runtime=Runtime(check_device_spec(device), amp=not no_amp, workers=workers))
    if not is_main():  # under torchrun: one summary, printed by rank 0
        return
    t = Table(title=f"compression: {summary['recipe']}")
    for c in ("params", "GFLOPs", "top-1 ref", "top-1 compressed", "top-1 fine-tuned"):
        t.add_column(c, justify="right")
    tot, top = summary["totals"], summary["top1"]
    t.add_row(f"{tot['params_before']:,} -> {tot['params_after']:,} ({tot['param_ratio']:.2f}x)",
              f"{tot['flops_before'] / 1e9:.3f} -> {tot['flops_after'] / 1e9:.3f} ({tot['flop_ratio']:.2f}x)",
              f"{top['reference']:.2f}", f"{top['after_compression']:.2f}", f"{top['after_finetune']:.2f}")
    Console().print(t)
    sel = summary.get("selection") or {}
    if sel:  # top-1 above: test split; the choice below was made on the validation split
        Console().print(f"deployed: {sel['deployed']} ({sel['note']})", highlight=False)
    Console().print(f"wrote {out / 'compressed.ckpt'} and {out / 'compression.json'}")


@app.command("sweep")
def sweep_cmd(
    checkpoint: Path = typer.Option(..., "--checkpoint", help="trained edgeskel checkpoint"),
    data: str = typer.Option(..., "--data", help="dataset spec (test split is evaluated)"),
    out: Path = typer.Option(Path("runs/sweep"), "--out"),
    budgets: str = typer.Option("0.75,0.5,0.33", "--budgets", help="fractions of params (or FLOPs) to keep"),
    target: str = typer.Option("params", "--target", help="params or flops"),
    finetune_epochs: int = typer.Option(0, "--finetune-epochs", help="KD fine-tune epochs per fine-tuned row"),
    finetune_methods: str = typer.Option("data-aware", "--finetune-methods",
                                         help="which rows to fine-tune: data-aware, plain or plain,data-aware"),
    lr: float = typer.Option(0.01, "--lr"),
    rank_multiple: int = typer.Option(8, "--rank-multiple"),
    threads: int | None = typer.Option(None, "--threads", help="torch intra-op threads"),
    device: str = typer.Option("auto", "--device", help=DEVICE_HELP + " (fine-tuning only)"),
    workers: int | None = typer.Option(None, "--workers", min=0, help="DataLoader workers for fine-tuning"),
    no_amp: bool = typer.Option(False, "--no-amp", help="no mixed precision on GPU (fp32 throughout)"),
    layout: str | None = typer.Option(None, "--layout", help="layout name or YAML; only for old checkpoints that "
                                      "stored a custom layout's name alone (new ones carry the full layout)"),
    quiet: bool = typer.Option(False, "--quiet"),
) -> None:
    """Top-1 (test split) vs parameter/FLOP ratio at several budgets, plain vs data-aware SVD;
    fine-tuned rows pick their best epoch on the validation split."""
    from edgeskel.compress.sweep import METHODS, sweep
    from edgeskel.errors import ConfigError
    from edgeskel.train.config import TrainConfig

    methods = tuple(m.strip() for m in finetune_methods.split(",") if m.strip())
    if not methods or set(methods) - set(METHODS):
        raise ConfigError(f"--finetune-methods {finetune_methods!r}: choose from {', '.join(METHODS)}")
    try:
        budget_list = [float(b) for b in budgets.split(",")]
    except ValueError:
        raise ConfigError(f"--budgets {budgets!r}: expected comma-separated fractions, e.g. 0.75,0.5,0.33") from None
    if threads:
        import torch

        torch.set_num_threads(threads)
    ft = TrainConfig(epochs=finetune_epochs, lr=lr, warmup_epochs=0, kd_weight=0.5) if finetune_epochs else None
    res = sweep(checkpoint, data, out, budget_list, target=target, finetune=ft, finetune_methods=methods,
                rank_multiple=rank_multiple, quiet=quiet, layout=layout,
                runtime=Runtime(check_device_spec(device), amp=not no_amp, workers=workers))
    t = Table(title=f"{res['model']}: reference top-1 {res['reference_top1']:.2f}")
    for c in ("budget", "method", "params x", "FLOPs x", "top-1", "top-1 fine-tuned"):
        t.add_column(c, justify="right")
    for r in res["rows"]:
        ft_s = "-" if r["top1_finetuned"] is None else f"{r['top1_finetuned']:.2f}"
        t.add_row(f"{r['budget']:.2f}", r["method"], f"{r['param_ratio']:.2f}", f"{r['flop_ratio']:.2f}",
                  f"{r['top1_compressed']:.2f}", ft_s)
    Console().print(t)
    Console().print(f"wrote {out / 'sweep.json'} and {out / 'sweep.png'}")
