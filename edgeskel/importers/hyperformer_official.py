"""Official Hyperformer (ZhouYuxuanYX/Hyperformer @ c35d996bcf, `model/Hyperformer.py`).

Checkpoint: `main.py` saves the plain state_dict (keys `l1.vit1.attn.w1`, `fc.weight`).
Hyperformer's NTU graph connects the hand tips to the wrists (unlike our `ntu25` bones) and
its NW-UCLA config uses 3 body parts; both go into the model kwargs so the imported model
(and any model rebuilt from its spec) reproduces the official one.
"""

from __future__ import annotations

from typing import Any

import torch

from edgeskel.importers.base import (
    ImporterAdapter,
    Inferred,
    RawCheckpoint,
    classifier,
    count_indexed,
    data_bn_persons,
    register_importer,
    shape_of,
)
from edgeskel.layouts import SkeletonLayout
from edgeskel.models.graph import NTU25_HANDS_TO_WRIST_EDGES, edges_to_kwarg

# Hyperformer config/ucla/joint.yaml joint_label (torso/head, arms, legs)
HYPERFORMER_UCLA_PARTS = (0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2)


@register_importer
class HyperformerOfficial(ImporterAdapter):
    source = "hyperformer"
    description = "official Hyperformer (ZhouYuxuanYX/Hyperformer main.py: plain state_dict, keys l1.vit1.attn.*)"
    models = ("hyperformer",)

    def detect(self, ckpt: RawCheckpoint) -> str | None:
        s = ckpt.state
        return "hyperformer" if "l1.vit1.attn.w1" in s and "fc.weight" in s else None

    def infer(self, state: dict[str, torch.Tensor], model: str, where: str) -> Inferred:
        v = shape_of(state, "l1.vit1.attn.outer", 3, where)[-1]
        c = shape_of(state, "l1.vit1.attn.q.weight", 4, where)[1]
        kwargs: dict[str, Any] = {}
        heads, head_dim = shape_of(state, "l1.vit1.attn.w1", 2, where)
        if heads != 9:
            kwargs["num_heads"] = heads
        if head_dim != 24:
            kwargs["head_dim"] = head_dim
        stages = count_indexed(state, "l")
        if stages != 10:
            kwargs["num_stages"] = stages
        return Inferred(classifier(state, "fc.weight", where), v, c, data_bn_persons(state, "data_bn.weight", v, c, where),
                        kwargs)

    def graph_kwargs(self, model: str, layout: SkeletonLayout) -> dict[str, Any]:
        if layout.name == "ntu25":
            return {"edges": edges_to_kwarg(NTU25_HANDS_TO_WRIST_EDGES)}
        if layout.name == "kinect20":
            return {"parts": list(HYPERFORMER_UCLA_PARTS)}
        return {}
