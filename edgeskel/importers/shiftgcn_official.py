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

from edgeskel.importers.base import ImporterAdapter, Inferred, RawCheckpoint, register_importer
from edgeskel.models.shiftgcn import from_official_keys, infer_shiftgcn, to_official_keys


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
