"""`edgeskel check --recipe R --device D`: can the recipe's model reach every backend of the
profile? The pipeline's fail-fast stage alone: seconds, before any training or compression."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import typer

from edgeskel.cli.app import app


@app.command("check")
def check_cmd(
    device: str = typer.Option("cpu", "--device", help="device profile (devices/<name>.yaml) or path"),
    recipe: str = typer.Option("default", "--recipe", help="recipe name (recipes/<name>.yaml) or path"),
    checkpoint: Path | None = typer.Option(None, "--checkpoint", help="checkpoint (overrides the recipe's model)"),
    data: str | None = typer.Option(None, "--data", help="dataset spec (overrides the recipe's data)"),
    out: Path | None = typer.Option(None, "--out", help="keep the exported graphs and check.json here"),
    as_json: bool = typer.Option(False, "--json", help="print check.json instead of the summary"),
) -> None:
    """Export the recipe's model once per backend route of the device profile and run it here.

    Exit 0 when every route takes the model; otherwise one error line naming the backend, the
    problem (op, einsum equation, parity) and the fix, exit 2."""
    from edgeskel.devices import load_profile
    from edgeskel.pipeline import steps
    from edgeskel.recipe import load_recipe, with_overrides

    profile = load_profile(device)
    rec, rec_path = load_recipe(recipe)
    rec = with_overrides(rec, str(checkpoint) if checkpoint else None, data, source=rec_path)
    dataset = steps.load_data(rec)
    with tempfile.TemporaryDirectory(prefix="edgeskel-check-") as tmp:
        d = Path(out) if out else Path(tmp)
        d.mkdir(parents=True, exist_ok=True)
        try:  # a failing route raises one error line, after the summary is shown
            steps.export_check(rec, dataset, profile, d, where=str(rec_path))
        finally:
            if (d / "check.json").is_file():
                _show(json.loads((d / "check.json").read_text()), rec.name, profile.name, as_json)


def _show(summary: dict, recipe: str, device: str, as_json: bool) -> None:
    from edgeskel.export.check import format_check

    if as_json:
        print(json.dumps(summary, indent=2))
        return
    print(f"{recipe} on {device}: model {summary['model']} ({summary.get('source', '')}), "
          f"input {tuple(summary['input_shape'])}")
    for line in format_check(summary):
        print(line)
