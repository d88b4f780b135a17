"""Official CTR-GCN (Uason-Chen/CTR-GCN @ e13d7582e2, `model/ctrgcn.py`).

Checkpoint: `main.py` saves `torch.save(OrderedDict)` of the plain state_dict (keys
`l1.gcn1.PA`, `fc.weight`, ... with `num_batches_tracked`); a leftover DataParallel `module.`
prefix is stripped by the reader. Our `ctrgcn` model uses the same key names.
"""

from __future__ import annotations

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


@register_importer
class CTRGCNOfficial(ImporterAdapter):
    source = "ctrgcn"
    description = "official CTR-GCN (Uason-Chen/CTR-GCN main.py: plain state_dict, keys l1.gcn1.PA, fc.weight)"
    models = ("ctrgcn",)

    def detect(self, ckpt: RawCheckpoint) -> str | None:
        s = ckpt.state
        return "ctrgcn" if "l1.gcn1.PA" in s and "l1.gcn1.convs.0.conv4.weight" in s and "fc.weight" in s else None

    def infer(self, state: dict[str, torch.Tensor], model: str, where: str) -> Inferred:
        v = shape_of(state, "l1.gcn1.PA", 3, where)[-1]
        first = shape_of(state, "l1.gcn1.convs.0.conv3.weight", 4, where)
        c = first[1]
        kwargs: dict = {}
        if first[0] != 64:
            kwargs["base_channels"] = first[0]
        stages = count_indexed(state, "l")
        if stages != 10:
            kwargs["num_stages"] = stages
        return Inferred(classifier(state, "fc.weight", where), v, c, data_bn_persons(state, "data_bn.weight", v, c, where),
                        kwargs)
