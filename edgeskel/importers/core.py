"""The generic import flow shared by every source (see `base.py` for the adapter contract).

Detect the source and model from the keys, map keys, read sizes from shapes, resolve the
layout, build, verify stored fixed graphs, load strictly. User options (`source`, `model`,
`layout`, `num_classes`, `num_person`) only override or are checked against what was found.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from edgeskel.checkpoint import ModelSpec, Preprocess, load_state_strict
from edgeskel.errors import CheckpointError, ConfigError
from edgeskel.importers.base import ImporterAdapter, RawCheckpoint, all_importers, get_importer
from edgeskel.importers.known import identify
from edgeskel.layouts import BUILTIN_LAYOUTS, SkeletonLayout, get_layout
from edgeskel.models.registry import build
from edgeskel.weights import read_checkpoint


def detect(ckpt: RawCheckpoint, source: str | None = None) -> tuple[ImporterAdapter, str]:
    """(adapter, model) for a checkpoint: the named source, or the one adapter whose keys match."""
    if source is not None:
        adapter = get_importer(source)
        model = _safe_detect(adapter, ckpt)
        if model is None:
            others = [f"{a.source} -> {m}" for a in all_importers() if (m := _safe_detect(a, ckpt)) is not None]
            hint = f"; it looks like {', '.join(others)}" if others else ""
            raise CheckpointError(f"{ckpt.where}: the keys are not those of a {source} checkpoint "
                                  f"({', '.join(adapter.models)}){hint}; {_describe(ckpt)}")
        return adapter, model
    found = [(a, m) for a in all_importers() if (m := _safe_detect(a, ckpt)) is not None]
    if len(found) == 1:
        return found[0]
    if len(found) > 1:
        names = ", ".join(f"{a.source} -> {m}" for a, m in found)
        raise CheckpointError(f"{ckpt.where}: the keys match several sources ({names}); pass --from to choose")
    arch = identify(set(ckpt.state))
    if arch:
        raise CheckpointError(
            f"{ckpt.where}: this is {arch}, an architecture edgeskel does not import yet. "
            f"Supported sources: {_sources_line()}")
    raise CheckpointError(f"{ckpt.where}: no importer recognises this checkpoint ({_describe(ckpt)}). "
                          f"Supported sources: {_sources_line()}")


def _safe_detect(adapter: ImporterAdapter, ckpt: RawCheckpoint) -> str | None:
    try:
        return adapter.detect(ckpt)
    except Exception:  # noqa: BLE001 - a detector bug must not hide the other sources
        return None


def _describe(ckpt: RawCheckpoint) -> str:
    keys = sorted(ckpt.state)
    return f"{ckpt.format} file, {len(keys)} tensors, keys like {keys[:4]}"


def _sources_line() -> str:
    return "; ".join(f"{a.source} ({', '.join(a.models)})" for a in all_importers())


def resolve_layout(layout: str | SkeletonLayout | None, num_joints: int, where: str,
                   graph_fit: Callable[[SkeletonLayout], float] | None = None) -> SkeletonLayout:
    """The user's layout (checked against the joint count), else the built-in layout with that
    many joints. Where several have that count, the one whose graph is closest to the graphs
    stored in the checkpoint (`graph_fit`, lower is closer) wins; without a clear winner, the
    default for that count (the last one listed, as for data)."""
    if layout is not None:
        lay = get_layout(layout)
        if lay.num_joints != num_joints:
            raise CheckpointError(f"{where}: the checkpoint is for {num_joints} joints but layout {lay.name!r} "
                                  f"has {lay.num_joints}: wrong layout or wrong model?")
        return lay
    cands = [lay for lay in BUILTIN_LAYOUTS.values() if lay.num_joints == num_joints]
    if not cands:
        raise CheckpointError(f"{where}: the checkpoint is for {num_joints} joints and no built-in layout has "
                              f"that many ({', '.join(f'{k} ({v.num_joints})' for k, v in BUILTIN_LAYOUTS.items())}); "
                              "pass --layout with a layout YAML file")
    if len(cands) > 1 and graph_fit is not None:
        scores = sorted((graph_fit(lay), i) for i, lay in enumerate(cands))
        if scores[0][0] < 0.5 * scores[1][0]:
            return cands[scores[0][1]]
    return cands[-1]


def _graph_distance(adapter: ImporterAdapter, model: str, inf: Any, persons: int,
                    state: dict[str, torch.Tensor]) -> Callable[[SkeletonLayout], float]:
    """Squared distance between the graphs (`A`/`PA` tensors) in the checkpoint and those our
    model builds for a layout: learned graphs start from the layout's graph and stay close."""
    def fit(lay: SkeletonLayout) -> float:
        try:
            net = build(model, inf.num_classes, lay, **{**inf.kwargs, **adapter.graph_kwargs(model, lay),
                                                       "num_person": persons})
        except Exception:  # noqa: BLE001 - a layout the model cannot be built for fits nothing
            return float("inf")
        total = 0.0
        for k, ours in net.state_dict().items():
            theirs = state.get(k)
            if k.rsplit(".", 1)[-1] in ("A", "PA") and theirs is not None and theirs.shape == ours.shape \
                    and theirs.is_floating_point():
                total += float(((theirs.float() - ours.float()) ** 2).sum())
        return total
    return fit


def import_checkpoint(
    path: str | Path,
    source: str | None = None,
    model: str | None = None,
    layout: str | SkeletonLayout | None = None,
    num_classes: int | None = None,
    num_person: int | None = None,
    class_names: list[str] | None = None,
    preprocess: Preprocess | None = None,
) -> tuple[nn.Module, ModelSpec, dict[str, Any]]:
    """Import a checkpoint written by another code base. Returns (model in eval mode, spec,
    info) where info says what was detected (source, model, format)."""
    ckpt = read_checkpoint(path)
    where = ckpt.where
    adapter, found_model = detect(ckpt, source)
    if model is not None and model != found_model:
        if model not in adapter.models:
            raise ConfigError(f"source {adapter.source!r} provides models {list(adapter.models)}, not {model!r}")
        found_model = model
    model = found_model
    state = adapter.map_keys(ckpt, model)
    if ckpt.framework == "paddle":
        state = paddle_linear_to_torch(state)
    inf = adapter.infer(state, model, where)

    if num_classes is not None and num_classes != inf.num_classes:
        raise CheckpointError(f"{where}: checkpoint classifier has {inf.num_classes} classes, but "
                              f"--num-classes {num_classes} was given")
    if inf.num_person is not None and num_person is not None and num_person != inf.num_person:
        raise CheckpointError(f"{where}: data_bn is sized for {inf.num_person} person(s), but --num-person "
                              f"{num_person} was given")
    # weights that do not store M (PYSKL "VC" data_bn) take the caller's, else PYSKL's default 2
    persons = inf.num_person or num_person or (preprocess.num_person if preprocess is not None else 2)
    if persons < 1:
        raise ConfigError(f"num_person must be >= 1, got {persons}")
    lay = resolve_layout(layout, inf.num_joints, where, _graph_distance(adapter, model, inf, persons, state))
    if inf.in_channels != lay.channels:
        if layout is not None or inf.in_channels not in (2, 3):
            raise CheckpointError(f"{where}: checkpoint takes {inf.in_channels} input channels but layout "
                                  f"{lay.name!r} has {lay.channels}")
        # e.g. PYSKL's 2-D COCO models take (x, y, score): the detected layout, with the
        # checkpoint's channel count (a user-given layout is never changed)
        lay = dataclasses.replace(lay, channels=inf.in_channels,
                                  description=f"{lay.description} ({inf.in_channels} channels, as the checkpoint)")

    kwargs = {**inf.kwargs, **adapter.graph_kwargs(model, lay), "num_person": persons}
    try:
        net = build(model, inf.num_classes, lay, **kwargs)
    except (ValueError, TypeError, RuntimeError) as exc:
        raise CheckpointError(f"{where}: the sizes read from the checkpoint do not build {model}: {exc}") from None
    label = f"{where} ({adapter.source} -> {model})"
    check_fixed_graphs(net, state, lay, label)
    adapter.check(net, state, model, where)
    if ckpt.framework == "paddle":
        state = paddle_untranspose_non_linear(net, state)
    state = fill_batch_counters(net, state)
    load_state_strict(net, state, source=label)
    net.eval()

    if class_names is not None and len(class_names) != inf.num_classes:
        raise ConfigError(f"{len(class_names)} class names given for {inf.num_classes} classes")
    if preprocess is None:
        preprocess = Preprocess(num_frames=64, num_person=persons)
    elif preprocess.num_person != persons:
        raise ConfigError(f"preprocess.num_person {preprocess.num_person} does not match the model's {persons} person(s)")
    kwargs.pop("num_person")
    kwargs["num_person"] = persons
    spec = ModelSpec(name=model, num_classes=inf.num_classes, layout=lay, kwargs=kwargs,
                     class_names=list(class_names or []), preprocess=preprocess)
    info = {"source": adapter.source, "model": model, "format": ckpt.format, "framework": ckpt.framework,
            "ignored_objects": list(ckpt.ignored)}
    return net, spec, info


def check_fixed_graphs(net: nn.Module, state: dict[str, torch.Tensor], layout: SkeletonLayout, label: str) -> None:
    """Stored fixed graphs (buffers named `A`) must equal the graphs our model built for this
    layout, or the spec would describe a different model than the weights."""
    params = {k for k, _ in net.named_parameters()}
    ours = net.state_dict()
    for k, a in state.items():
        if k.rsplit(".", 1)[-1] != "A" or k in params or k not in ours or ours[k].shape != a.shape:
            continue
        if not a.is_floating_point() or not torch.allclose(ours[k], a.to(ours[k].dtype), atol=1e-5):
            raise CheckpointError(
                f"{label}: the graph stored in {k} differs from the graph built from layout {layout.name!r} "
                "(joint order or bones differ); pass the layout the model was trained with")


def paddle_linear_to_torch(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Paddle stores Linear weights as (in, out), torch as (out, in): every 2-D `*.weight` is
    transposed before shapes are read (`paddle_untranspose_non_linear` undoes it for the rare
    2-D weight that is not a Linear's once the model is built)."""
    return {k: (v.t().contiguous() if k.endswith(".weight") and v.dim() == 2 else v) for k, v in state.items()}


def paddle_untranspose_non_linear(net: nn.Module, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = dict(state)
    for name, mod in net.named_modules():
        key = f"{name}.weight"
        if not isinstance(mod, nn.Linear) and key in out and out[key].dim() == 2 and hasattr(mod, "weight"):
            out[key] = out[key].t().contiguous()
    return out


def fill_batch_counters(net: nn.Module, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """BatchNorm's `num_batches_tracked` (a torch-only counter, unused in eval and absent from
    Paddle/numpy exports and torch < 0.4.1 files) is filled with 0 where the file lacks it."""
    ours = net.state_dict()
    missing = [k for k in ours if k.endswith("num_batches_tracked") and k not in state]
    if not missing:
        return state
    return {**state, **{k: torch.zeros_like(ours[k]) for k in missing}}
