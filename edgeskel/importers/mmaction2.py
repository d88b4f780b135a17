"""mmaction2 1.x skeleton recognizers (open-mmlab/mmaction2, `RecognizerGCN` + `GCNHead`).

mmaction2 1.x ships PYSKL's STGCN (ST-GCN and ST-GCN++ settings) and AAGCN backbones with
the same module names (mmaction/models/backbones/{stgcn,aagcn}.py), so backbone keys are
PYSKL's (`backbone.*`); its `GCNHead` names the classifier `fc` instead of `fc_cls`
(`cls_head.fc.weight`). It has no CTR-GCN or MS-G3D backbone. mmengine checkpoints are {"meta", "state_dict", "message_hub",
"optimizer", ...}; only `state_dict` is read.
"""

from __future__ import annotations

from edgeskel.importers.base import RawCheckpoint, register_importer
from edgeskel.importers.pyskl import PysklImporter


@register_importer
class Mmaction2Importer(PysklImporter):
    source = "mmaction2"
    description = ("mmaction2 1.x (open-mmlab/mmaction2, mmengine runner): {meta, state_dict, ...}, keys "
                   "backbone.* and cls_head.fc.*")
    head = "cls_head.fc."
    models = ("stgcn", "stgcnpp", "aagcn")

    def detect(self, ckpt: RawCheckpoint) -> str | None:
        found = super().detect(ckpt)
        return found if found in self.models else None
