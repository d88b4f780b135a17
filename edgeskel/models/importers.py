"""Import checkpoints written by the official training code into edgeskel models.

Supported sources and the formats their training scripts write:

- `ctrgcn` (Uason-Chen/CTR-GCN `main.py`) and `hyperformer` (ZhouYuxuanYX/Hyperformer
  `main.py`): `torch.save(OrderedDict)` of the plain state_dict (a leftover DataParallel
  `module.` prefix is stripped).
- `pyskl` (kennymckormick/pyskl, mmcv runner): `{"meta", "state_dict"[, "optimizer"]}` with
  `backbone.*` and `cls_head.fc_cls.*` keys.

Our models use the official key names, so mapping is prefix handling only. Class count,
person count, input channels, widths and depth are read from tensor shapes, so other
datasets/skeletons trained with the same architectures import too. Where the official code
builds a different graph than our layout (PYSKL/Hyperformer NTU hand edges, Hyperformer's
NW-UCLA body parts) the official one is put into the model kwargs, so the imported model --
and any model rebuilt from its spec -- reproduces the official logits. Anything that does
not fit (missing/unexpected keys, shape mismatches, wrong graph) raises `CheckpointError`
listing all of it.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from edgeskel.checkpoint import FORMAT, ModelSpec, Preprocess, load_state_strict
from edgeskel.errors import CheckpointError, ConfigError
from edgeskel.io import torch_load_safe
from edgeskel.layouts import SkeletonLayout, get_layout
from edgeskel.models.graph import NTU25_HANDS_TO_WRIST_EDGES, edges_to_kwarg
from edgeskel.models.registry import build

# which of our models each official code base provides
SOURCES: dict[str, tuple[str, ...]] = {"ctrgcn": ("ctrgcn",), "hyperformer": ("hyperformer",), "pyskl": ("stgcn",)}

# Hyperformer config/ucla/joint.yaml joint_label (torso/head, arms, legs)
HYPERFORMER_UCLA_PARTS = (0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2)

# Graph details where the official code differs from our layout defaults, keyed by
# (source, layout name). Values become model kwargs.
OFFICIAL_GRAPH_KWARGS: dict[tuple[str, str], dict[str, Any]] = {
    ("pyskl", "ntu25"): {"edges": edges_to_kwarg(NTU25_HANDS_TO_WRIST_EDGES)},
    ("hyperformer", "ntu25"): {"edges": edges_to_kwarg(NTU25_HANDS_TO_WRIST_EDGES)},
    ("hyperformer", "kinect20"): {"parts": list(HYPERFORMER_UCLA_PARTS)},
}

# key of a first-layer weight: (out_channels, in_channels, 1, 1)
_FIRST_CONV = {
    "ctrgcn": "l1.gcn1.convs.0.conv3.weight",
    "hyperformer": "l1.vit1.attn.q.weight",
    "stgcn": "gcn.0.gcn.conv.weight",
}


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Load a checkpoint safely (weights_only) and return its plain state_dict: unwraps
    mmcv/other `{"state_dict": ...}` wrappers and strips DataParallel `module.` prefixes."""
    payload = torch_load_safe(path)
    if isinstance(payload, dict) and payload.get("format") == FORMAT:
        raise CheckpointError(f"{path}: already an edgeskel checkpoint; use it directly (no import needed)")
    if isinstance(payload, dict):
        for wrapper in ("state_dict", "model_state_dict", "model"):
            inner = payload.get(wrapper)
            if isinstance(inner, dict) and inner and all(isinstance(v, torch.Tensor) for v in inner.values()):
                payload = inner
                break
    if not isinstance(payload, dict) or not payload:
        raise CheckpointError(f"{path}: expected a state_dict (mapping of names to tensors), got {type(payload).__name__}")
    bad = [str(k) for k, v in payload.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(f"{path}: not a state_dict: non-tensor entries {bad[:8]}")
    out: dict[str, torch.Tensor] = {}
    for k, v in payload.items():
        while k.startswith("module."):
            k = k[len("module."):]
        out[k] = v
    return out


def map_official_keys(source: str, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Official key names -> ours (identity for CTR-GCN/Hyperformer; PYSKL drops `backbone.`
    and renames `cls_head.fc_cls.` to `fc.`). Unknown keys are kept so the strict loader
    reports them."""
    if source != "pyskl":
        return dict(state)
    out = {}
    for k, v in state.items():
        if k.startswith("backbone."):
            k = k[len("backbone."):]
        elif k.startswith("cls_head.fc_cls."):
            k = "fc." + k[len("cls_head.fc_cls."):]
        out[k] = v
    return out


def _num_stages(state: dict[str, torch.Tensor], pattern: str, offset: int) -> int | None:
    ids = [int(m.group(1)) for k in state if (m := re.match(pattern, k))]
    return max(ids) + offset if ids else None


def infer_architecture(
    source: str, model: str, state: dict[str, torch.Tensor], layout: SkeletonLayout,
    num_classes: int | None, num_person: int | None, where: str,
) -> tuple[int, int, dict[str, Any]]:
    """Read (num_classes, num_person, model kwargs) from tensor shapes; check given values."""
    fc = state.get("fc.weight")
    if fc is None or fc.dim() != 2:
        if num_classes is None:
            raise CheckpointError(
                f"{where}: cannot infer the number of classes: no classifier weight "
                f"({'cls_head.fc_cls.weight' if source == 'pyskl' else 'fc.weight'}); keys start with "
                f"{sorted(state)[:6]}"
            )
    else:
        found = int(fc.shape[0])
        if num_classes is not None and num_classes != found:
            raise CheckpointError(f"{where}: checkpoint classifier has {found} classes, but --num-classes {num_classes} was given")
        num_classes = found

    kwargs: dict[str, Any] = {}
    v = layout.num_joints
    first = state.get(_FIRST_CONV[model])
    c_in = layout.channels
    if first is not None and first.dim() == 4:
        c_in = int(first.shape[1])
        if c_in != layout.channels:
            raise CheckpointError(
                f"{where}: checkpoint takes {c_in} input channels but layout {layout.name!r} has {layout.channels}"
            )

    bn = state.get("data_bn.weight")
    per_person = v * c_in
    if bn is not None:
        size = int(bn.numel())
        if size % per_person:
            raise CheckpointError(
                f"{where}: data_bn has {size} channels, not a multiple of V*C = {v}*{c_in} for layout "
                f"{layout.name!r}: wrong layout or wrong model?"
            )
        found_m = size // per_person
        if model == "stgcn" and found_m == 1:
            found_m = None  # "VC" data BN: the person count is not stored in the weights
        else:
            if model == "stgcn":
                kwargs["data_bn_type"] = "MVC"
            if num_person is not None and num_person != found_m:
                raise CheckpointError(
                    f"{where}: data_bn is sized for {found_m} person(s) (M*V*C = {size}), but --num-person {num_person} was given"
                )
        if found_m is not None:
            num_person = found_m
    if num_person is None:
        num_person = 2
    if num_person < 1:
        raise ConfigError(f"num_person must be >= 1, got {num_person}")

    if model == "ctrgcn":
        if first is not None and first.dim() == 4 and int(first.shape[0]) != 64:
            kwargs["base_channels"] = int(first.shape[0])
        stages = _num_stages(state, r"l(\d+)\.", 0)
    elif model == "hyperformer":
        w1 = state.get("l1.vit1.attn.w1")
        if w1 is not None and w1.dim() == 2:
            if int(w1.shape[0]) != 9:
                kwargs["num_heads"] = int(w1.shape[0])
            if int(w1.shape[1]) != 24:
                kwargs["head_dim"] = int(w1.shape[1])
        stages = _num_stages(state, r"l(\d+)\.", 0)
    else:
        tcn = state.get("gcn.0.tcn.conv.weight")
        if tcn is not None and tcn.dim() == 4 and int(tcn.shape[0]) != 64:
            kwargs["base_channels"] = int(tcn.shape[0])
        stages = _num_stages(state, r"gcn\.(\d+)\.", 1)
    if stages is not None and stages != 10:
        if not 1 <= stages <= 10 and model != "stgcn":
            raise CheckpointError(f"{where}: found {stages} layers; {model} has at most 10")
        kwargs["num_stages"] = stages
    return int(num_classes), int(num_person), kwargs


def import_official(
    source: str,
    path: str | Path,
    model: str,
    layout: str | SkeletonLayout,
    num_classes: int | None = None,
    num_person: int | None = None,
    class_names: list[str] | None = None,
    preprocess: Preprocess | None = None,
) -> tuple[nn.Module, ModelSpec]:
    """Load an official checkpoint into our `model`; returns (model in eval mode, spec).

    Raises CheckpointError when the file does not fit (listing every missing/unexpected key
    and shape mismatch) and ConfigError for an unknown source/model pairing.
    """
    if source not in SOURCES:
        raise ConfigError(f"unknown import source {source!r}; choose one of {sorted(SOURCES)}")
    if model not in SOURCES[source]:
        raise ConfigError(f"source {source!r} provides models {list(SOURCES[source])}, not {model!r}")
    layout = get_layout(layout)
    where = str(path)
    state = map_official_keys(source, read_state_dict(path))
    num_classes, num_person, kwargs = infer_architecture(source, model, state, layout, num_classes, num_person, where)
    kwargs.update(OFFICIAL_GRAPH_KWARGS.get((source, layout.name), {}))
    kwargs["num_person"] = num_person

    net = build(model, num_classes, layout, **kwargs)
    if model == "stgcn":
        _check_fixed_graph(net, state, layout, source, where)
    load_state_strict(net, state, source=f"{where} ({source} -> {model})")
    net.eval()

    if class_names is not None and len(class_names) != num_classes:
        raise ConfigError(f"{len(class_names)} class names given for {num_classes} classes")
    if preprocess is None:
        preprocess = Preprocess(num_frames=64, num_person=num_person)
    elif preprocess.num_person != num_person:
        raise ConfigError(f"preprocess.num_person {preprocess.num_person} does not match the model's {num_person} person(s)")
    spec = ModelSpec(
        name=model, num_classes=num_classes, layout=layout, kwargs=kwargs,
        class_names=list(class_names or []), preprocess=preprocess,
    )
    return net, spec


def _check_fixed_graph(net: nn.Module, state: dict[str, torch.Tensor], layout: SkeletonLayout, source: str, where: str) -> None:
    """PYSKL stores its fixed graph `A`; it must equal the graph our layout builds, or the
    spec would describe a different model than the weights."""
    ours = net.state_dict()
    for k, a in state.items():
        if not k.endswith(".gcn.A") or k not in ours or ours[k].shape != a.shape:
            continue
        if not torch.allclose(ours[k], a.to(ours[k].dtype), atol=1e-6):
            raise CheckpointError(
                f"{where}: the graph stored in {k} differs from the ST-GCN graph built from layout "
                f"{layout.name!r} (joint order or bones differ); pass the layout the model was trained with"
            )
        return
