"""A user's own module with their weights: the reference of a `model.entrypoint` recipe.

Why here and not in `models/user.py`: building the module is a model concern (the registry
entry `user`), but pairing it with a weights file or an edgeskel checkpoint needs the checkpoint
layer, which sits above the models.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch.nn as nn

from edgeskel.checkpoint import ModelSpec, load_checkpoint, load_state_strict
from edgeskel.errors import ConfigError
from edgeskel.layouts import SkeletonLayout
from edgeskel.models.user import check_user_model, is_edgeskel_checkpoint
from edgeskel.weights import read_checkpoint


def load_user_reference(
    entrypoint: str, kwargs: dict[str, Any], checkpoint: str | Path | None, num_classes: int,
    layout: SkeletonLayout, preprocess: Any, class_names: list[str],
) -> tuple[nn.Module, Any, dict[str, Any]]:
    """(model, spec, extra) for a user model: an edgeskel checkpoint of it, or the user's module
    with weights from their own file (any format `edgeskel import` reads, loaded safely and
    strictly), or untrained when `checkpoint` is None (the caller trains it)."""
    from edgeskel.models.registry import build

    if checkpoint is not None and is_edgeskel_checkpoint(checkpoint):
        net, spec, extra = load_checkpoint(checkpoint)
        if spec.name != "user" or spec.kwargs.get("entrypoint") != entrypoint:
            raise ConfigError(f"{checkpoint}: an edgeskel checkpoint of {spec.kwargs.get('entrypoint') or spec.name!r}, "
                              f"not of the recipe's entrypoint {entrypoint!r}")
        return net, spec, extra
    spec = ModelSpec(name="user", num_classes=num_classes, layout=layout,
                     kwargs={"entrypoint": entrypoint, "kwargs": dict(kwargs), "num_person": preprocess.num_person},
                     class_names=list(class_names), preprocess=preprocess)
    net = build("user", num_classes, layout, **spec.kwargs)
    check_user_model(net, num_classes, spec.input_shape, f"entrypoint {entrypoint!r}")
    extra: dict[str, Any] = {}
    if checkpoint is not None:
        load_state_strict(net, read_checkpoint(checkpoint).state, source=f"{checkpoint} (user model {entrypoint})")
        extra["user_weights"] = str(checkpoint)
    return net.eval(), spec, extra
