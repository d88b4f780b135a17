"""ST-GCN++ (Duan et al., PYSKL 2022) as PYSKL implements it: PYSKL's STGCN with
gcn_adaptive="init" (the graph `A` itself is learned), gcn_with_res=True (a residual inside
every `unit_gcn`), tcn_type="mstcn" (six-branch multi-scale temporal conv) and the "spatial"
graph (identity, inward, outward); configs/stgcn++/stgcn++_ntu60_xsub_3dkp/j.py.

Same classes and keys as `stgcn` (stgcn.py), only the defaults differ, so a checkpoint
trained with either imports into the matching name.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch.nn as nn

from edgeskel.errors import ConfigError
from edgeskel.layouts import SkeletonLayout
from edgeskel.models.registry import register_model
from edgeskel.models.stgcn import STGCN, pyskl_graph


@register_model("stgcnpp", family="gcn", description="ST-GCN++ (PYSKL: learned graph, residual GCN, multi-scale TCN)",
                tiny={"layout": "kinect20", "width": 0.125, "num_stages": 5})
def build_stgcnpp(
    num_classes: int,
    layout: SkeletonLayout,
    num_person: int = 2,
    in_channels: int | None = None,
    width: float = 1.0,
    dropout: float = 0.0,
    *,
    base_channels: int | None = None,
    num_stages: int = 10,
    data_bn_type: str = "VC",
    edges: Sequence[Sequence[int]] | None = None,
    **unknown: Any,
) -> nn.Module:
    """ST-GCN++ (PYSKL)."""
    if unknown:
        raise ConfigError(f"stgcnpp: unknown model arguments {sorted(unknown)}")
    if num_stages < 1:
        raise ConfigError(f"stgcnpp: num_stages must be >= 1, got {num_stages}")
    base = base_channels if base_channels is not None else max(6, int(round(64 * width)))
    return STGCN(
        num_classes, pyskl_graph(layout, "spatial", edges), in_channels=in_channels or layout.channels,
        base_channels=base, num_stages=num_stages, data_bn_type=data_bn_type, num_person=num_person,
        dropout=dropout, gcn_adaptive="init", gcn_with_res=True, tcn_type="mstcn",
    )
