"""The models a benchmark compares: the trained reference and its compressed + fine-tuned
copy, both cached under `<cache>/` keyed by content hashes so a rerun skips the training.

Accuracy numbers are only meaningful for trained weights, so a reference is either the
committed checkpoint `reference/<model>-nwucla.ckpt` (when it fits the data and no width
override is asked) or trained here with the recipe's `train:` schedule; never random weights.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgeskel.errors import ConfigError, DataError
from edgeskel.io import atomic_write_json, sha256_file, sha256_json
from edgeskel.recipe import Recipe, load_recipe, with_overrides

if TYPE_CHECKING:
    from edgeskel.devices import DeviceProfile


@dataclass
class Prepared:
    """One model's inputs to the benchmark."""

    name: str
    recipe: Recipe
    dataset: Any
    reference_ckpt: Path
    reference_info: dict[str, Any]
    compressed_ckpt: Path
    compression: dict[str, Any]
    val_x: np.ndarray  # the TEST split: the accuracy columns (named val_x in results for history)
    val_y: np.ndarray
    calib_x: np.ndarray
    gate_x: np.ndarray  # the validation split: INT8 gates/parity of exports (issue 16)
    gate_y: np.ndarray


def bench_recipe(model: str, settings: Any) -> Recipe:
    """`recipes/<model>-lortsar.yaml` (or the file `--recipe model=FILE` names) with the
    benchmark's overrides (data, width, T, epochs)."""
    rec, path = load_recipe(settings.recipes.get(model, f"{model}-lortsar"))
    if rec.model.name != model:
        raise ConfigError(f"{path}: recipe for model {rec.model.name!r}, given for --recipe {model}=...")
    data = rec.data.model_copy(update={k: v for k, v in {"spec": settings.data, "frames": settings.frames,
                                                         "val_samples": settings.val_samples}.items() if v is not None})
    if settings.data is not None and settings.data != rec.data.spec and settings.frames is None and data.frames == 52:
        data = data.model_copy(update={"frames": None})  # recipe T is NW-UCLA's; other data: median length
    rec = rec.model_copy(update={"data": data})
    if settings.train_epochs is not None:
        rec = rec.model_copy(update={"train": rec.train.model_copy(update={"epochs": settings.train_epochs,
                                                                           "warmup_epochs": min(rec.train.warmup_epochs, 1)})})
    if settings.finetune_epochs is not None and rec.finetune is not None:
        rec = rec.model_copy(update={"finetune": rec.finetune.model_copy(update={"epochs": settings.finetune_epochs})})
    if settings.width is not None:
        rec = rec.model_copy(update={"model": rec.model.model_copy(update={"width": settings.width})})
    if settings.quick:  # sgd at lr 0.1 needs the long schedule; a few epochs learn more with adamw
        rec = rec.model_copy(update={"train": rec.train.model_copy(update={"optimizer": "adamw", "lr": 3e-3,
                                                                           "weight_decay": 5e-4})})
        if rec.finetune is not None:
            rec = rec.model_copy(update={"finetune": rec.finetune.model_copy(update={"optimizer": "adamw", "lr": 1e-3})})
    # the checkpoint is chosen by `reference_checkpoint`, not by the recipe
    rec = rec.model_copy(update={"model": rec.model.model_copy(update={"checkpoint": None, "import_from": None})})
    return with_overrides(rec)


def _dataset_key(dataset: Any) -> dict[str, Any]:
    return {"spec": dataset.spec, "layout": dataset.layout.name, "classes": list(dataset.class_names),
            "train": len(dataset.train), "test": len(dataset.test)}


def reference_checkpoint(model: str, rec: Recipe, dataset: Any, settings: Any, log: Any) -> tuple[Path, dict[str, Any]]:
    """The committed reference checkpoint if it fits, else a cached (or newly) trained one."""
    from edgeskel.checkpoint import load_checkpoint
    from edgeskel.pipeline import steps
    from edgeskel.recipe import REPO_ROOT
    from edgeskel.train.api import check_compatible

    committed = settings.reference_dir / f"{model}-nwucla.ckpt"
    if not committed.is_absolute() and not committed.exists() and (REPO_ROOT / committed).is_file():
        committed = REPO_ROOT / committed  # `reference/` of this checkout when run from elsewhere
    if committed.is_file() and settings.width is None and not settings.quick:
        _, spec, _ = load_checkpoint(committed)
        try:
            check_compatible(spec, dataset, str(committed))
            return committed, {"source": f"committed checkpoint {committed}", "sha256": sha256_file(committed)}
        except DataError as exc:
            log(f"[yellow]{committed} does not fit {dataset.spec}: {exc}; training a reference instead[/]")
    if rec.train.epochs < 1:
        raise ConfigError(f"{model}: no reference checkpoint at {committed} and train epochs is 0: "
                          "refusing to benchmark untrained weights")
    key = sha256_json({"model": rec.model.model_dump(mode="json"), "train": rec.train.model_dump(mode="json"),
                       "data": rec.data.model_dump(mode="json"), "dataset": _dataset_key(dataset)})[:12]
    out = settings.cache_dir / "reference" / f"{model}-{key}"
    ckpt = out / "reference.ckpt"
    meta_path = out / "bench-reference.json"
    if ckpt.is_file() and meta_path.is_file():
        return ckpt, json.loads(meta_path.read_text())
    log(f"{model}: no usable {committed}; training a reference ({rec.train.epochs} epochs) into {out}")
    t0 = time.perf_counter()
    res = steps.get_reference(rec, dataset, out, quiet=True)
    meta = {"source": f"trained here ({rec.train.epochs} epochs, cached in {out})", "wall_time_s": round(time.perf_counter() - t0, 1),
            "sha256": sha256_file(ckpt), **{k: v for k, v in res.items() if k != "source"}}
    atomic_write_json(meta_path, meta)
    return ckpt, meta


def compressed_checkpoint(model: str, rec: Recipe, dataset: Any, ref_ckpt: Path, ref_sha: str, arrays: dict[str, np.ndarray],
                          rank_multiple: int, settings: Any, log: Any) -> tuple[Path, dict[str, Any]]:
    """`compress_and_finetune` with the recipe, cached by (reference, recipe sections, data)."""
    from edgeskel.checkpoint import load_checkpoint
    from edgeskel.models.profile import count_params
    from edgeskel.pipeline import steps

    key = sha256_json({"reference": ref_sha, "compress": rec.compress.model_dump(mode="json") if rec.compress else None,
                       "finetune": rec.finetune.model_dump(mode="json") if rec.finetune else None,
                       "rank_multiple": rank_multiple, "data": rec.data.model_dump(mode="json"),
                       "calib": rec.export.calib_samples, "dataset": _dataset_key(dataset)})[:12]
    out = settings.cache_dir / "compress" / f"{model}-{key}"
    meta_path = out / "bench-compress.json"
    if (out / "compressed.ckpt").is_file() and meta_path.is_file():
        return out / "compressed.ckpt", json.loads(meta_path.read_text())
    reused = _pipeline_compressed(rec, ref_sha, rank_multiple, settings)
    if reused is not None:
        log(f"{model}: reusing the compressed model of the finished pipeline run {reused[0].parent.parent}")
        return reused
    log(f"{model}: compressing + fine-tuning with recipe {rec.name} into {out}")
    t0 = time.perf_counter()
    res = steps.compress_and_finetune(ref_ckpt, rec, dataset, arrays["val_x"], arrays["val_y"], arrays["calib_x"], out,
                                      rank_multiple=rank_multiple, quiet=True, test=(arrays["test_x"], arrays["test_y"]))
    wall = time.perf_counter() - t0
    ref_model, _, _ = load_checkpoint(ref_ckpt)
    meta = {"model": model, "recipe": rec.name, "width": rec.model.width, "data": rec.data.spec,
            "params_before": count_params(ref_model), "params_after": res["totals"].get("params_after"),
            "wall_time_s": round(wall, 2), "finetune_wall_time_s": (res.get("finetune") or {}).get("wall_time_s"),
            "finetune_epochs": (res.get("finetune") or {}).get("epochs", 0), "top1": res["top1"], "totals": res["totals"]}
    atomic_write_json(meta_path, meta)
    return out / "compressed.ckpt", meta


def _pipeline_compressed(rec: Recipe, ref_sha: str, rank_multiple: int, settings: Any) -> tuple[Path, dict[str, Any]] | None:
    """The compressed checkpoint of a finished `make export DEVICE=<bench device> RECIPE=<rec>`
    run made the same way from the same reference (pipeline/reuse.py decides)."""
    from edgeskel.pipeline.reuse import finished_compress

    found = finished_compress(rec, settings.device, ref_sha, rank_multiple)
    if found is None:
        return None
    run, comp = found
    ft = comp.get("finetune") or {}
    meta = {"model": rec.model.name, "recipe": rec.name, "width": rec.model.width, "data": rec.data.spec,
            "params_before": comp["totals"]["params_before"], "params_after": comp["totals"]["params_after"],
            "wall_time_s": run.manifest["stages"]["compress"].get("wall_time_s"),
            "finetune_wall_time_s": ft.get("wall_time_s"), "finetune_epochs": ft.get("epochs", 0),
            "top1": comp["top1"], "totals": comp["totals"], "selection": comp.get("selection"),
            "source": f"pipeline run {run.root}"}
    return run.root / "compress" / "compressed.ckpt", meta


def pipeline_export_dir(prep: Prepared, profile: DeviceProfile) -> Path | None:
    """The export folder of the finished pipeline run that made `prep`'s compressed model, if
    its export stage is up to date for this profile and recipe and used the same arrays."""
    from edgeskel.pipeline import export_stage_inputs
    from edgeskel.pipeline.reuse import finished_run

    run = finished_run(prep.recipe.name, profile.name)
    if run is None or prep.compressed_ckpt != run.root / "compress" / "compressed.ckpt":
        return None
    expected = sha256_json(export_stage_inputs(profile, prep.recipe, prep.compressed_ckpt, run.output_hash("data")))
    if run.stage_done("export", expected) is None:
        return None
    try:
        same = all(np.array_equal(np.load(run.root / "data" / f"{f}.npy"), getattr(prep, k))
                   for f, k in (("calib_x", "calib_x"), ("test_x", "val_x"), ("test_y", "val_y")))
    except (OSError, ValueError):
        return None
    return run.root / "export" if same else None


def prepare_model(model: str, settings: Any, rank_multiple: int, log: Any) -> Prepared:
    """Reference + compressed model + validation/calibration arrays for one model."""
    from edgeskel.checkpoint import load_checkpoint
    from edgeskel.pipeline import steps

    rec = bench_recipe(model, settings)
    dataset = steps.load_data(rec)
    ref_ckpt, ref_info = reference_checkpoint(model, rec, dataset, settings, log)
    _, spec, _ = load_checkpoint(ref_ckpt)
    arrays = steps.split_arrays(dataset, spec.preprocess, rec.export.calib_samples, settings.val_samples)
    ref_sha = ref_info.get("sha256") or sha256_file(ref_ckpt)
    if rec.compress is None:  # e.g. tune recommended no compression: edgeskel's exports of the reference itself
        comp_ckpt, comp = ref_ckpt, _uncompressed_info(model, rec, ref_ckpt, arrays)
    else:
        comp_ckpt, comp = compressed_checkpoint(model, rec, dataset, ref_ckpt, ref_sha, arrays, rank_multiple, settings, log)
    # The bench's accuracy columns are test-split numbers (selection inside compress used validation).
    return Prepared(model, rec, dataset, ref_ckpt, ref_info, comp_ckpt, comp, arrays["test_x"], arrays["test_y"], arrays["calib_x"],
                    arrays["val_x"], arrays["val_y"])


def _uncompressed_info(model: str, rec: Recipe, ref_ckpt: Path, arrays: dict[str, np.ndarray]) -> dict[str, Any]:
    """The 'compressed' columns of a recipe without `compress:`: the reference, unchanged."""
    from edgeskel.checkpoint import load_checkpoint
    from edgeskel.models.profile import count_params
    from edgeskel.train.metrics import accuracy_summary, predict_logits

    ref, _, _ = load_checkpoint(ref_ckpt)
    n = count_params(ref)
    top1 = {k: accuracy_summary(predict_logits(ref, arrays[f"{k}_x"]), arrays[f"{k}_y"])["top1"] for k in ("val", "test")}
    return {"model": model, "recipe": rec.name, "width": rec.model.width, "data": rec.data.spec, "params_before": n,
            "params_after": n, "wall_time_s": 0.0, "finetune_wall_time_s": None, "finetune_epochs": 0,
            "top1": {"reference": top1["test"], "deployed": top1["test"], "validation": top1["val"]},
            "totals": {"params_before": n, "params_after": n},
            "selection": {"split": "validation", "deployed": "uncompressed",
                          "why": f"recipe {rec.name} has no compress: section (no compression)"}}


def arrays_at_frames(dataset: Any, pre: Any, frames: int, n_val: int, n_calib: int) -> tuple[np.ndarray, np.ndarray]:
    """A few test (timing input) and train (INT8 calibration) samples preprocessed at T=frames."""
    from edgeskel.data.types import SkeletonSet
    from edgeskel.train.api import prepare_arrays

    p = replace(pre, num_frames=int(frames))

    def head(split: Any, n: int) -> Any:
        k = min(n, len(split))
        return SkeletonSet(split.samples[:k], split.labels[:k], split.names[:k])

    vx, _ = prepare_arrays(head(dataset.test, n_val), dataset.layout, p, fixed=True)
    cx, _ = prepare_arrays(head(dataset.train, n_calib), dataset.layout, p, fixed=True)
    return vx, cx
