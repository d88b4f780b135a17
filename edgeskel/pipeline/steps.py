"""The pipeline's stages as plain functions (load -> compress -> fine-tune -> export ->
validate -> report). `edgeskel.pipeline.run_pipeline` chains them through a RunDir; the
`compress` CLI calls `compress_and_finetune` directly."""

from __future__ import annotations

import copy
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn as nn

from edgeskel.checkpoint import ModelSpec, Preprocess, load_checkpoint, save_checkpoint
from edgeskel.errors import ConfigError, EdgeskelError
from edgeskel.io import atomic_write_json
from edgeskel.pipeline.rundir import kill_point
from edgeskel.recipe import Recipe
from edgeskel.train import distributed as dist_
from edgeskel.train.config import TrainConfig
from edgeskel.train.device import Runtime
from edgeskel.train.metrics import accuracy_summary, predict_logits

if TYPE_CHECKING:
    from edgeskel.devices import DeviceProfile


# ------------------------------------------------------------------------------ data
def load_data(recipe: Recipe, layout: Any = None) -> Any:
    """The recipe's dataset, read in the layout the model was built for: an explicit one, the
    recipe's `data.layout`, else the one an edgeskel checkpoint carries (custom layouts travel
    with the model, so a recipe pointing at a checkpoint needs no layout file)."""
    from edgeskel.data import load_dataset
    from edgeskel.data.splits import requested_validation

    chosen = layout or recipe.data.layout
    spec = extra = None
    own = _own_checkpoint(recipe)
    if own is not None:
        _, spec, extra = load_checkpoint(own)
        chosen = chosen or spec.layout
    ds = load_dataset(recipe.data.spec, layout=chosen, skip_bad=recipe.data.skip_bad,
                      class_names=recipe.data.class_names)
    if spec is not None:  # never run a checkpoint on data it was not made for (no silent fallback)
        from edgeskel.train.api import check_compatible

        check_compatible(spec, ds, str(own), extra,
                         fix=f"pass --data SPEC for its dataset, or a recipe whose data.spec fits "
                             f"(recipe {recipe.name!r} reads {recipe.data.spec!r})")
    return requested_validation(ds, recipe.data.validation, recipe.data.validation_fraction)


def checkpoint_hash(recipe: Recipe) -> str | None:
    """The content hash of what the recipe starts from: its checkpoint, or an ensemble's stream
    checkpoints (an edited stream file re-runs the stages like an edited model.checkpoint)."""
    from edgeskel.io import sha256_file, sha256_json

    if recipe.model.checkpoint:
        return sha256_file(recipe.model.checkpoint)
    files = [s.checkpoint for s in recipe.model.streams or [] if s.checkpoint]
    return sha256_json([sha256_file(f) for f in files]) if files else None


def _own_checkpoint(recipe: Recipe) -> str | None:
    """The edgeskel checkpoint whose layout and preprocessing the recipe's data follow: the
    model's, or an ensemble's first stream given as an edgeskel checkpoint."""
    if recipe.model.has_edgeskel_checkpoint():
        return recipe.model.checkpoint
    from edgeskel.models.user import is_edgeskel_checkpoint

    for s in recipe.model.streams or []:
        if s.checkpoint and not s.import_from and is_edgeskel_checkpoint(s.checkpoint):
            return s.checkpoint
    return None


def recipe_preprocess(recipe: Recipe, dataset: Any) -> Preprocess:
    """The preprocessing the model takes: an edgeskel checkpoint's own (it travels with the
    model, like the layout), else the recipe's data settings. An ensemble takes raw joints."""
    from edgeskel.train.api import default_preprocess

    own = _own_checkpoint(recipe)
    if own is not None:
        pre = load_checkpoint(own)[1].preprocess
        return replace(pre, streams="joint") if recipe.model.streams else pre

    return default_preprocess(dataset, recipe.data.frames, recipe.data.persons, recipe.data.streams)


def split_arrays(dataset: Any, pre: Preprocess, calib_samples: int, val_cap: int | None, seed: int = 0) -> dict[str, np.ndarray]:
    """Honest splits as model inputs: `val_x/val_y` from the validation split (every selection:
    best epoch, factorized vs fine-tuned, INT8 gates), `test_x/test_y` from the test split (only
    the accuracy a report states), `calib_x` from the remaining training samples. `val_cap`
    caps both evaluation sets (a seeded subset)."""
    from edgeskel.data.splits import holdout
    from edgeskel.train.api import prepare_arrays

    split = holdout(dataset)
    out: dict[str, np.ndarray] = {}
    for key, part in (("val", split.val), ("test", dataset.test)):
        x, y = prepare_arrays(part, dataset.layout, pre, fixed=True)  # a native-rate model: zero frames after short clips
        if val_cap is not None and len(y) > val_cap:
            idx = np.sort(np.random.default_rng(seed).permutation(len(y))[:val_cap])
            x, y = x[idx], y[idx]
        out[f"{key}_x"], out[f"{key}_y"] = x, y
    # Only the calibration subset is preprocessed (same indices as preprocessing all of train and
    # slicing): at NTU-120 scale the whole training split would be ~2.4 GB at T=64 (docs/BENCHMARKS.md).
    n_train = len(split.train)
    rng = np.random.default_rng(seed + 1)
    idx = np.sort(rng.permutation(n_train)[: min(calib_samples, n_train)])
    out["calib_x"], _ = prepare_arrays(split.train.subset(idx), dataset.layout, pre, fixed=True)
    return out


def unlabelled_array(dataset: Any, pre: Preprocess, calib_samples: int, n: int, train_cfg: Any,
                     seed: int = 0) -> tuple[np.ndarray, dict[str, Any]]:
    """Up to `n` clips for the INT8 agreement gate (validate/agreement.py), never calibration or
    validation clips: first the training clips `split_arrays` did not take for calibration (same
    seeded permutation), then training-time views of training clips (the recipe's random crop,
    rotation and scaling; seeded) until `n`. Labels are not used."""
    from edgeskel.data.splits import holdout
    from edgeskel.data.torch_dataset import SkeletonTorchDataset
    from edgeskel.train.api import prepare_arrays

    split = holdout(dataset)
    n_train = len(split.train)
    perm = np.random.default_rng(seed + 1).permutation(n_train)  # split_arrays' calibration draw
    rest = np.sort(perm[min(calib_samples, n_train):][:n])
    parts, info = [], {"held_out_train": int(len(rest)), "augmented": 0}
    if len(rest):
        parts.append(prepare_arrays(split.train.subset(rest), dataset.layout, pre, fixed=True)[0])
    need = n - int(len(rest))
    if need > 0 and n_train:
        views = SkeletonTorchDataset(split.train, dataset.layout, pre, train=True, seed=seed + 7,
                                     rotate_deg=getattr(train_cfg, "rotate_deg", 0.0),
                                     scale_jitter=getattr(train_cfg, "scale_jitter", 0.0))
        order = np.random.default_rng(seed + 2).permutation(n_train)
        epoch, xs = 0, []
        while len(xs) < need:
            views.set_epoch(epoch)
            for i in order[: need - len(xs)]:
                xs.append(views[int(i)][0].numpy())
            epoch += 1
        parts.append(np.stack(xs).astype(np.float32))
        info["augmented"] = len(xs)
    x = np.concatenate(parts) if parts else np.zeros((0, *pre_shape(dataset, pre)), np.float32)
    return x, info


def pre_shape(dataset: Any, pre: Preprocess) -> tuple[int, int, int, int]:
    return (dataset.layout.channels, pre.num_frames, dataset.layout.num_joints, pre.num_person)


def holdout_names(dataset: Any) -> list[str]:
    """Sample names of the validation split the pipeline selects on (for checks and reports)."""
    from edgeskel.data.splits import holdout

    return list(holdout(dataset).val.names)


# ------------------------------------------------------------------------- reference
def reference_candidate(recipe: Recipe, dataset: Any) -> tuple[nn.Module, ModelSpec, dict[str, Any], str]:
    """(model, spec, extra, source) of the recipe's reference as far as it exists before
    training: the user's module with their weights, an imported official checkpoint, an edgeskel
    checkpoint, or else the recipe's architecture freshly initialised (source "untrained"). The
    reference stage trains the last; the fail-fast export check uses any of them as they are."""
    m = recipe.model
    if m.streams:
        return ensemble_reference(recipe, dataset)
    if m.entrypoint and m.checkpoint:  # the user's own module with their weights
        from edgeskel.importers.user import load_user_reference

        model, spec, extra = load_user_reference(m.entrypoint, m.kwargs, m.checkpoint, len(dataset.class_names),
                                                 dataset.layout, recipe_preprocess(recipe, dataset),
                                                 list(dataset.class_names))
        return model, spec, extra, f"user model ({m.entrypoint})"
    if m.checkpoint and m.import_from:
        from edgeskel.importers import import_official

        pre = recipe_preprocess(recipe, dataset)
        model, spec = import_official(m.import_from, m.checkpoint, m.name, dataset.layout,
                                      num_classes=len(dataset.class_names), num_person=None,
                                      class_names=list(dataset.class_names), preprocess=pre)
        return model, spec, {"imported_from": m.import_from}, f"imported ({m.import_from})"
    if m.checkpoint:
        model, spec, extra = load_checkpoint(m.checkpoint)
        return model, spec, extra, "checkpoint"
    from edgeskel import models

    pre = recipe_preprocess(recipe, dataset)
    kwargs = {"num_person": pre.num_person, **m.build_kwargs()}
    if m.width != 1.0:
        kwargs["width"] = m.width
    net = models.build(m.name, len(dataset.class_names), dataset.layout, **kwargs)
    spec = ModelSpec(name=m.name, num_classes=len(dataset.class_names), layout=dataset.layout, kwargs=kwargs,
                     class_names=list(dataset.class_names), preprocess=pre)
    if m.entrypoint:  # the user's module: one clear error now instead of a traceback mid-training
        from edgeskel.models.user import check_user_model

        check_user_model(net, spec.num_classes, spec.input_shape, f"entrypoint {m.entrypoint!r}")
    return net, spec, {}, "untrained"


def get_reference(recipe: Recipe, dataset: Any, out_dir: Path, quiet: bool = False,
                  runtime: Runtime | None = None) -> dict[str, Any]:
    """Produce `out_dir/reference.ckpt`: load an edgeskel checkpoint, import an official one,
    or train the recipe's model from scratch on the recipe's data (resumable). Under torchrun
    only rank 0 writes; the others wait for it at a barrier."""
    target = out_dir / "reference.ckpt"
    if recipe.model.streams:
        model, spec, extra, source = ensemble_reference(recipe, dataset, out_dir, train=True, quiet=quiet,
                                                        runtime=runtime)
        _save_on_main(target, model, spec, extra)
        return {"source": source, **{k: v for k, v in extra.items() if k == "trained_streams"}}
    if recipe.model.checkpoint:
        model, spec, extra, source = reference_candidate(recipe, dataset)
        _save_on_main(target, model, spec, extra)
        return {"source": source}
    from edgeskel.data.splits import holdout
    from edgeskel.data.torch_dataset import SkeletonTorchDataset
    from edgeskel.train.api import prepare_arrays
    from edgeskel.train.trainer import fit, seed_everything

    seed_everything(recipe.train.seed)  # before the weights are initialised
    net, spec, _, _ = reference_candidate(recipe, dataset)
    pre = spec.preprocess
    split = holdout(dataset)  # best epoch chosen on validation, never on test
    val = prepare_arrays(split.val, dataset.layout, pre)
    train_set = SkeletonTorchDataset.for_training(split.train, dataset.layout, pre, recipe.train)
    res = fit(net, spec, train_set, val, recipe.train, out_dir / "train", quiet=quiet,
              extra={"data": recipe.data.spec, "validation": split.info},
              on_epoch=lambda row: kill_point("reference", f"epoch_{row['epoch']}"), runtime=runtime)
    kill_point("reference", "after_train")
    model, spec, extra = load_checkpoint(res["best_checkpoint"])
    _save_on_main(target, model, spec, extra)
    return {"source": "trained", "best_epoch": res["best_epoch"], "train_wall_time_s": res["wall_time_s"]}


def ensemble_reference(recipe: Recipe, dataset: Any, out_dir: Path | None = None, train: bool = False,
                       quiet: bool = False, runtime: Runtime | None = None,
                       ) -> tuple[nn.Module, ModelSpec, dict[str, Any], str]:
    """The recipe's ensemble (`model.streams`): every stream loaded, imported or (train=True)
    trained here on its input view with the trainer every model uses, then assembled into one
    module (edgeskel/ensembles.py). train=False leaves streams to train untrained (the check stage)."""
    from edgeskel import models
    from edgeskel.ensembles import LoadedStream, StreamSpec, assemble, load_stream, stream_extra

    pre = recipe_preprocess(recipe, dataset)
    classes = list(dataset.class_names)
    loaded: list[LoadedStream] = []
    trained: dict[str, Any] = {}
    for i, s in enumerate(recipe.model.streams or []):
        if s.checkpoint:
            loaded.append(load_stream(StreamSpec(s.checkpoint, s.name, s.input, s.weight, s.import_from, s.model), i,
                                      layout=dataset.layout, preprocess=replace(pre, streams=s.input or "joint"),
                                      class_names=classes))
            continue
        view_pre = replace(pre, streams=s.input)
        name = s.name or s.input
        kwargs = {"num_person": pre.num_person, **s.kwargs}
        if s.width != 1.0:
            kwargs["width"] = s.width
        cfg = s.train_config(recipe.train)
        if train:
            from edgeskel.train.trainer import seed_everything

            seed_everything(cfg.seed)
        net = models.build(s.model, len(classes), dataset.layout, **kwargs)
        spec = ModelSpec(name=s.model, num_classes=len(classes), layout=dataset.layout, kwargs=kwargs,
                         class_names=classes, preprocess=view_pre)
        origin = f"model.streams[{i}] ({name}, untrained)"
        if train:
            from edgeskel.data.splits import holdout
            from edgeskel.data.torch_dataset import SkeletonTorchDataset
            from edgeskel.train.api import prepare_arrays
            from edgeskel.train.trainer import fit

            assert out_dir is not None
            split = holdout(dataset)
            val = prepare_arrays(split.val, dataset.layout, view_pre)
            train_set = SkeletonTorchDataset.for_training(split.train, dataset.layout, view_pre, cfg)
            res = fit(net, spec, train_set, val, cfg, out_dir / f"train-{name}", quiet=quiet,
                      extra={"data": recipe.data.spec, "validation": split.info},
                      on_epoch=lambda row, n=name: kill_point("reference", f"{n}_epoch_{row['epoch']}"),
                      runtime=runtime)
            net, spec, _ = load_checkpoint(res["best_checkpoint"])
            origin = str(res["best_checkpoint"])
            trained[name] = {"best_epoch": res["best_epoch"], "train_wall_time_s": res["wall_time_s"]}
        loaded.append(LoadedStream(name, s.input, s.weight, net, spec, None, origin))
    net, spec = assemble(loaded, fusion=recipe.model.fusion, preprocess=pre)
    extra: dict[str, Any] = {"data": recipe.data.spec, **stream_extra(loaded)}
    if trained:
        extra["trained_streams"] = trained
    names = ", ".join(f"{s.name}={s.view}" for s in loaded)
    return net, spec, extra, f"ensemble ({names})"


def export_check(recipe: Recipe, dataset: Any, profile: DeviceProfile, out_dir: Path, where: str,
                 log: Any = None) -> dict[str, Any]:
    """The fail-fast stage: the reference as it exists before training (`reference_candidate`)
    exported and run once per backend route of the profile (export/check.py). A route that
    fails stops the run here with one error naming the op and the fix, before any training."""
    from edgeskel.export.check import check_routes, format_check, profile_routes, raise_on_failure

    model, spec, _, source = reference_candidate(recipe, dataset)
    spec = apply_profile_input(spec, profile)
    summary = check_routes(model, spec, profile_routes(profile, recipe.export.opset), out_dir)
    summary["source"] = source
    atomic_write_json(out_dir / "check.json", summary)
    if log is not None:
        for line in format_check(summary):
            log(line)
    raise_on_failure(summary, where)
    return {"outputs": ["check.json"], "passed": True,
            "routes": {k: {"status": r["status"], "einsum_rewritten": r.get("einsum_rewritten", [])}
                       for k, r in summary["routes"].items()}}


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
    runtime: Runtime | None = None,
    test: tuple[np.ndarray, np.ndarray] | None = None,
    latency: Any = None,
) -> dict[str, Any]:
    """Factorize the reference model per the recipe, fine-tune with distillation, and write
    `compressed.ckpt` (self-describing: carries its factorization plan) + `compression.json`.
    Under torchrun every rank factorizes (deterministic) and fine-tunes; rank 0 alone writes.

    `val_x/val_y` is the validation split: the best fine-tune epoch and the factorized-vs-
    fine-tuned choice are made on it. The fine-tuned model ships only if it beats the
    factorized one there (never deploy a worse model); `selection` says which shipped and why.
    `test`: the test split, for the top-1 numbers reported (else they are validation numbers).
    `latency`: the layer latency table of policy 'latency' (None: compress_model's host table)."""
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
    student, report = compress_model(copy.deepcopy(teacher), cfg, input_shape, calib, latency=latency)
    kill_point("compress", "after_factorize")
    top1_compressed = accuracy_summary(predict_logits(student, val_x), val_y)["top1"]
    factorized, tuned = student, None
    cspec = replace(spec, compression={"plan": report["plan"], "policy": report["policy"]})
    ft_cfg: TrainConfig | None = recipe.finetune
    top1_ft = top1_compressed
    ft_info: dict[str, Any] = {}
    if ft_cfg is not None and ft_cfg.epochs > 0:
        from edgeskel.data.splits import holdout
        from edgeskel.data.torch_dataset import SkeletonTorchDataset
        from edgeskel.train.trainer import fit

        factorized = copy.deepcopy(student)  # fit trains `student` in place
        train_set = SkeletonTorchDataset.for_training(holdout(dataset).train, dataset.layout, spec.preprocess, ft_cfg)
        res = fit(student, cspec, train_set, (val_x, val_y), ft_cfg, out_dir / "finetune", teacher=teacher,
                  quiet=quiet, extra={"stage": "finetune"},
                  on_epoch=lambda row: kill_point("compress", f"finetune_epoch_{row['epoch']}"), runtime=runtime)
        tuned, _, _ = load_checkpoint(res["best_checkpoint"])
        top1_ft = res["best_top1"]
        ft_info = {"best_epoch": res["best_epoch"], "wall_time_s": res["wall_time_s"], "epochs": ft_cfg.epochs,
                   "device": res["device"], "world_size": res["world_size"], "amp": res["amp"],
                   "epoch_train_s": [r.get("epoch_train_s") for r in res["history"]]}
        student = tuned if top1_ft > top1_compressed else factorized
    selection = deploy_choice(top1_compressed, top1_ft if ft_info else None)
    top1 = {"reference": top1_ref, "after_compression": top1_compressed, "after_finetune": top1_ft,
            "deployed": max(top1_compressed, top1_ft)}
    selection["top1_split"] = "validation"
    if test is not None:  # reported numbers: test split only; the choice above never saw it
        tx, ty = test
        models = {"reference": teacher, "after_compression": factorized, "after_finetune": tuned or factorized,
                  "deployed": student}
        top1 = {k: accuracy_summary(predict_logits(m, tx), ty)["top1"] for k, m in models.items()}
        selection["top1_split"] = "test"
    if not dist_.is_main():  # rank 0 writes compressed.ckpt + compression.json; wait for it
        dist_.barrier()
        return {"top1": top1, "totals": report["totals"], "finetune": ft_info, "selection": selection,
                "outputs": ["compressed.ckpt", "compression.json"]}
    save_checkpoint(out_dir / "compressed.ckpt", student, cspec, extra={"stage": "compressed", "selection": selection})
    summary = {
        "recipe": recipe.name,
        "top1": top1,
        "selection": selection,
        "totals": report["totals"],
        "policy": report["policy"],
        "budget": report["budget"],
        "latency": report["latency"],  # policy 'latency': where the layer table was timed, cache hits, versions
        "finetune": ft_info,
        "layers": report["layers"],
    }
    atomic_write_json(out_dir / "compression.json", summary)
    dist_.barrier()
    return ({k: summary[k] for k in ("top1", "totals", "finetune", "selection")}
            | {"ranks": ranks_summary(report), "outputs": ["compressed.ckpt", "compression.json"]})


def ranks_summary(report: dict[str, Any]) -> dict[str, Any]:
    """How the ranks were chosen, for the report: the policy and, for 'latency', where its layer
    table was timed (this host or the SSH device), how much it measured and which layers stayed dense."""
    out: dict[str, Any] = {"policy": report["policy"]["policy"]}
    lat = report.get("latency")
    if lat:
        table = lat.get("table") or {}
        where = {"device": (table.get("versions") or {}).get("device"), "runtime": "this host"}.get(table.get("timer"))
        out.update(timed_on=where or table.get("timer"), backend=table.get("backend"), measured=table.get("measured"),
                   cache_hits=table.get("cache_hits"), kept_dense=lat.get("kept_dense") or [])
    return out


def deploy_choice(top1_factorized_val: float, top1_finetuned_val: float | None) -> dict[str, Any]:
    """Which compressed model ships: the fine-tuned one only if it beats the factorized one on
    the validation split (a tie keeps the factorized one: no gain, no reason to change)."""
    sel: dict[str, Any] = {"split": "validation", "top1_factorized": top1_factorized_val,
                           "top1_finetuned": top1_finetuned_val}
    if top1_finetuned_val is None:
        return sel | {"deployed": "factorized", "note": "no fine-tuning in the recipe"}
    if top1_finetuned_val > top1_factorized_val:
        return sel | {"deployed": "fine-tuned", "note": "fine-tuning improved validation top-1 "
                      f"{top1_factorized_val:.2f} -> {top1_finetuned_val:.2f}"}
    return sel | {"deployed": "factorized", "note": f"fine-tuning did not beat the factorized model on validation "
                  f"({top1_finetuned_val:.2f} vs {top1_factorized_val:.2f}); the factorized model is deployed"}


# ------------------------------------------------------------------------- helpers
def _save_on_main(target: Path, model: nn.Module, spec: ModelSpec, extra: dict[str, Any] | None) -> None:
    """Under torchrun rank 0 writes the checkpoint and the other ranks wait until it exists."""
    if dist_.is_main():
        save_checkpoint(target, model, spec, extra=extra)
    dist_.barrier()


def apply_profile_input(spec: ModelSpec, profile: DeviceProfile) -> ModelSpec:
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


def ensemble_accuracy(model: nn.Module, x: np.ndarray, y: np.ndarray, batch: int = 64) -> dict[str, Any] | None:
    """Per-stream and fused top-1 (%) of an ensemble (None for any other model): what the
    report shows beside the fused numbers, and the fused gain over the best single stream."""
    from edgeskel.models.ensemble import Ensemble

    if not isinstance(model, Ensemble) or not len(x):
        return None
    model = model.eval()
    per: list[list[np.ndarray]] = [[] for _ in model.names]
    fused = []
    with torch.no_grad():
        for i in range(0, len(x), batch):
            scores = model.stream_scores(torch.from_numpy(np.ascontiguousarray(x[i:i + batch], dtype=np.float32)))
            for k, sc in enumerate(scores):
                per[k].append(sc.numpy())
            fused.append(model.fuse(scores).numpy())
    top1 = {n: accuracy_summary(np.concatenate(p), y)["top1"] for n, p in zip(model.names, per, strict=True)}
    fused_top1 = accuracy_summary(np.concatenate(fused), y)["top1"]
    best = max(top1, key=lambda n: top1[n])
    return {"fusion": model.fusion, "fused_top1": fused_top1, "best_stream": best,
            "gain_over_best_stream": round(fused_top1 - top1[best], 3),
            "streams": [{"name": n, "input": v, "weight": w, "top1": top1[n]}
                        for n, v, w in zip(model.names, model.views, model.weights, strict=True)]}


def safe_call(fn: Any, *args: Any, **kwargs: Any) -> tuple[Any, str | None]:
    """Run one variant's work; a user-facing error marks that variant instead of aborting the run."""
    try:
        return fn(*args, **kwargs), None
    except EdgeskelError as exc:
        return None, str(exc)
