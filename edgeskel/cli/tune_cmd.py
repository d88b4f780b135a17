"""`edgeskel tune --device D (--recipe R | --checkpoint C --data S)`: the fastest deployable
model for a device, chosen by measurement (edgeskel/tune/)."""

from __future__ import annotations

from pathlib import Path

import typer

from edgeskel.cli.app import app
from edgeskel.errors import ConfigError


def _floats(text: str, what: str) -> tuple[float, ...]:
    try:
        vals = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise ConfigError(f"{what} {text!r}: give comma-separated fractions, e.g. 0.75,0.5") from None
    if any(not 0.0 < v <= 1.0 for v in vals):
        raise ConfigError(f"{what} {text!r}: every value must be in (0, 1]")
    return vals


@app.command("tune")
def tune_cmd(
    device: str = typer.Option(..., "--device", help="device profile (devices/<name>.yaml) or path"),
    recipe: str = typer.Option("default", "--recipe", help="recipe name (recipes/<name>.yaml) or path"),
    checkpoint: Path | None = typer.Option(None, "--checkpoint", help="edgeskel checkpoint (overrides the recipe's model)"),
    data: str | None = typer.Option(None, "--data", help="dataset spec (overrides the recipe's data)"),
    out: Path = typer.Option(Path("runs"), "--out", help="writes tune-<device>/ under <out>/<recipe>/"),
    budgets: str = typer.Option("0.75,0.5", "--budgets", help="parameter budgets to try (besides none and latency ranks)"),
    energies: str = typer.Option("0.9", "--energies", help="energy kept per layer by the latency rank policy"),
    variants: str | None = typer.Option(None, "--variants", help="only these profile variants, e.g. ort-fp32,openvino-int8"),
    time_budget: float | None = typer.Option(None, "--time-budget", min=1.0,
                                             help="seconds; no new compression option or fine-tune starts after it"),
    max_recovery: float = typer.Option(10.0, "--max-recovery", min=0.0,
                                       help="top-1 points fine-tuning may win back (prunes before fine-tuning)"),
    runs: int | None = typer.Option(None, "--runs", min=10, help="timed calls per candidate and round (default: profile)"),
    rounds: int = typer.Option(3, "--rounds", min=1, help="interleaved timing rounds"),
    quiet: bool = typer.Option(False, "--quiet"),
) -> None:
    """Search compression x rank policy x precision x backend for a device; print the Pareto front and the choice.

    Candidates are timed on this host, or on the device over SSH when the profile has an ssh: block
    (TensorRT variants included: their engines are built and timed there)."""
    from edgeskel.tune import run_tune

    res = run_tune(device, recipe=recipe, checkpoint=str(checkpoint) if checkpoint else None, data=data, out_root=out,
                   budgets=_floats(budgets, "--budgets"), energies=_floats(energies, "--energies"),
                   variants=[v.strip() for v in variants.split(",") if v.strip()] if variants else None,
                   time_budget_s=time_budget, max_recovery=max_recovery, rounds=rounds, runs=runs, quiet=quiet)
    folder = out / res["recipe"] / f"tune-{res['device']}"
    typer.echo(f"wrote {folder}/: tune.json tune.md tune.png" + (" recipe.yaml" if res.get("recipe_file") else ""))
    if res["decision"]["chosen"] is None:
        raise typer.Exit(1)
