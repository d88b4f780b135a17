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

from typing import Any

import torch

from edgeskel.importers.base import ImporterAdapter, Inferred, RawCheckpoint, register_importer
from edgeskel.models.efficientgcn import infer_efficientgcn


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
