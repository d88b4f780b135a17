"""Python API behind `edgeskel compress`: reference -> factorize -> fine-tune, no export."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from edgeskel.checkpoint import load_checkpoint
from edgeskel.pipeline import steps
from edgeskel.recipe import load_recipe, with_overrides
from edgeskel.train.device import Runtime


def compress_recipe(recipe: str, out: str | Path, checkpoint: str | Path | None = None, data: str | None = None,
                    rank_multiple: int | None = None, quiet: bool = False,
                    runtime: Runtime | None = None) -> dict[str, Any]:
    """Reference -> factorize -> fine-tune into `out`; `runtime` picks device / AMP / workers for
    the training steps. Under torchrun every rank returns the summary rank 0 wrote."""
    from edgeskel.train import distributed
    from edgeskel.train.device import resolve_device

    distributed.init(resolve_device((runtime or Runtime()).device))  # under torchrun: before any rank-0-only write
    rec, rec_path = load_recipe(recipe)
    rec = with_overrides(rec, checkpoint, data, source=rec_path)
    out = Path(out)
    dataset = steps.load_data(rec)
    steps.get_reference(rec, dataset, out / "reference", quiet=quiet, runtime=runtime)
    _, spec, _ = load_checkpoint(out / "reference" / "reference.ckpt")
    arrays = steps.split_arrays(dataset, spec.preprocess, rec.export.calib_samples, rec.data.val_samples)
    steps.compress_and_finetune(out / "reference" / "reference.ckpt", rec, dataset, arrays["val_x"], arrays["val_y"],
                                arrays["calib_x"], out, rank_multiple=rank_multiple, quiet=quiet, runtime=runtime,
                                test=(arrays["test_x"], arrays["test_y"]))
    return json.loads((out / "compression.json").read_text())
