"""The stages `run_pipeline` and `edgeskel tune` share, defined once.

Why one definition: tune reuses the recipe's shared reference (runs/<recipe>/_shared) and a
finished run's fine-tune only when its stage keys equal the pipeline's; two copies of the data
and reference stages kept that equality by hand (issue 28). Both call these.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgeskel.pipeline import steps
from edgeskel.pipeline.rundir import RunDir, kill_point

if TYPE_CHECKING:
    from edgeskel.devices import DeviceProfile
    from edgeskel.recipe import Recipe

DATA_ARRAYS = ("val_x", "val_y", "test_x", "test_y", "calib_x")
# Bumped when the fail-fast export check (export/check.py) changes what it checks.
CHECK_LOGIC_VERSION = 1


def data_stage(run: RunDir, rec: Recipe, dataset: Any, log: Callable[[str], None]) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Validation, test and calibration arrays, preprocessed once and hashed: (stage result, arrays)."""
    from edgeskel.data.splits import holdout

    validation = holdout(dataset).info

    def fn(d: Path) -> dict[str, Any]:
        pre = steps.recipe_preprocess(rec, dataset)
        arrays = steps.split_arrays(dataset, pre, rec.export.calib_samples, rec.data.val_samples)
        for k, v in arrays.items():
            save_npy(d / f"{k}.npy", v)
            kill_point("data", f"after_{k}")
        return {"outputs": [f"{k}.npy" for k in arrays], "num_val": int(len(arrays["val_y"])),
                "num_test": int(len(arrays["test_y"])), "validation": validation,
                "num_calib": int(len(arrays["calib_x"])), "classes": list(dataset.class_names),
                "layout": dataset.layout.name, "layout_definition": dataset.layout.to_dict(),
                "info": jsonable(dataset.info), "skipped": len(dataset.skipped)}

    res = run.run_stage("data", {"recipe_data": rec.data.model_dump(mode="json"),
                                 "export": rec.export.model_dump(mode="json"),
                                 "dataset": dataset_fingerprint(dataset)}, fn, log)
    return res, {k: np.load(run.root / "data" / f"{k}.npy") for k in DATA_ARRAYS}


def check_stage_inputs(profile: DeviceProfile, rec: Recipe, ckpt_hash: str | None, data_hash: str) -> dict[str, Any]:
    """What the fail-fast export check depends on: the model as the recipe builds it, the
    profile's routes, the opset and the check's own logic."""
    return {"model": rec.model.model_dump(mode="json"), "checkpoint": ckpt_hash, "data": data_hash,
            "variants": [v.model_dump(mode="json") for v in profile.variants],
            "input": profile.input.model_dump(mode="json"),
            "tensorrt": profile.tensorrt.model_dump(mode="json") if profile.tensorrt else None,
            "opset": rec.export.opset, "check_logic": CHECK_LOGIC_VERSION}


def check_stage(run: RunDir, profile: DeviceProfile, rec: Recipe, dataset: Any, ckpt_hash: str | None, where: str,
                log: Callable[[str], None]) -> dict[str, Any]:
    """Fail fast: every backend route of the profile takes the model, before any training."""
    return run.run_stage("check", check_stage_inputs(profile, rec, ckpt_hash, run.output_hash("data")),
                         lambda d: steps.export_check(rec, dataset, profile, d, where=where, log=log), log)


def reference_inputs(rec: Recipe, ckpt_hash: str | None, data_hash: str) -> dict[str, Any]:
    """The reference stage's key (the shared reference is reused only under the same key)."""
    return {"model": rec.model.model_dump(mode="json"), "checkpoint": ckpt_hash,
            "train": rec.train.model_dump(mode="json") if not rec.model.checkpoint else None, "data": data_hash}


def reference_stage(run: RunDir, rec: Recipe, dataset: Any, out_root: Path, ckpt_hash: str | None, quiet: bool,
                    log: Callable[[str], None],
                    finish: Callable[[Path, dict[str, Any]], dict[str, Any]] | None = None) -> dict[str, Any]:
    """`run/reference/reference.ckpt`, copied from the recipe's shared reference (trained or
    imported once per recipe, locked, reused by every device, tune and another --out).
    `finish(stage_dir, result)` adds what a caller records beside it."""
    from edgeskel.pipeline.shared import shared_reference

    ref_inputs = reference_inputs(rec, ckpt_hash, run.output_hash("data"))

    def fn(d: Path) -> dict[str, Any]:
        res = shared_reference(run.root.parent / "_shared", out_root, rec.name, ref_inputs, lambda sd: {
            **steps.get_reference(rec, dataset, sd, quiet=quiet), "outputs": ["reference.ckpt"]}, d / "reference.ckpt", log)
        res = {k: v for k, v in res.items() if k != "outputs"} | {"outputs": ["reference.ckpt"]}
        return finish(d, res) if finish is not None else res

    return run.run_stage("reference", ref_inputs, fn, log)


def save_npy(path: Path, arr: np.ndarray) -> None:
    import io

    from edgeskel.io import atomic_write_bytes

    buf = io.BytesIO()
    np.save(buf, arr)
    atomic_write_bytes(path, buf.getvalue())


def dataset_fingerprint(dataset: Any) -> str:
    """Content hash of the raw samples and labels (so changed data re-runs every stage)."""
    import hashlib

    h = hashlib.sha256()
    for split in (dataset.train, dataset.test, *([dataset.val] if getattr(dataset, "val", None) is not None else [])):
        h.update(np.asarray(split.labels, np.int64).tobytes())
        for s in split.samples:
            h.update(np.ascontiguousarray(s, np.float32).tobytes())
    h.update(dataset.layout.fingerprint().encode())  # the full definition, not the name
    h.update("\n".join(dataset.class_names).encode())  # names from a --class-names file change the model too
    return h.hexdigest()


def jsonable(obj: Any) -> Any:
    import json

    from edgeskel.io import json_default

    return json.loads(json.dumps(obj, default=json_default))


def variant_export_options(profile: DeviceProfile, rec: Recipe, variant: Any) -> dict[str, Any]:
    """export_variant's options for one profile variant: its own options, the recipe's
    quantization settings, the profile's accuracy gate and shapes, and for TensorRT the route,
    DLA core and engines per batch. The pipeline and tune export with exactly these."""
    options = {**variant.options, **rec.export.quant_options(), "max_drop": profile.gates.max_top1_drop,
               "static_batch": 1 if profile.input.static_shapes else None}
    if variant.backend == "tensorrt" and profile.tensorrt is not None:
        from edgeskel.quantize.tensorrt_routes import export_options_for

        options.update(export_options_for(profile, variant))
    return options


class UnlabelledClips:
    """Clips for the INT8 agreement gate (steps.unlabelled_array), made on first use and only
    when a variant is INT8; deterministic from the data, so stage keys already cover them."""

    def __init__(self, rec: Recipe, dataset: Any, variants: list[Any]):
        self.rec, self.dataset = rec, dataset
        self.needed = any(v.precision == "int8" for v in variants) and rec.export.agreement_samples > 0
        self.x: np.ndarray | None = None
        self.info: dict[str, Any] | None = None

    def __call__(self, precision: str) -> np.ndarray | None:
        if precision != "int8" or not self.needed:
            return None
        if self.x is None:
            rec = self.rec
            self.x, self.info = steps.unlabelled_array(self.dataset, steps.recipe_preprocess(rec, self.dataset),
                                                       rec.export.calib_samples, rec.export.agreement_samples,
                                                       rec.train)
        return self.x
