"""Self-describing edgeskel checkpoints.

A checkpoint holds everything a later stage needs to rebuild the model from the file alone:
model name and kwargs, layout, class names, preprocessing, and the state_dict. It is a plain
dict of tensors and Python primitives saved with `torch.save`, so it reloads with
`weights_only=True` (no pickle code execution). Compressed models also carry their
factorization plan so they rebuild without the recipe.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from edgeskel import __version__
from edgeskel.errors import CheckpointError, EdgeskelError
from edgeskel.io import torch_load_safe, torch_save_atomic
from edgeskel.layouts import BUILTIN_LAYOUTS, SkeletonLayout, get_layout
from edgeskel.weights import EDGESKEL_FORMAT

FORMAT = EDGESKEL_FORMAT  # the weights layer recognises it too (weights.sniff, models.user)


@dataclass
class Preprocess:
    """How raw (C, T, V, M) samples become model input; stored in every checkpoint."""

    num_frames: int = 64
    num_person: int = 1
    streams: str = "joint"  # joint | bone | motion | bone_motion
    center: bool = True
    # False: clips resampled to num_frames (the usual windowed training). True: clips are
    # windows of at most num_frames frames at the source's own rate, as a stream sees them
    # (docs/STREAMING.md "Training for streams").
    native_rate: bool = False
    # native rate only: the network sees `upsample` frames per source frame (linear
    # interpolation from the previous frame, causal): a model that learned actions resampled to
    # T frames keeps a time scale near the one it learned (docs/STREAMING.md "Upsampling").
    upsample: int = 1

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        if not self.native_rate:  # left out at its default: checkpoints and stage keys as before
            d.pop("native_rate")
        if self.upsample == 1:
            d.pop("upsample")
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Preprocess:
        return cls(**{k: d[k] for k in ("num_frames", "num_person", "streams", "center", "native_rate", "upsample")
                     if k in d})


@dataclass
class ModelSpec:
    """Everything needed to rebuild the architecture (without weights)."""

    name: str
    num_classes: int
    layout: SkeletonLayout
    kwargs: dict[str, Any] = field(default_factory=dict)
    class_names: list[str] = field(default_factory=list)
    preprocess: Preprocess = field(default_factory=Preprocess)
    compression: dict[str, Any] | None = None  # factorization plan (edgeskel.compress)
    # every temporal stride set to 1 (edgeskel/models/temporal.py): a decision every frame in a stream
    strides_removed: bool = False

    @property
    def input_shape(self) -> tuple[int, int, int, int]:
        """(C, T, V, M) of one sample."""
        c = self.layout.channels
        return (c, self.preprocess.num_frames, self.layout.num_joints, self.preprocess.num_person)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "num_classes": self.num_classes,
            "layout": self.layout.to_dict(),
            "kwargs": dict(self.kwargs),
            "class_names": list(self.class_names),
            "preprocess": self.preprocess.to_dict(),
            "compression": self.compression,
            **({"strides_removed": True} if self.strides_removed else {}),  # absent at its default: keys as before
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any], layout: str | SkeletonLayout | None = None) -> ModelSpec:
        """`layout`: for checkpoints that stored only a layout's name (before the full definition
        travelled with the model), the layout to use; it must agree with a stored definition."""
        return cls(
            name=d["name"],
            num_classes=int(d["num_classes"]),
            layout=_spec_layout(d["layout"], layout),
            kwargs=dict(d.get("kwargs") or {}),
            class_names=list(d.get("class_names") or []),
            preprocess=Preprocess.from_dict(d.get("preprocess") or {}),
            compression=d.get("compression"),
            strides_removed=bool(d.get("strides_removed", False)),
        )


def _spec_layout(stored: Any, given: str | SkeletonLayout | None) -> SkeletonLayout:
    """The checkpoint's own layout definition wins; a name-only (old) checkpoint uses `given`,
    else the built-in of that name."""
    if isinstance(stored, dict):
        own = get_layout(stored)
        if given is not None:
            other = get_layout(given)
            if layout_key(other) != layout_key(own):
                raise EdgeskelError(f"the checkpoint was built for layout {own.name!r}; the given layout "
                                    f"{other.name!r} has other joints, bones, centre or parts (omit --layout)")
        return own
    if given is not None:
        lay = get_layout(given)
        if isinstance(stored, str) and lay.name != stored and stored in BUILTIN_LAYOUTS:
            raise EdgeskelError(f"the checkpoint names layout {stored!r}, not {lay.name!r}")
        return lay
    if isinstance(stored, str) and stored not in BUILTIN_LAYOUTS and not stored.endswith((".yaml", ".yml")):
        raise EdgeskelError(f"the checkpoint names layout {stored!r} without its definition; pass the "
                            "layout it was trained with (--layout FILE.yaml)")
    return get_layout(stored)


def layout_key(layout: SkeletonLayout) -> dict[str, Any]:
    """What makes two layouts the same graph (the name and description do not)."""
    d = layout.to_dict()
    return {k: d[k] for k in ("joints", "bones", "center", "origin", "parts", "channels")}


def build_from_spec(spec: ModelSpec) -> nn.Module:
    """Build the (possibly compressed) architecture described by `spec`, weights untrained."""
    from edgeskel import models

    model = models.build(spec.name, spec.num_classes, spec.layout, **spec.kwargs)
    if spec.compression:
        from edgeskel.models.lowrank import apply_plan

        apply_plan(model, spec.compression)
    if spec.strides_removed:
        from edgeskel.models.temporal import remove_strides

        model = remove_strides(model)
    return model


def save_checkpoint(path: str | Path, model: nn.Module, spec: ModelSpec, extra: dict[str, Any] | None = None) -> Path:
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    payload = {
        "format": FORMAT,
        "edgeskel_version": __version__,
        "spec": spec.to_dict(),
        "state_dict": state,
        "extra": extra or {},
    }
    return torch_save_atomic(payload, path)


def load_checkpoint(path: str | Path, layout: str | SkeletonLayout | None = None) -> tuple[nn.Module, ModelSpec, dict[str, Any]]:
    """Rebuild and load a model from an edgeskel checkpoint. Returns (model in eval mode, spec, extra).
    `layout` is needed only for old checkpoints that stored a custom layout's name alone."""
    from edgeskel.weights import describe, sniff  # noqa: I001

    fmt = sniff(path)  # before torch.load: a TFLite/ONNX/Paddle file gets a message naming it
    if fmt not in ("torch-zip", "torch-legacy"):
        hint = (" (weights from another tool: convert them with `edgeskel import`)"
                if fmt in ("safetensors", "paddle", "npz") else "")
        raise CheckpointError(f"{path}: not a readable torch checkpoint: it is {describe(fmt)}{hint}. "
                              "edgeskel checkpoints are written by `edgeskel import`, `train` and `compress`")
    payload = torch_load_safe(path)
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        hint = ""
        if isinstance(payload, dict) and ("state_dict" in payload or any(isinstance(k, str) and "." in k for k in payload)):
            hint = " (looks like a checkpoint from another tool: convert it with `edgeskel import`)"
        raise CheckpointError(f"{path}: not an edgeskel checkpoint{hint}")
    try:
        spec = ModelSpec.from_dict(payload["spec"], layout=layout)
    except EdgeskelError as exc:
        raise CheckpointError(f"{path}: malformed model spec: {exc}") from None
    except (KeyError, TypeError, ValueError, AttributeError, IndexError, OverflowError) as exc:
        raise CheckpointError(f"{path}: malformed model spec: {exc}") from None
    try:
        model = build_from_spec(spec)
    except CheckpointError:
        raise
    except EdgeskelError as exc:
        raise CheckpointError(f"{path}: the model spec in the checkpoint does not build: {exc}") from None
    except (TypeError, ValueError, KeyError, IndexError, AttributeError, RuntimeError) as exc:
        raise CheckpointError(f"{path}: the model spec in the checkpoint does not build: "
                              f"{type(exc).__name__}: {exc}") from None
    load_state_strict(model, payload.get("state_dict"), source=str(path))
    model.eval()
    return model, spec, dict(payload.get("extra") or {})


def load_state_strict(model: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """load_state_dict that lists every missing/unexpected key and shape mismatch in one error."""
    if not isinstance(state, dict):
        raise CheckpointError(f"{source}: state_dict is a {type(state).__name__}, not a mapping of names to tensors")
    bad = [repr(k) for k, v in state.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(f"{source}: state_dict entries that are not name -> tensor: {_preview(bad)}")
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    mismatched = [
        f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
        for k in sorted(set(own) & set(state))
        if tuple(state[k].shape) != tuple(own[k].shape)
    ]
    if missing or unexpected or mismatched:
        parts = []
        if missing:
            parts.append(f"missing keys ({len(missing)}): {_preview(missing)}")
        if unexpected:
            parts.append(f"unexpected keys ({len(unexpected)}): {_preview(unexpected)}")
        if mismatched:
            parts.append(f"shape mismatches ({len(mismatched)}): {_preview(mismatched)}")
        raise CheckpointError(f"{source}: checkpoint does not fit the model: " + "; ".join(parts))
    model.load_state_dict(state, strict=True)


def _preview(items: list[str], n: int = 12) -> str:
    shown = ", ".join(items[:n])
    return shown + (f", ... (+{len(items) - n} more)" if len(items) > n else "")


def save_half(src: str | Path, dst: str | Path) -> Path:
    """Copy an edgeskel checkpoint with floating-point weights stored as fp16 (half the size).
    Why: reference checkpoints are committed to the repository; they reload into fp32 models."""
    payload = torch_load_safe(src)
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{src}: not an edgeskel checkpoint")
    payload = dict(payload)
    payload["state_dict"] = {k: (v.half() if v.is_floating_point() else v) for k, v in payload["state_dict"].items()}
    payload["extra"] = {**dict(payload.get("extra") or {}), "stored_dtype": "float16"}
    return torch_save_atomic(payload, dst)
