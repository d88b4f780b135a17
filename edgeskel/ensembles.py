"""Assemble stream checkpoints into one ensemble checkpoint (issue 31; docs/ENSEMBLES.md).

`load_stream` reads one stream (an edgeskel checkpoint, or an official one through the
importers), `assemble` checks that the streams fit together (classes, layout, persons, clip
settings, input views) and builds the one `models.ensemble.Ensemble` whose spec is the
`ensemble` model with every stream's architecture, view and weight nested in its kwargs: the
checkpoint stays self-describing and reloads with `weights_only=True` like any other.
Defaults follow the code base the streams came from: CTR-GCN-style sources (`main.py` +
`ensemble.py`) fuse raw scores with 0.6/0.4, PYSKL-style sources (and streams trained here)
fuse softmax scores 2:2:1:1.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch.nn as nn

from edgeskel.checkpoint import ModelSpec, Preprocess, layout_key, load_checkpoint
from edgeskel.errors import ConfigError
from edgeskel.layouts import SkeletonLayout
from edgeskel.models.ensemble import CONVENTIONS, FUSIONS, PYSKL_BONE_PAIRS, canonical_view, default_weights

# import sources whose published ensembles follow PYSKL (softmax, 2:2:1:1); the others ship
# CTR-GCN's ensemble.py (raw scores, 0.6/0.4)
PYSKL_SOURCES = ("pyskl", "mmaction2")


def convention_of(source: str | None) -> str:
    """'pyskl' or 'ctrgcn': whose fusion defaults a stream of this import source follows
    (None: trained here, PYSKL's)."""
    return "pyskl" if source is None or source in PYSKL_SOURCES else "ctrgcn"


@dataclass
class StreamSpec:
    """One ensemble member as the user names it (recipe `model.streams`, `edgeskel import`)."""

    checkpoint: str | Path
    name: str | None = None
    input: str | None = None  # None: the checkpoint's own Preprocess.streams
    weight: float | None = None  # None: the code base's default
    import_from: str | None = None  # official checkpoints: a registered source or "auto"
    model: str | None = None  # official checkpoints: our model name (default: detected)


@dataclass
class LoadedStream:
    name: str
    view: str
    weight: float | None
    model: nn.Module
    spec: ModelSpec
    source: str | None  # import source, None for a model trained here
    origin: str  # the file, for messages
    extra: dict[str, Any] = field(default_factory=dict)


def _is_edgeskel(path: str | Path) -> bool:
    from edgeskel.models.user import is_edgeskel_checkpoint

    return is_edgeskel_checkpoint(path)


def load_stream(entry: StreamSpec, index: int, *, layout: str | SkeletonLayout | None = None,
                num_person: int | None = None, preprocess: Preprocess | None = None,
                class_names: list[str] | None = None) -> LoadedStream:
    """Read one stream's model. An edgeskel checkpoint keeps its own spec; an official one is
    imported (`layout`, `num_person`, `preprocess`, `class_names` as `edgeskel import` takes them)."""
    path = str(entry.checkpoint)
    if not Path(path).is_file():
        raise ConfigError(f"{path}: stream {entry.name or index} checkpoint not found")
    if not entry.import_from and _is_edgeskel(path):
        model, spec, extra = load_checkpoint(path)
        if spec.name == "ensemble":
            raise ConfigError(f"{path}: is an ensemble already; give its stream checkpoints instead")
        imported = extra.get("imported_from")
        source = imported.get("source") if isinstance(imported, dict) else imported if isinstance(imported, str) else None
        own_view = spec.preprocess.streams
        view = canonical_view(entry.input, f"{path}: input") if entry.input else own_view
        if own_view != "joint" and view != own_view:
            raise ConfigError(f"{path}: the checkpoint was trained on {own_view!r} input, the stream says "
                              f"{view!r} (omit input, or give the {view} stream's checkpoint)")
    else:
        from edgeskel.importers import import_checkpoint

        if not entry.input:
            raise ConfigError(f"{path}: an official checkpoint does not say which input it was trained on; "
                              "give the stream's input (joint, bone, motion or bone_motion)")
        view = canonical_view(entry.input, f"{path}: input")
        source_arg = None if entry.import_from in (None, "auto") else entry.import_from
        model, spec, info = import_checkpoint(path, source=source_arg, model=entry.model, layout=layout,
                                              num_person=num_person, class_names=class_names,
                                              preprocess=preprocess)
        source, extra = info["source"], {"imported_from": {**info, "file": path}}
    spec = replace(spec, preprocess=replace(spec.preprocess, streams=view))
    name = entry.name or view
    return LoadedStream(name, view, entry.weight, model, spec, source, path, extra)


def assemble(streams: list[LoadedStream], fusion: str | None = None,
             preprocess: Preprocess | None = None) -> tuple[nn.Module, ModelSpec]:
    """One ensemble (model in eval mode, spec) from loaded streams, refusing streams that do not
    fit together with one message naming both files. `fusion`/weights left out: the streams'
    code base's defaults (mixed code bases must say both)."""
    from edgeskel import models

    if not streams:
        raise ConfigError("an ensemble needs at least one stream")
    first = streams[0]
    seen: dict[str, str] = {}
    for s in streams:
        if s.name in seen:
            raise ConfigError(f"{s.origin}: stream name {s.name!r} is used twice (also {seen[s.name]}); "
                              "name the streams")
        seen[s.name] = s.origin
    for s in streams[1:]:
        a, b = first.spec, s.spec
        pair = f"stream {s.name!r} ({s.origin}) and stream {first.name!r} ({first.origin})"
        if a.num_classes != b.num_classes:
            raise ConfigError(f"{s.origin}: {pair} have different class counts ({b.num_classes} vs {a.num_classes}); "
                              "an ensemble fuses scores of the same classes")
        if layout_key(a.layout) != layout_key(b.layout):
            raise ConfigError(f"{s.origin}: {pair} were built for different layouts ({b.layout.name!r} vs "
                              f"{a.layout.name!r}: joints, bones or channels differ); the streams share one input")
        if a.class_names and b.class_names and a.class_names != b.class_names:
            raise ConfigError(f"{s.origin}: {pair} name their classes differently")
        pa, pb = a.preprocess, b.preprocess
        for what in ("center", "native_rate", "upsample") + (("num_person", "num_frames") if preprocess is None else ()):
            if getattr(pa, what) != getattr(pb, what):
                raise ConfigError(f"{s.origin}: {pair} were trained with different {what} "
                                  f"({getattr(pb, what)} vs {getattr(pa, what)}); the streams share one input")
        if pb.num_person != pa.num_person:
            raise ConfigError(f"{s.origin}: {pair} take different person counts ({pb.num_person} vs {pa.num_person})")
    sources = {convention_of(s.source) for s in streams}
    missing_weights = any(s.weight is None for s in streams)
    if len(sources) > 1 and (fusion is None or missing_weights):
        raise ConfigError(f"{streams[-1].origin}: the streams come from code bases with different ensemble "
                          "conventions (CTR-GCN: raw scores 0.6/0.4; PYSKL: softmax 2:2:1:1); give fusion and every "
                          "stream's weight")
    convention = sources.pop()
    fusion = fusion or CONVENTIONS[convention]["fusion"]
    if fusion not in FUSIONS:
        raise ConfigError(f"fusion {fusion!r}; allowed: {', '.join(FUSIONS)}")
    defaults = default_weights([s.view for s in streams], convention)
    weights = [s.weight if s.weight is not None else d for s, d in zip(streams, defaults, strict=True)]
    layout = first.spec.layout
    pre = preprocess or first.spec.preprocess
    kwargs: dict[str, Any] = {"num_person": pre.num_person, "fusion": fusion, "streams": []}
    if convention == "pyskl" and layout.name in PYSKL_BONE_PAIRS:
        kwargs["bone_pairs"] = [list(p) for p in PYSKL_BONE_PAIRS[layout.name]]
        if layout.channels == 3:  # PYSKL 2D: (x, y, score)
            kwargs["score_channel"] = True
    for s, w in zip(streams, weights, strict=True):
        entry: dict[str, Any] = {"name": s.name, "model": s.spec.name, "input": s.view, "weight": float(w),
                                 "kwargs": dict(s.spec.kwargs)}
        if s.spec.compression:
            entry["compression"] = s.spec.compression
        if s.spec.strides_removed:
            entry["strides_removed"] = True
        kwargs["streams"].append(entry)
    spec = ModelSpec(name="ensemble", num_classes=first.spec.num_classes, layout=layout, kwargs=kwargs,
                     class_names=list(first.spec.class_names or next((s.spec.class_names for s in streams
                                                                       if s.spec.class_names), [])),
                     preprocess=Preprocess(pre.num_frames, pre.num_person, "joint", pre.center, pre.native_rate,
                                           pre.upsample))
    net = models.build("ensemble", spec.num_classes, layout, **kwargs)
    for s in streams:
        net.streams[s.name].load_state_dict(s.model.state_dict(), strict=True)
    return net.eval(), spec


def stream_extra(streams: list[LoadedStream]) -> dict[str, Any]:
    """What the ensemble checkpoint records about its members (`extra.streams`)."""
    from edgeskel.io import sha256_file

    return {"streams": [{"name": s.name, "input": s.view, "file": s.origin,
                         **({"sha256": sha256_file(s.origin)} if Path(s.origin).is_file() else {}),
                         "source": s.source or "edgeskel"} for s in streams]}


def is_ensemble(spec: ModelSpec) -> bool:
    return spec.name == "ensemble"
