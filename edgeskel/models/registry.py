"""Model registry (timm-style): `build("ctrgcn", num_classes=10, layout="kinect20")`.

A new model is one file in `edgeskel/models/` that decorates its builder with
`@register_model(name, family=...)` plus an import line in `edgeskel/models/__init__.py`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch.nn as nn

from edgeskel.errors import ConfigError
from edgeskel.layouts import SkeletonLayout, get_layout


@dataclass(frozen=True)
class CausalForm:
    """One way to make an architecture causal in time (streamable) for a fine-tune."""

    # build kwargs of the causal form, given the model's kwargs and the clip length it trained on
    kwargs: Callable[[dict[str, Any], int], dict[str, Any]]
    # parameters the windowed model lacks, set from it and a few training clips:
    # calibrate(causal_net, windowed_net, clips); None: the windowed weights are all it needs
    calibrate: Callable[[nn.Module, nn.Module, Any], None] | None = None
    description: str = ""


@dataclass(frozen=True)
class ModelEntry:
    name: str
    family: str  # "gcn", "transformer"; "user" and "ensemble" are not zoo architectures
    builder: Callable[..., nn.Module]
    description: str = ""
    # a small configuration for fast tests/demos: {"layout": name, **build kwargs}
    tiny: dict[str, Any] | None = None
    # True only if the architecture needs the T it was built for (then predict/export refuse
    # another T and say so); every other model accepts any number of frames
    fixed_frames: bool = False
    # causal (streamable) forms by name, the default first; empty: already causal or not
    # streamable this way (`edgeskel train --streamable [--causal-form NAME]`)
    causal_forms: dict[str, CausalForm] = field(default_factory=dict)


_REGISTRY: dict[str, ModelEntry] = {}


def register_model(
    name: str, family: str, description: str = "", tiny: dict[str, Any] | None = None, fixed_frames: bool = False,
    causal_forms: dict[str, CausalForm] | None = None,
) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    def deco(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} registered twice")
        _REGISTRY[name] = ModelEntry(name, family, fn, description or (fn.__doc__ or "").strip().splitlines()[0],
                                     dict(tiny) if tiny else None, fixed_frames,
                                     dict(causal_forms or {}))
        return fn

    return deco


def available_models() -> list[str]:
    """The model zoo. The `user` entry (your own module, `models/user.py`) and the `ensemble`
    entry (`models/ensemble.py`: several zoo models on input views) are not listed: they have no
    architecture of their own and build only from an entrypoint / their streams."""
    return sorted(n for n, e in _REGISTRY.items() if e.family not in ("user", "ensemble"))


def model_entry(name: str) -> ModelEntry:
    if name not in _REGISTRY:
        raise ConfigError(f"unknown model {name!r}; available: {available_models()}")
    return _REGISTRY[name]


def build(name: str, num_classes: int, layout: str | SkeletonLayout | dict[str, Any], **kwargs: Any) -> nn.Module:
    """Build a registered model. kwargs are model-specific (e.g. num_person, width)."""
    entry = model_entry(name)
    if num_classes < 1:
        raise ConfigError(f"num_classes must be >= 1, got {num_classes}")
    return entry.builder(num_classes=num_classes, layout=get_layout(layout), **kwargs)
