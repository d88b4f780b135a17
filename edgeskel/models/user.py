"""Bring your own model: any PyTorch module taking (N, C, T, V, M) and returning (N, K) logits,
built by the user's own function ("entrypoint", `pkg.module:build`).

This RUNS THE USER'S CODE, by design: the registered model `user` imports the entrypoint and
calls it. Because edgeskel checkpoints record the entrypoint in their model spec, a
checkpoint could name any importable function; so an entrypoint is imported only if the
user named it in this process -- in the recipe they run (`model.entrypoint`), with
`edgeskel import --entrypoint`, or in the environment variable EDGESKEL_TRUSTED_ENTRYPOINTS
(comma-separated). A checkpoint alone never causes code to be imported.

The builder receives the recipe's `model.kwargs`, plus whichever of `num_classes`,
`num_joints`, `in_channels`, `num_person`, `layout` its signature names (so one function
serves every dataset). The rest of edgeskel treats the module like any other model: generic
low-rank factorization of its Linear / Conv2d layers, fine-tuning, ONNX export, validation,
reports.
"""

from __future__ import annotations

import importlib
import inspect
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from edgeskel.errors import CheckpointError, ConfigError
from edgeskel.layouts import SkeletonLayout
from edgeskel.models.registry import register_model

ENV_TRUSTED = "EDGESKEL_TRUSTED_ENTRYPOINTS"
_PATTERN = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")
_TRUSTED: set[str] = set()


def check_entrypoint(entrypoint: str) -> str:
    """`pkg.module:function` (dotted names only: never a file path or an expression)."""
    if not isinstance(entrypoint, str) or not _PATTERN.match(entrypoint.strip()):
        raise ConfigError(f"entrypoint {entrypoint!r} must look like 'package.module:function'")
    return entrypoint.strip()


def trust_entrypoint(entrypoint: str) -> str:
    """Allow `entrypoint` to be imported in this process (the user named it explicitly)."""
    ep = check_entrypoint(entrypoint)
    _TRUSTED.add(ep)
    return ep


def is_trusted(entrypoint: str) -> bool:
    env = {e.strip() for e in os.environ.get(ENV_TRUSTED, "").split(",") if e.strip()}
    return entrypoint in _TRUSTED or entrypoint in env


def resolve_entrypoint(entrypoint: str) -> Callable[..., Any]:
    """Import a trusted entrypoint; the module is looked up on sys.path, then in the current
    directory (as `python -m` does)."""
    ep = check_entrypoint(entrypoint)
    if not is_trusted(ep):
        raise CheckpointError(
            f"the model needs user code {ep!r}; edgeskel never imports code named by a checkpoint. If you "
            f"trust it, name it yourself: model.entrypoint in the recipe, --entrypoint, or {ENV_TRUSTED}={ep}")
    module_name, attr = ep.split(":")
    try:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError:
            cwd = str(Path.cwd())
            if cwd in sys.path:
                raise
            sys.path.append(cwd)
            module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise ConfigError(f"entrypoint {ep!r}: cannot import {module_name!r} ({exc}); install it or run from the "
                          "directory that contains it (or set PYTHONPATH)") from None
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ConfigError(f"entrypoint {ep!r}: module {module_name!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise ConfigError(f"entrypoint {ep!r} is not callable")
    return obj


# fixed_frames: edgeskel cannot know whether your module accepts another T, so predict keeps the T it was built for
@register_model("user", family="user", description="your own PyTorch module, built by a trusted entrypoint",
                fixed_frames=True)
def build_user(
    num_classes: int,
    layout: SkeletonLayout,
    num_person: int = 2,
    in_channels: int | None = None,
    width: float = 1.0,
    dropout: float = 0.0,
    *,
    entrypoint: str | None = None,
    kwargs: dict[str, Any] | None = None,
    **unknown: Any,
) -> nn.Module:
    """User model: `entrypoint(**kwargs, [num_classes, num_joints, in_channels, num_person, layout])`."""
    if unknown:
        raise ConfigError(f"user model: unknown arguments {sorted(unknown)} (the builder's own arguments go in kwargs)")
    if entrypoint is None:
        raise ConfigError("user model: no entrypoint ('package.module:function' returning an nn.Module)")
    if width != 1.0 or dropout:
        raise ConfigError("user model: width/dropout are edgeskel-model options; pass your builder's own in kwargs")
    fn = resolve_entrypoint(entrypoint)
    call = dict(kwargs or {})
    offered = {"num_classes": num_classes, "num_joints": layout.num_joints, "in_channels": in_channels or layout.channels,
               "num_person": num_person, "layout": layout}
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        params = {}
    for name, value in offered.items():
        if name in params and name not in call:
            call[name] = value
    try:
        net = fn(**call)
    except TypeError as exc:
        raise ConfigError(f"entrypoint {entrypoint!r} cannot be called with {sorted(call)}: {exc}") from None
    if not isinstance(net, nn.Module):
        raise ConfigError(f"entrypoint {entrypoint!r} returned {type(net).__name__}, not a torch.nn.Module")
    return net


def check_user_model(net: nn.Module, num_classes: int, input_shape: tuple[int, int, int, int], where: str) -> None:
    """One forward of zeros (batch 2): the module must map (N, C, T, V, M) to (N, num_classes)."""
    was = net.training
    net.eval()
    try:
        with torch.no_grad():
            out = net(torch.zeros(2, *input_shape))
    except Exception as exc:  # noqa: BLE001 - the user's forward can raise anything
        raise ConfigError(f"{where}: the user model fails on an input of shape {(2, *input_shape)} (N, C, T, V, M): "
                          f"{type(exc).__name__}: {exc}") from None
    finally:
        net.train(was)
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (2, num_classes):
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ConfigError(f"{where}: the user model must return logits (N, {num_classes}) for (N, C, T, V, M) input; "
                          f"it returned {got}")


def is_edgeskel_checkpoint(path: str | Path) -> bool:
    """True for a checkpoint edgeskel wrote (it carries its spec); False for the user's own
    weights file (a plain state_dict in any format `edgeskel import` reads)."""
    from edgeskel.io import torch_load_safe
    from edgeskel.weights import EDGESKEL_FORMAT, sniff

    if sniff(path) not in ("torch-zip", "torch-legacy"):
        return False
    payload = torch_load_safe(path)
    return isinstance(payload, dict) and payload.get("format") == EDGESKEL_FORMAT
