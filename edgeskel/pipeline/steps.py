"""The pipeline's stages as plain functions (load -> compress -> fine-tune -> export ->
validate -> report). `edgeskel.pipeline.run_pipeline` chains them through a RunDir; the
`compress` CLI calls `compress_and_finetune` directly."""

from __future__ import annotations

import copy
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from edgeskel.checkpoint import ModelSpec, Preprocess, load_checkpoint, save_checkpoint
from edgeskel.errors import ConfigError, EdgeskelError
from edgeskel.io import atomic_write_json
from edgeskel.pipeline.rundir import kill_point
from edgeskel.recipe import Recipe
from edgeskel.train.config import TrainConfig
from edgeskel.train.metrics import accuracy_summary, predict_logits


# ------------------------------------------------------------------------------ data
def load_data(recipe: Recipe, layout: str | None = None) -> Any:
    from edgeskel.data import load_dataset

    return load_dataset(recipe.data.spec, layout=layout or recipe.data.layout, skip_bad=recipe.data.skip_bad)


def recipe_preprocess(recipe: Recipe, dataset: Any) -> Preprocess:
    from edgeskel.train.api import default_preprocess

    return default_preprocess(dataset, recipe.data.frames, recipe.data.persons, recipe.data.streams)


def split_arrays(dataset: Any, pre: Preprocess, calib_samples: int, val_cap: int | None, seed: int = 0) -> dict[str, np.ndarray]:
    """Validation arrays (test split) and a calibration subset of the training split."""
    from edgeskel.train.api import prepare_arrays

    val_x, val_y = prepare_arrays(dataset.test, dataset.layout, pre)
    if val_cap is not None and len(val_y) > val_cap:
        idx = np.random.default_rng(seed).permutation(len(val_y))[:val_cap]
        val_x, val_y = val_x[np.sort(idx)], val_y[np.sort(idx)]
    tr_x, _ = prepare_arrays(dataset.train, dataset.layout, pre)
    rng = np.random.default_rng(seed + 1)
    idx = np.sort(rng.permutation(len(tr_x))[: min(calib_samples, len(tr_x))])
    return {"val_x": val_x, "val_y": val_y, "calib_x": tr_x[idx]}


# ------------------------------------------------------------------------- reference
def get_reference(recipe: Recipe, dataset: Any, out_dir: Path, quiet: bool = False) -> dict[str, Any]:
    """Produce `out_dir/reference.ckpt`: load an edgeskel checkpoint, import an official one,
    or train the recipe's model from scratch on the recipe's data (resumable)."""
    m = recipe.model
    target = out_dir / "reference.ckpt"
    if m.checkpoint and m.import_from:
        from edgeskel.models.importers import import_official

        pre = recipe_preprocess(recipe, dataset)
        model, spec = import_official(m.import_from, m.checkpoint, m.name, dataset.layout,
                                      num_classes=len(dataset.class_names), num_person=None,
                                      class_names=list(dataset.class_names), preprocess=pre)
        save_checkpoint(target, model, spec, extra={"imported_from": m.import_from})
        return {"source": f"imported ({m.import_from})"}
    if m.checkpoint:
        model, spec, extra = load_checkpoint(m.checkpoint)
        save_checkpoint(target, model, spec, extra=extra)
        return {"source": "checkpoint"}
    from edgeskel import models
    from edgeskel.data.torch_dataset import SkeletonTorchDataset
    from edgeskel.train.api import prepare_arrays
    from edgeskel.train.trainer import fit, seed_everything

    pre = recipe_preprocess(recipe, dataset)
    kwargs = {"num_person": pre.num_person, **m.kwargs}
    if m.width != 1.0:
        kwargs["width"] = m.width
    seed_everything(recipe.train.seed)
    net = models.build(m.name, len(dataset.class_names), dataset.layout, **kwargs)
    spec = ModelSpec(name=m.name, num_classes=len(dataset.class_names), layout=dataset.layout, kwargs=kwargs,
                     class_names=list(dataset.class_names), preprocess=pre)
    val = prepare_arrays(dataset.test, dataset.layout, pre)
    train_set = SkeletonTorchDataset(dataset.train, dataset.layout, pre, train=True, seed=recipe.train.seed)
    res = fit(net, spec, train_set, val, recipe.train, out_dir / "train", quiet=quiet, extra={"data": recipe.data.spec},
              on_epoch=lambda row: kill_point("reference", f"epoch_{row['epoch']}"))
    kill_point("reference", "after_train")
    model, spec, extra = load_checkpoint(res["best_checkpoint"])
    save_checkpoint(target, model, spec, extra=extra)
    return {"source": "trained", "best_epoch": res["best_epoch"], "train_wall_time_s": res["wall_time_s"]}


# ------------------------------------------------------------------ compress + tune
def compress_and_finetune(
    reference_ckpt: Path,
    recipe: Recipe,
    dataset: Any,
    val_x: np.ndarray,
    val_y: np.ndarray,
    calib_x: np.ndarray,
    out_dir: Path,
    rank_multiple: int | None = None,
    quiet: bool = False,
) -> dict[str, Any]:
    """Factorize the reference model per the recipe, fine-tune with distillation, and write
    `compressed.ckpt` (self-describing: carries its factorization plan) + `compression.json`."""
    from edgeskel.compress import compress_model

    if recipe.compress is None:
        raise ConfigError(f"recipe {recipe.name!r} has no `compress:` section")
    teacher, spec, _ = load_checkpoint(reference_ckpt)
    cfg = recipe.compress
    if rank_multiple is not None:
        cfg = cfg.model_copy(update={"rank_multiple": rank_multiple})
    top1_ref = accuracy_summary(predict_logits(teacher, val_x), val_y)["top1"]
    calib = [torch.from_numpy(calib_x[i : i + 16]) for i in range(0, min(len(calib_x), 16 * cfg.calib_batches), 16)]
    input_shape = (1, *spec.input_shape)
    student, report = compress_model(copy.deepcopy(teacher), cfg, input_shape, calib)
    kill_point("compress", "after_factorize")
    top1_compressed = accuracy_summary(predict_logits(student, val_x), val_y)["top1"]
    cspec = replace(spec, compression={"plan": report["plan"], "policy": report["policy"]})
    ft_cfg: TrainConfig | None = recipe.finetune
    top1_ft = top1_compressed
    ft_info: dict[str, Any] = {}
    if ft_cfg is not None and ft_cfg.epochs > 0:
        from edgeskel.data.torch_dataset import SkeletonTorchDataset
        from edgeskel.train.trainer import fit

        train_set = SkeletonTorchDataset(dataset.train, dataset.layout, spec.preprocess, train=True, seed=ft_cfg.seed)
        res = fit(student, cspec, train_set, (val_x, val_y), ft_cfg, out_dir / "finetune", teacher=teacher,
                  quiet=quiet, extra={"stage": "finetune"},
                  on_epoch=lambda row: kill_point("compress", f"finetune_epoch_{row['epoch']}"))
        student, _, _ = load_checkpoint(res["best_checkpoint"])
        top1_ft = res["best_top1"]
        ft_info = {"best_epoch": res["best_epoch"], "wall_time_s": res["wall_time_s"], "epochs": ft_cfg.epochs}
    save_checkpoint(out_dir / "compressed.ckpt", student, cspec, extra={"stage": "compressed"})
    summary = {
        "recipe": recipe.name,
        "top1": {"reference": top1_ref, "after_compression": top1_compressed, "after_finetune": top1_ft},
        "totals": report["totals"],
        "policy": report["policy"],
        "finetune": ft_info,
        "layers": report["layers"],
    }
    atomic_write_json(out_dir / "compression.json", summary)
    return {k: summary[k] for k in ("top1", "totals", "finetune")} | {"outputs": ["compressed.ckpt", "compression.json"]}


# ------------------------------------------------------------------------- helpers
def apply_profile_input(spec: ModelSpec, profile: Any) -> ModelSpec:
    """Device profiles may fix T or M; GCNs/transformers pool globally, so weights still fit."""
    pre = spec.preprocess
    t = profile.input.num_frames or pre.num_frames
    m = profile.input.num_person or pre.num_person
    if m != pre.num_person:
        raise ConfigError(f"device profile {profile.name!r} asks for {m} persons but the model was built for {pre.num_person}")
    return replace(spec, preprocess=replace(pre, num_frames=t))


def model_stats(model: nn.Module, spec: ModelSpec) -> dict[str, Any]:
    from edgeskel.models.profile import count_flops, count_params

    return {"params": count_params(model), "gflops": count_flops(model, (1, *spec.input_shape)) / 1e9}


def safe_call(fn: Any, *args: Any, **kwargs: Any) -> tuple[Any, str | None]:
    """Run one variant's work; a user-facing error marks that variant instead of aborting the run."""
    try:
        return fn(*args, **kwargs), None
    except EdgeskelError as exc:
        return None, str(exc)
