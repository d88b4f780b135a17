"""Official Shift-GCN (kchengiva/Shift-GCN @ 20276b64d1, `model/shift_gcn.py`).

Checkpoint: `main.py` saves `torch.save(OrderedDict)` of the plain state_dict (the released
`save_models/*.pt` are legacy, non-zip torch files) with keys `l1.gcn1.Linear_weight`,
`l1.gcn1.Feature_Mask`, `l1.gcn1.shift_in` (int64 permutation), `l1.tcn1.shift_in.ypos`,
`fc.weight`, ... and `num_batches_tracked`. Our `shiftgcn` model uses the same key names,
except `lN.gcn1.Linear_weight`/`Linear_bias`, held as an nn.Linear (`lN.gcn1.linear.*`,
transposed) so low-rank compression can factorize it.
The radius of each temporal-shift convolution is read from the trained offsets (`ypos`), so
the fixed convs reproduce the official CUDA kernel exactly.
"""

from __future__ import annotations

from typing import Any

import torch

from edgeskel.errors import CheckpointError
from edgeskel.importers.base import ImporterAdapter, Inferred, RawCheckpoint, register_importer
from edgeskel.models.shiftgcn import layer_plan, shift_radius_for


def from_official_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Official names -> ours: `lN.gcn1.Linear_weight` (C_in, C_out) -> `lN.gcn1.linear.weight`
    (C_out, C_in); `Linear_bias` (1, 1, C_out) -> `linear.bias`. Other keys are unchanged (kept
    even when unknown, so a strict load lists them); the int64 permutations stay int64."""
    out: dict[str, torch.Tensor] = {}
    for k, v in state.items():
        if k.endswith(".gcn1.Linear_weight") and v.dim() == 2:
            out[k[: -len("Linear_weight")] + "linear.weight"] = v.t().contiguous()
        elif k.endswith(".gcn1.Linear_bias"):
            out[k[: -len("Linear_bias")] + "linear.bias"] = v.reshape(-1)
        elif k.endswith((".gcn1.shift_in", ".gcn1.shift_out")):
            out[k] = v.long()
        else:
            out[k] = v
    return out


def to_official_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The inverse of `from_official_keys` (what the official `main.py` would save)."""
    out: dict[str, torch.Tensor] = {}
    for k, v in state.items():
        if k.endswith(".gcn1.linear.weight"):
            out[k[: -len("linear.weight")] + "Linear_weight"] = v.t().contiguous()
        elif k.endswith(".gcn1.linear.bias"):
            out[k[: -len("linear.bias")] + "Linear_bias"] = v.reshape(1, 1, -1)
        else:
            out[k] = v
    return out


def infer_shiftgcn(state: dict[str, torch.Tensor], where: str) -> dict[str, Any]:
    """Constructor facts from a state_dict in our names (`from_official_keys`): {num_classes, num_joints,
    in_channels, num_person, kwargs}. Shift radii come from the trained offsets (per shift,
    just large enough that the fixed conv reproduces the official kernel exactly)."""
    def need(key: str, dims: int) -> torch.Tensor:
        t = state.get(key)
        if t is None or t.dim() != dims:
            raise CheckpointError(f"{where}: Shift-GCN checkpoint without a {dims}-D {key!r}")
        return t

    mask = need("l1.gcn1.Feature_Mask", 3)
    lin = need("l1.gcn1.linear.weight", 2)
    fc = need("fc.weight", 2)
    num_joints, in_channels, base = int(mask.shape[1]), int(mask.shape[2]), int(lin.shape[0])
    bn = need("data_bn.weight", 1)
    if bn.numel() % (num_joints * in_channels):
        raise CheckpointError(f"{where}: data_bn has {bn.numel()} channels, not a multiple of V*C = {num_joints}*{in_channels}")
    stages = 0
    while f"l{stages + 1}.gcn1.linear.weight" in state:
        stages += 1
    radii = []
    for i, (_, stride) in enumerate(layer_plan(base, stages), start=1):
        for name, s in (("shift_in", 1), ("shift_out", stride)):
            y = need(f"l{i}.tcn1.{name}.ypos", 1).float()
            radii.append(shift_radius_for(y + 0.5 if s != 1 else y))
            x = need(f"l{i}.tcn1.{name}.xpos", 1).float()
            if shift_radius_for(x) > 1:
                raise CheckpointError(f"{where}: l{i}.tcn1.{name}.xpos shifts joints by more than 1 (max |xpos| = "
                                      f"{float(x.abs().max()):.3g}); edgeskel's Shift-GCN supports |xpos| < 1")
    kwargs: dict[str, Any] = {"shift_radius": radii}
    if base != 64:
        kwargs["base_channels"] = base
    if stages != 10:
        kwargs["num_stages"] = stages
    return {"num_classes": int(fc.shape[0]), "num_joints": num_joints, "in_channels": in_channels,
            "num_person": int(bn.numel()) // (num_joints * in_channels), "kwargs": kwargs}


@register_importer
class ShiftGCNOfficial(ImporterAdapter):
    source = "shiftgcn"
    description = ("official Shift-GCN (kchengiva/Shift-GCN main.py: plain state_dict, keys l1.gcn1.Feature_Mask, "
                   "l1.tcn1.shift_in.ypos, fc.weight)")
    models = ("shiftgcn",)

    def detect(self, ckpt: RawCheckpoint) -> str | None:
        s = ckpt.state
        return "shiftgcn" if "l1.gcn1.Feature_Mask" in s and "l1.tcn1.shift_in.ypos" in s and "fc.weight" in s else None

    def map_keys(self, ckpt: RawCheckpoint, model: str) -> dict[str, torch.Tensor]:
        return from_official_keys(ckpt.state)

    def to_source_keys(self, state: dict[str, torch.Tensor], model: str) -> dict[str, Any]:
        return to_official_keys(state)

    def infer(self, state: dict[str, torch.Tensor], model: str, where: str) -> Inferred:
        f = infer_shiftgcn(state, where)
        return Inferred(f["num_classes"], f["num_joints"], f["in_channels"], f["num_person"], f["kwargs"])
