"""Official EfficientGCN B0-B4 (yfsong0709/EfficientGCNv1, code as in the fork
1suancaiyu/EfficientGCNv1 @ 6c6e9a31a5, `src/model/*`) and its Paddle ports.

Checkpoints: `src/utils.py save_checkpoint` writes `torch.save({"model": state_dict,
"optimizer", "scheduler", "best_state", "epoch"})` (the released `<config>_EfficientGCN-B<n>_
<dataset>.pth.tar`); keys `input_branches.{0,1,2}.*`, `main_stream.*`, `classifier.fc.*`.
Paddle ports (e.g. JustinXu0/EfficientGCN_paddle `transferForPth.py`) save the same keys
with numpy arrays and BN statistics named `_mean`/`_variance`; the format reader loads them
through the restricted unpickler and renames the statistics. Our `efficientgcn` model uses
the official key names; the variant (B0-B4) or the explicit block sizes, the temporal layer
type and ratios are read from the shapes. The deployed model computes the J/V/B inputs from
(N, C, T, V, M) itself (the official model expects the feeder's pre-computed tensor).
"""

from __future__ import annotations

import re
from typing import Any

import torch

from edgeskel.errors import CheckpointError
from edgeskel.importers.base import ImporterAdapter, Inferred, RawCheckpoint, register_importer
from edgeskel.models.efficientgcn import DEFAULT_BLOCK_ARGS, DEFAULT_SCALE_ARGS, rescale_block


def _block_ids(state: dict[str, torch.Tensor], prefix: str) -> list[int]:
    ids = {int(m.group(1)) for k in state if (m := re.match(re.escape(prefix) + r"block-(\d+)_scn\.", k))}
    return sorted(ids)


def _layer_facts(state: dict[str, torch.Tensor], p: str, channels: int, where: str) -> tuple[str, int, int]:
    """(layer_type, reduct_ratio or 0, expand_ratio) of the temporal layer under prefix p."""
    if f"{p}depth_conv1.0.weight" in state:
        inner = int(state[f"{p}point_conv1.0.weight"].shape[0])
        return "SG", channels // max(inner, 1), 0
    if f"{p}depth_conv.0.weight" in state:
        exp = state.get(f"{p}expand_conv.0.weight")
        return "Sep", 0, (int(exp.shape[0]) // channels if exp is not None else 0)
    if f"{p}reduct_conv.0.weight" in state:
        return "Bottleneck", channels // max(int(state[f"{p}reduct_conv.0.weight"].shape[0]), 1), 0
    if f"{p}conv.weight" in state:
        return "Basic", 0, 0
    raise CheckpointError(f"{where}: unrecognised EfficientGCN temporal layer at {p[:-1]!r}")


def infer_efficientgcn(state: dict[str, torch.Tensor], where: str) -> dict[str, Any]:
    """Constructor facts from an official-format state_dict: {num_classes, num_joints,
    in_channels, num_person (None: no weight depends on M), kwargs}. The B0-B4 variant is
    named when the block shapes are the official scaling of the released block_args; other
    shapes go into explicit `blocks`. Not stored in weights, so taken as released: the
    activation (Swish) and the input order (J, V, B)."""

    def need(key: str, dims: int) -> torch.Tensor:
        t = state.get(key)
        if t is None or t.dim() != dims:
            raise CheckpointError(f"{where}: EfficientGCN checkpoint without a {dims}-D {key!r}")
        return t

    num_inputs = len({int(m.group(1)) for k in state if (m := re.match(r"input_branches\.(\d+)\.", k))})
    if num_inputs != 3:
        raise CheckpointError(f"{where}: EfficientGCN with {num_inputs} input branches; edgeskel imports the "
                              "released 3-branch (J, V, B) models")
    b0 = "input_branches.0."
    in2 = int(need(f"{b0}init_bn.weight", 1).numel())
    A = need(f"{b0}stem_scn.conv.A", 3)
    k, num_joints = int(A.shape[0]), int(A.shape[-1])
    stem = int(need(f"{b0}stem_scn.conv.gcn.weight", 4).shape[0]) // k
    kernel = int(need(f"{b0}stem_tcn.conv.weight", 4).shape[2])
    fc = need("classifier.fc.weight", 5)
    blocks: list[list[int]] = []
    layer_type, reduct, expand = "SG", 0, 0
    branch_ids, main_ids = _block_ids(state, b0), _block_ids(state, "main_stream.")
    for prefix, ids in ((b0, branch_ids), ("main_stream.", main_ids)):
        for i in ids:
            c = int(need(f"{prefix}block-{i}_scn.bn.weight", 1).numel())
            pat = re.escape(f"{prefix}block-{i}_tcn-") + r"(\d+)\."
            depth, stride = len({m.group(1) for k_ in state if (m := re.match(pat, k_))}), 1
            if depth:
                p = f"{prefix}block-{i}_tcn-0."
                layer_type, r, e = _layer_facts(state, p, c, where)
                reduct, expand = r or reduct, e or expand
                stride = 2 if f"{p}residual.0.weight" in state else 1
            blocks.append([c, stride, depth])
    if not reduct:
        att = state.get(f"main_stream.block-{main_ids[-1]}_att.att.fcn.0.weight") if main_ids else None
        reduct = int(blocks[-1][0]) // int(att.shape[0]) if att is not None else 2
    kwargs: dict[str, Any] = {"blocks": blocks, "fusion_stage": len(branch_ids)}
    for s in range(5):  # name the official variant when the shapes are exactly it
        official = rescale_block(DEFAULT_BLOCK_ARGS, DEFAULT_SCALE_ARGS, s)
        same = len(blocks) == len(official) and all(
            o[0] == b[0] and o[2] == b[2] and (o[2] == 0 or o[1] == b[1]) for o, b in zip(official, blocks, strict=False)
        )
        if same and len(branch_ids) == 2:
            kwargs = {"variant": f"B{s}"}
            break
    defaults = {"stem_channel": (stem, 64), "kernel_size": (kernel, 5), "max_graph_distance": (k - 1, 2),
                "layer_type": (layer_type, "SG"), "reduct_ratio": (reduct, 2), "expand_ratio": (expand, 0),
                "bias": (f"{b0}stem_scn.conv.gcn.bias" in state, True), "edge": (f"{b0}stem_scn.conv.edge" in state, True)}
    kwargs.update({name: got for name, (got, default) in defaults.items() if got != default})
    return {"num_classes": int(fc.shape[0]), "num_joints": num_joints, "in_channels": in2 // 2,
            "num_person": None, "kwargs": kwargs}


@register_importer
class EfficientGCNOfficial(ImporterAdapter):
    source = "efficientgcn"
    description = ("official EfficientGCN B0-B4 (yfsong0709/EfficientGCNv1 save_checkpoint: {'model': state_dict}, "
                   "keys input_branches.0.init_bn.weight, main_stream.*, classifier.fc.weight; Paddle ports too)")
    models = ("efficientgcn",)

    def detect(self, ckpt: RawCheckpoint) -> str | None:
        s = ckpt.state
        if "input_branches.0.init_bn.weight" in s and "classifier.fc.weight" in s:
            return "efficientgcn" if any(k.startswith("main_stream.") for k in s) else None
        return None

    def map_keys(self, ckpt: RawCheckpoint, model: str) -> dict[str, torch.Tensor]:
        state = dict(ckpt.state)
        if ckpt.framework == "paddle":  # Paddle BatchNorm has no counter; it only matters for training
            for k in [k for k in state if k.endswith(".running_mean")]:
                state.setdefault(k[: -len("running_mean")] + "num_batches_tracked", torch.tensor(0))
        return state

    def to_source_keys(self, state: dict[str, torch.Tensor], model: str) -> dict[str, Any]:
        return {"model": dict(state)}  # save_checkpoint's layout (optimizer/scheduler/best_state omitted)

    def infer(self, state: dict[str, torch.Tensor], model: str, where: str) -> Inferred:
        f = infer_efficientgcn(state, where)
        return Inferred(f["num_classes"], f["num_joints"], f["in_channels"], f["num_person"], f["kwargs"])
