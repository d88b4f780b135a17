"""Finished `make export` runs as a cache for the commands that need the same models (bench, tune).

Why: the pipeline already paid for the compress + fine-tune stage (41 minutes for Hyperformer on
2 cores). `edgeskel bench` and `edgeskel tune` on the same recipe and device need exactly that
model; recomputing it would double the cost of the most expensive step. Reuse is allowed only
when the run's manifest proves it is the same computation: same reference weights, same
compress / fine-tune settings and rank rounding (the stage's input hash), optionally the same
data arrays, and outputs whose sha256 still match. Anything else is rebuilt.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgeskel.io import sha256_json
from edgeskel.pipeline.rundir import RunDir

if TYPE_CHECKING:
    from edgeskel.recipe import Recipe

DEFAULT_ROOT = Path("runs")


def finished_run(recipe_name: str, device: str, root: Path = DEFAULT_ROOT) -> RunDir | None:
    """The RunDir of `make export DEVICE=<device> RECIPE=<recipe>` with its manifest read, or
    None (read-only: no lock is taken; manifests are written atomically)."""
    run = RunDir(Path(root) / recipe_name / device)
    if not run.manifest_path.is_file():
        return None
    run.manifest = run._read_manifest()
    return run


def compress_stage_inputs(rec: Recipe, rank_multiple: int, reference_hash: str) -> dict[str, Any]:
    """The pipeline's compress stage inputs (the pipeline and its readers build them here only)."""
    return {"compress": rec.compress.model_dump(mode="json") if rec.compress else None,
            "finetune": rec.finetune.model_dump(mode="json") if rec.finetune else None,
            "rank_multiple": rank_multiple, "reference": reference_hash}


def finished_compress(rec: Recipe, device: str, reference_sha: str, rank_multiple: int,
                      data_outputs: dict[str, str] | None = None,
                      root: Path = DEFAULT_ROOT) -> tuple[RunDir, dict[str, Any]] | None:
    """(run, compression.json) of a finished pipeline run whose compressed model is what
    `rec.compress` + `rec.finetune` with `rank_multiple` make from the reference with sha256
    `reference_sha` (the recipe's checkpoint file or the reference.ckpt the run holds). With
    `data_outputs` ({relative path: sha256} of a data stage), the run's val/calib arrays must
    match them too (the fine-tune selected its epoch on them). None when anything differs."""
    run = finished_run(rec.name, device, root)
    if run is None or rec.compress is None:
        return None
    stages = run.manifest.get("stages", {})
    if "reference" not in stages or "data" not in stages:
        return None
    ref_file_sha = ((run.manifest.get("inputs") or {}).get("checkpoint") or {}).get("sha256")
    ref_copy_sha = (stages["reference"].get("outputs") or {}).get("reference/reference.ckpt")
    if reference_sha not in {ref_file_sha, ref_copy_sha}:
        return None
    if data_outputs is not None:
        theirs = stages["data"].get("outputs") or {}
        needed = [k for k in data_outputs if Path(k).name in {"val_x.npy", "val_y.npy", "calib_x.npy"}]
        if not needed or any(theirs.get(k) != data_outputs[k] for k in needed):
            return None
    expected = sha256_json(compress_stage_inputs(rec, rank_multiple, run.output_hash("reference")))
    if run.stage_done("compress", expected) is None:
        return None
    try:
        return run, json.loads((run.root / "compress" / "compression.json").read_text())
    except (OSError, ValueError):
        return None
