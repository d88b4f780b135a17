"""ST-GCN as PYSKL implements it (pyskl/models/gcns/stgcn.py + GCNHead).

Ten blocks (64-64-64-64-128-128-128-256-256-256, stride 2 at blocks 5 and 8), each a
`unit_gcn` with `adaptive="importance"` (fixed graph buffer `A` times a learnable mask `PA`),
a 9x1 `unit_tcn` and a residual; input BN of type "VC" (one BatchNorm1d(V*C) shared by all
persons) or "MVC"; the head averages over T, V, then persons, then applies `fc`.

Keys equal PYSKL's with `backbone.` stripped and `cls_head.fc_cls.` renamed to `fc.`.
The graph contraction `einsum('nkctv,kvw->nctw')` is written as one MatMul + sum so the
exported graph has no Einsum node. The `gcn_adaptive`, `gcn_with_res`, `tcn_type` and `graph`
options are PYSKL's STGCN variants (ST-GCN++ is registered as `stgcnpp` in stgcnpp.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn as nn

from edgeskel.errors import ConfigError
from edgeskel.layouts import SkeletonLayout
from edgeskel.models.blocks import UnitTCN, check_input, make_residual, mvc_data_bn, pool_persons, vc_data_bn
from edgeskel.models.graph import ctrgcn_spatial, stgcn_spatial
from edgeskel.models.pyskl_units import MSTCNpp, UnitGCN, pyskl_block_plan
from edgeskel.models.registry import register_model


class STGCNBlock(nn.Module):
    """PYSKL `STGCNBlock`: unit_gcn -> temporal conv (9x1 `unit_tcn` or ST-GCN++'s `mstcn`)
    + residual, ReLU."""

    def __init__(self, in_channels: int, out_channels: int, A: torch.Tensor, stride: int = 1, residual: bool = True,
                 gcn_adaptive: str = "importance", gcn_with_res: bool = False, tcn_type: str = "unit_tcn"):
        super().__init__()
        self.gcn = UnitGCN(in_channels, out_channels, A, adaptive=gcn_adaptive, with_res=gcn_with_res)
        if tcn_type == "mstcn":
            self.tcn: nn.Module = MSTCNpp(out_channels, out_channels, stride=stride)
        else:
            self.tcn = UnitTCN(out_channels, out_channels, 9, stride=stride)
        self.relu = nn.ReLU()
        self.residual = make_residual(in_channels, out_channels, stride, residual)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.tcn(self.gcn(x))
        if self.residual is not None:
            y = y + self.residual(x)
        return self.relu(y)


class STGCN(nn.Module):
    """Canonical (N, C, T, V, M) in, (N, num_classes) logits out (mean over persons); any T."""

    def __init__(
        self,
        num_classes: int,
        A: torch.Tensor,
        in_channels: int = 3,
        base_channels: int = 64,
        num_stages: int = 10,
        inflate_stages: Sequence[int] = (5, 8),
        down_stages: Sequence[int] = (5, 8),
        ch_ratio: float = 2,
        data_bn_type: str = "VC",
        num_person: int = 2,
        dropout: float = 0.0,
        gcn_adaptive: str = "importance",
        gcn_with_res: bool = False,
        tcn_type: str = "unit_tcn",
    ):
        super().__init__()
        if data_bn_type not in ("VC", "MVC"):
            raise ConfigError(f"stgcn: data_bn_type must be 'VC' or 'MVC', got {data_bn_type!r}")
        if tcn_type not in ("unit_tcn", "mstcn"):
            raise ConfigError(f"stgcn: tcn_type must be 'unit_tcn' or 'mstcn', got {tcn_type!r}")
        v = A.shape[-1]
        self.in_channels, self.num_joints, self.num_person = in_channels, v, num_person
        self.data_bn_type = data_bn_type
        self.data_bn = nn.BatchNorm1d((num_person if data_bn_type == "MVC" else 1) * in_channels * v)
        opts = {"gcn_adaptive": gcn_adaptive, "gcn_with_res": gcn_with_res, "tcn_type": tcn_type}
        plan = pyskl_block_plan(base_channels, num_stages, in_channels, inflate_stages, down_stages, ch_ratio)
        self.gcn = nn.ModuleList(STGCNBlock(ci, co, A, s, r, **opts) for ci, co, s, r in plan)
        c_in = plan[-1][1] if plan else in_channels
        self.drop_out = nn.Dropout(dropout) if dropout else nn.Identity()
        self.fc = nn.Linear(c_in, num_classes)
        nn.init.normal_(self.fc.weight, 0, 0.01)  # PYSKL head: normal_init(fc_cls, std=0.01)
        nn.init.zeros_(self.fc.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x, self.in_channels, self.num_joints, self.num_person if self.data_bn_type == "MVC" else None, "stgcn")
        n, m = x.shape[0], x.shape[4]
        if self.data_bn_type == "VC":
            x = vc_data_bn(self.data_bn, x)
        else:
            x = mvc_data_bn(self.data_bn, x)
        for block in self.gcn:
            x = block(x)
        return self.fc(self.drop_out(pool_persons(x, n, m)))


GRAPH_MODES = ("stgcn_spatial", "spatial")


def pyskl_graph(layout: SkeletonLayout, mode: str, edges: Sequence[Sequence[int]] | None, max_hop: int = 1) -> torch.Tensor:
    """PYSKL Graph(mode=...): "stgcn_spatial" (ST-GCN) or "spatial" (I, inward, outward)."""
    if mode == "stgcn_spatial":
        return torch.from_numpy(stgcn_spatial(layout, edges, max_hop))
    if mode == "spatial":
        return torch.from_numpy(ctrgcn_spatial(layout, edges))
    raise ConfigError(f"graph must be one of {list(GRAPH_MODES)}, got {mode!r}")


@register_model("stgcn", family="gcn", description="ST-GCN (PYSKL implementation, importance-weighted spatial graph)",
                tiny={"layout": "ntu25", "width": 0.125, "num_stages": 5})
def build_stgcn(
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
    max_hop: int = 1,
    graph: str = "stgcn_spatial",
    gcn_adaptive: str = "importance",
    gcn_with_res: bool = False,
    tcn_type: str = "unit_tcn",
    **unknown: Any,
) -> nn.Module:
    """ST-GCN (PYSKL); the gcn_*/tcn_type/graph options cover PYSKL's STGCN variants."""
    if unknown:
        raise ConfigError(f"stgcn: unknown model arguments {sorted(unknown)}")
    if num_stages < 1:
        raise ConfigError(f"stgcn: num_stages must be >= 1, got {num_stages}")
    A = pyskl_graph(layout, graph, edges, max_hop)
    base = base_channels if base_channels is not None else max(1, int(round(64 * width)))
    return STGCN(
        num_classes, A, in_channels=in_channels or layout.channels, base_channels=base, num_stages=num_stages,
        data_bn_type=data_bn_type, num_person=num_person, dropout=dropout, gcn_adaptive=gcn_adaptive,
        gcn_with_res=gcn_with_res, tcn_type=tcn_type,
    )
