"""Python API behind `edgeskel train` and `edgeskel eval`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from edgeskel.checkpoint import ModelSpec, Preprocess, load_checkpoint
from edgeskel.errors import ConfigError, DataError
from edgeskel.train.config import TrainConfig
from edgeskel.train.device import Runtime, resolve_device
from edgeskel.train.metrics import accuracy_summary, predict_logits
from edgeskel.train.trainer import fit, seed_everything


def default_preprocess(dataset: Any, num_frames: int | None = None, num_person: int | None = None,
                       streams: str = "joint") -> Preprocess:
    """Preprocessing that fits a dataset: T from the median length (rounded to 8, 32..128),
    M = most persons seen in training (<= 2)."""
    samples = dataset.train.samples
    if num_frames is None:
        med = float(np.median([s.shape[1] for s in samples])) if samples else 64
        num_frames = int(min(128, max(32, round(med / 8) * 8)))
    if num_person is None:
        num_person = int(min(2, max((s.shape[3] for s in samples), default=1)))
    return Preprocess(num_frames=num_frames, num_person=num_person, streams=streams, center=True)


def prepare_arrays(split: Any, layout: Any, pre: Preprocess, fixed: bool = False) -> tuple[Any, np.ndarray]:
    """Deterministic eval-time preprocessing of a split to (N, C, T, V, M) + labels; at native
    rate a list of clips of their own lengths (each scored exactly as a stream ends it), unless
    `fixed`: then what a windowed T-frame graph gets (the last T frames, a shorter clip followed
    by zero frames), as exports, bundles and reports need one array."""
    from edgeskel.data.preprocess import preprocess_list, preprocess_set

    labels = np.asarray(split.labels, dtype=np.int64)
    if pre.native_rate and not fixed:
        return preprocess_list(split, layout, pre), labels
    return preprocess_set(split, layout, pre), labels


def train(
    model: str | None,
    data: str,
    out: str | Path,
    cfg: TrainConfig | None = None,
    layout: str | None = None,
    num_frames: int | None = None,
    num_person: int | None = None,
    streams: str = "joint",
    model_kwargs: dict[str, Any] | None = None,
    skip_bad: bool = False,
    resume: bool = True,
    quiet: bool = False,
    runtime: Runtime | None = None,
    class_names: str | Path | None = None,
    validation: str = "train",
    validation_fraction: float | None = None,
    native_rate: bool = False,
    upsample: int | None = None,
    init: str | Path | None = None,
    streamable: bool = False,
    remove_strides: bool = False,
    distill: float = 0.0,
    causal_form: str | None = None,
    teacher: str | Path | None = None,
) -> dict[str, Any]:
    """Train a registered model from scratch on a dataset spec; writes out/best.ckpt.
    `native_rate`: clips are windows of at most `num_frames` frames at the source's rate (for
    streams); `upsample`: with it, the network sees that many frames per source frame (linear,
    causal; num_frames counts network frames). `init`: start from this checkpoint's architecture and weights (a fine-tune; its
    preprocessing is kept unless `num_frames` / `native_rate` say otherwise). `streamable`:
    native rate, and the architecture's causal form where it has one (models' `causal_forms`,
    e.g. CTR-GCN's trailing-mean topology; same weights), so that it has a streaming form;
    `causal_form` picks one of the model's named forms (implies `streamable`; CTR-GCN: "trailing",
    "static"); a form with parameters of its own calibrates them from training clips.
    `remove_strides`: every temporal stride set to 1 (a stream decides every frame); recorded in
    the checkpoint (ModelSpec.strides_removed).
    `distill` (with `init`): weight of distillation from the `init` model as it is, frozen, fed
    each clip as IT was trained to see it (its own preprocessing, e.g. the whole clip resampled)
    while the student learns the new view (e.g. native-rate windows); `teacher`: distil from this
    checkpoint instead (e.g. a windowed model while a streaming form trains from scratch).
    `runtime` picks the device / mixed precision / loader workers (default: auto).
    `validation='test'` chooses the best epoch on a slice of the test split (the deployment
    domain) and reports test top-1 on the rest (edgeskel/data/splits.py)."""
    from edgeskel import models
    from edgeskel.data import load_dataset
    from edgeskel.data.torch_dataset import SkeletonTorchDataset

    cfg = cfg or TrainConfig()
    streamable = streamable or causal_form is not None
    native_rate = native_rate or streamable
    init_model = load_checkpoint(init) if init is not None else None
    if upsample not in (None, 1) and not native_rate and not (init_model is not None and init_model[1].preprocess.native_rate):
        raise ConfigError(f"--upsample {upsample} needs --native-rate (or --streamable): a resampled clip already has "
                          "--frames frames")
    if init_model is not None and layout is None:
        layout = init_model[1].layout
    ds = load_dataset(data, layout=layout, skip_bad=skip_bad, class_names=class_names)
    from edgeskel.data.splits import requested_validation

    ds = requested_validation(ds, validation, validation_fraction)
    seed_everything(cfg.seed)
    to_calibrate = None
    if init_model is not None:
        import dataclasses

        net, spec, init_extra = init_model
        check_compatible(spec, ds, str(init), init_extra)
        pre = dataclasses.replace(spec.preprocess, native_rate=native_rate or spec.preprocess.native_rate,
                                  num_frames=num_frames or spec.preprocess.num_frames,
                                  upsample=spec.preprocess.upsample if upsample is None else upsample)
        spec = dataclasses.replace(spec, preprocess=pre)
        model = spec.name
        causal = pick_causal_form(model, causal_form) if streamable else None
        if causal is not None and causal_form is None and current_causal_form(model, spec.kwargs, pre.num_frames):
            causal = None  # --streamable on a checkpoint already in a causal form: keep that form
        if causal is not None and spec.compression:
            raise ConfigError(f"{init}: --streamable needs the uncompressed checkpoint (the causal form is built "
                              "from the architecture; compress after fine-tuning)")
        if causal is not None:
            causal_net, kwargs = build_causal_form(net, spec, causal, pre.num_frames, str(init))
            if causal.calibrate is not None:
                to_calibrate = (causal.calibrate, causal_net, net)
            net, spec = causal_net, dataclasses.replace(spec, kwargs=kwargs)
    else:
        pre = default_preprocess(ds, num_frames, num_person, streams)
        if native_rate:
            pre = Preprocess(pre.num_frames, pre.num_person, pre.streams, pre.center, native_rate=True, upsample=upsample or 1)
        kwargs = {"num_person": pre.num_person, **(model_kwargs or {})}
        causal = pick_causal_form(model, causal_form) if streamable else None
        if causal is not None:
            kwargs = causal.kwargs(kwargs, pre.num_frames)
        net = models.build(model, len(ds.class_names), ds.layout, **kwargs)
        spec = ModelSpec(name=model, num_classes=len(ds.class_names), layout=ds.layout, kwargs=kwargs,
                         class_names=list(ds.class_names), preprocess=pre)
    if remove_strides and not spec.strides_removed:
        import dataclasses

        from edgeskel.models.temporal import remove_strides as without_strides

        net, spec = without_strides(net), dataclasses.replace(spec, strides_removed=True)
    # Honest splits: the best epoch is chosen on the validation split, top-1 is reported on test.
    from edgeskel.data.splits import holdout

    split = holdout(ds)
    if to_calibrate is not None:
        calibrate, causal_net, windowed_net = to_calibrate
        calibrate(causal_net, windowed_net, calibration_clips(split.train, ds.layout, pre))
    val = prepare_arrays(split.val, ds.layout, pre)
    train_set = SkeletonTorchDataset.for_training(split.train, ds.layout, pre, cfg)
    teacher_path = teacher if teacher is not None else init
    if teacher is not None and distill <= 0:
        raise ConfigError("--teacher needs --distill WEIGHT (how much of the loss the teacher's answers are)")
    teacher_net = None
    if distill > 0:
        if teacher_path is None:
            raise ConfigError("--distill needs --init CHECKPOINT (the teacher is that checkpoint as it is) "
                              "or --teacher CHECKPOINT")
        teacher_net, t_spec, t_extra = load_checkpoint(teacher_path)
        check_compatible(t_spec, ds, str(teacher_path), t_extra, fix="give a teacher trained on this data")
        train_set.teacher_cfg = t_spec.preprocess
        cfg = cfg.model_copy(update={"kd_weight": float(distill)})
    result = fit(net, spec, train_set, val, cfg, out, resume=resume, quiet=quiet, teacher=teacher_net,
                 extra={"data": data, "dataset_info": ds.info, "validation": split.info,
                        **({"init": str(init)} if init is not None else {}),
                        **({"distill": {"weight": float(distill), "teacher": str(teacher_path),
                                        "teacher_view": train_set.teacher_cfg.to_dict()}} if teacher_net is not None else {})},
                 runtime=runtime)
    best, _, _ = load_checkpoint(result["best_checkpoint"])
    test_x, test_y = prepare_arrays(ds.test, ds.layout, pre)
    result.update({"model": model, "data": data, "num_classes": len(ds.class_names),
                   "preprocess": pre.to_dict(), "skipped": len(ds.skipped), "validation": split.info,
                   "val_top1": result["best_top1"], "test_top1": accuracy_summary(predict_logits(best, test_x), test_y)["top1"]})
    return result


def pick_causal_form(model: str, name: str | None) -> Any:
    """The model's causal form `name` (None: its default, or None if it is causal as it is)."""
    from edgeskel import models

    forms = models.model_entry(model).causal_forms
    if name is None:
        return next(iter(forms.values()), None)
    if name not in forms:
        have = f"its forms: {sorted(forms)}" if forms else "it has none (it streams as trained, or not at all)"
        raise ConfigError(f"--causal-form {name!r}: model {model!r} has no such causal form; {have}")
    return forms[name]


def current_causal_form(model: str, kwargs: dict[str, Any], num_frames: int) -> str | None:
    """The name of the causal form a checkpoint's kwargs are already in (None: windowed)."""
    from edgeskel import models

    for name, form in models.model_entry(model).causal_forms.items():
        if form.kwargs(dict(kwargs), num_frames) == dict(kwargs):
            return name
    return None


def build_causal_form(windowed_net: torch.nn.Module, spec: ModelSpec, form: Any, num_frames: int,
                      source: str) -> tuple[torch.nn.Module, dict[str, Any]]:
    """(the causal form of `spec`'s model with the windowed weights, its build kwargs); parameters
    of the form's own are left for `form.calibrate`."""
    from edgeskel import models

    kwargs = form.kwargs(dict(spec.kwargs), num_frames)
    causal_net = models.build(spec.name, spec.num_classes, spec.layout, **kwargs)
    load_causal_weights(causal_net, windowed_net, form, source)  # same parameters, causal forward
    return causal_net, kwargs


def load_causal_weights(causal_net: torch.nn.Module, windowed_net: torch.nn.Module, form: Any, source: str) -> None:
    """The windowed weights into the causal form: every parameter must match, except the ones
    the form calibrates itself (missing from the windowed model)."""
    missing, unexpected = causal_net.load_state_dict(windowed_net.state_dict(), strict=False)
    if unexpected or (missing and form.calibrate is None):
        raise ConfigError(f"{source}: the causal form does not fit the checkpoint's weights "
                          f"(missing {missing[:3]}, unexpected {unexpected[:3]})")


def calibration_clips(split: Any, layout: Any, pre: Preprocess, limit: int = 256) -> list[torch.Tensor]:
    """Up to `limit` training clips spread over the split, one (1, C, T, V, M) tensor each, as
    the fine-tune will see them (eval preprocessing: no augmentation)."""
    from edgeskel.data.preprocess import preprocess_list

    n = len(split.samples)
    idx = np.unique(np.linspace(0, n - 1, num=min(n, limit)).round().astype(int)) if n else []
    return [torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).unsqueeze(0)
            for x in preprocess_list(split.subset(idx), layout, pre)]


def evaluate(checkpoint: str | Path, data: str, skip_bad: bool = False, batch_size: int = 64,
             split: str = "test", device: str = "auto") -> dict[str, Any]:
    """top-1/top-5 (percent) of a checkpoint on a dataset split, using the checkpoint's preprocessing."""
    from edgeskel.data import load_dataset

    model, spec, extra = load_checkpoint(checkpoint)
    if split not in ("train", "val", "test"):
        raise ConfigError(f"unknown split {split!r}; use train, val or test")
    # The checkpoint's own layout (custom ones included); only the asked split must exist.
    ds = load_dataset(data, layout=spec.layout, skip_bad=skip_bad, splits=(split,))
    check_compatible(spec, ds, str(checkpoint), extra)
    carved = _validation_carved_from_test(extra)
    if carved is not None and split == "test" and ds.val is None:
        # the model's epoch was chosen on a slice of this test split: score only the rest
        from edgeskel.data.splits import carve_validation

        ds = carve_validation(ds, "test", carved["fraction"], carved["seed"])
    part = getattr(ds, split, None)
    if part is None:
        raise ConfigError(f"{data}: the data has no {split} split")
    x, y = prepare_arrays(part, spec.layout, spec.preprocess)
    dev = resolve_device(device)  # fp32 on every device, so the numbers do not depend on it
    with torch.inference_mode():
        logits = predict_logits(model.to(dev), x, batch_size, dev)
    res = accuracy_summary(logits, y)
    res["device"] = str(dev)
    res.update({"checkpoint": str(checkpoint), "data": data, "split": split})
    if carved is not None and split == "test":
        res["excluded_validation_samples"] = len(ds.val) if ds.val is not None else 0
    return res


def _validation_carved_from_test(extra: dict[str, Any]) -> dict[str, Any] | None:
    """The (fraction, seed) of a validation split the checkpoint's training carved from test."""
    from edgeskel.data.splits import FROM_TEST

    info = (extra or {}).get("validation") or {}
    if info.get("source") == FROM_TEST:
        return {"fraction": float(info["fraction"]), "seed": int(info["seed"])}
    return None


def check_compatible(spec: ModelSpec, ds: Any, source: str, extra: dict[str, Any] | None = None,
                     fix: str = "pass the data it was made for with --data SPEC") -> None:
    """A dataset must match the checkpoint's joints, channels and class count: one error that
    says both sides and what to pass (a 60-class NTU checkpoint once ran on the 12-class
    synthetic default and reported top-1 0.0, or ended in a cross_entropy IndexError)."""
    problems = []
    if ds.layout.num_joints != spec.layout.num_joints or ds.layout.channels != spec.layout.channels:
        problems.append(f"{ds.layout.num_joints} joints x {ds.layout.channels} channels, the model "
                        f"{spec.layout.num_joints} x {spec.layout.channels} ({spec.layout.name})")
    if len(ds.class_names) != spec.num_classes:
        problems.append(f"{len(ds.class_names)} classes, the model {spec.num_classes}")
    if not problems:
        return
    trained_on = (extra or {}).get("data")
    hint = f" (it was trained on {trained_on!r})" if isinstance(trained_on, str) and trained_on != ds.spec else ""
    raise DataError(source, f"checkpoint does not fit dataset {ds.spec!r}: the data has "
                            f"{'; and '.join(problems)}; {fix}{hint}")


def _builtin() -> set[str]:
    from edgeskel.layouts import BUILTIN_LAYOUTS

    return set(BUILTIN_LAYOUTS)
