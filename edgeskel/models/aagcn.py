"""AAGCN (Shi et al., 2s-AGCN/MS-AAGCN, TIP 2020) as PYSKL implements it
(pyskl/models/gcns/aagcn.py @ 3f6795f257, configs/aagcn/aagcn_pyskl_ntu60_xsub_3dkp/j.py).

Ten blocks like ST-GCN (64-...-256, stride 2 at 5 and 8), each `unit_aagcn` (learned graph
`A` plus a data-dependent graph tanh(conv_a^T conv_b) * alpha, then spatial, temporal and
channel attention) -> 9x1 `unit_tcn` + residual; "MVC" input BN; the "spatial" graph.
Keys equal PYSKL's with `backbone.` stripped and `cls_head.fc_cls.` renamed to `fc.`;
the root `A` (PYSKL's unused copy of the initial graph) is kept for the import's layout check.
Every product is a MatMul (no Einsum); the attention normalises by inter*T from the input's
shape, so any T exports.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn as nn

from edgeskel.errors import ConfigError
from edgeskel.layouts import SkeletonLayout
from edgeskel.models.blocks import UnitTCN, check_input, make_residual, mvc_data_bn, pool_persons
from edgeskel.models.pyskl_units import UnitAAGCN, pyskl_block_plan
from edgeskel.models.registry import register_model
from edgeskel.models.stgcn import pyskl_graph


class AAGCNBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, A: torch.Tensor, stride: int = 1, residual: bool = True,
                 adaptive: bool = True, attention: bool = True):
        super().__init__()
        self.gcn = UnitAAGCN(in_channels, out_channels, A, adaptive=adaptive, attention=attention)
        self.tcn = UnitTCN(out_channels, out_channels, 9, stride=stride)
        self.relu = nn.ReLU()
        self.residual = make_residual(in_channels, out_channels, stride, residual)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.tcn(self.gcn(x))
        if self.residual is not None:
            y = y + self.residual(x)
        return self.relu(y)


class AAGCN(nn.Module):
    """Canonical (N, C, T, V, M) in, (N, num_classes) logits out; any T."""

    def __init__(self, num_classes: int, A: torch.Tensor, in_channels: int = 3, base_channels: int = 64,
                 num_stages: int = 10, num_person: int = 2, dropout: float = 0.0, adaptive: bool = True,
                 attention: bool = True):
        super().__init__()
        v = A.shape[-1]
        self.in_channels, self.num_joints, self.num_person = in_channels, v, num_person
        self.register_buffer("A", A.clone())
        self.data_bn = nn.BatchNorm1d(num_person * in_channels * v)
        plan = pyskl_block_plan(base_channels, num_stages, in_channels)
        self.gcn = nn.ModuleList(AAGCNBlock(ci, co, A, s, r, adaptive, attention) for ci, co, s, r in plan)
        self.drop_out = nn.Dropout(dropout) if dropout else nn.Identity()
        self.fc = nn.Linear(plan[-1][1] if plan else in_channels, num_classes)
        nn.init.normal_(self.fc.weight, 0, 0.01)
        nn.init.zeros_(self.fc.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x, self.in_channels, self.num_joints, self.num_person, "aagcn")
        n, m = x.shape[0], x.shape[4]
        x = mvc_data_bn(self.data_bn, x)
        for block in self.gcn:
            x = block(x)
        return self.fc(self.drop_out(pool_persons(x, n, m)))


@register_model("aagcn", family="gcn", description="AAGCN (PYSKL implementation: adaptive graph + attention)",
                tiny={"layout": "kinect20", "width": 0.125, "num_stages": 5})
def build_aagcn(
    num_classes: int,
    layout: SkeletonLayout,
    num_person: int = 2,
    in_channels: int | None = None,
    width: float = 1.0,
    dropout: float = 0.0,
    *,
    base_channels: int | None = None,
    num_stages: int = 10,
    adaptive: bool = True,
    attention: bool = True,
    edges: Sequence[Sequence[int]] | None = None,
    **unknown: Any,
) -> nn.Module:
    """AAGCN (PYSKL)."""
    if unknown:
        raise ConfigError(f"aagcn: unknown model arguments {sorted(unknown)}")
    if num_stages < 1:
        raise ConfigError(f"aagcn: num_stages must be >= 1, got {num_stages}")
    base = base_channels if base_channels is not None else max(8, int(round(64 * width / 4)) * 4)
    return AAGCN(num_classes, pyskl_graph(layout, "spatial", edges), in_channels=in_channels or layout.channels,
                 base_channels=base, num_stages=num_stages, num_person=num_person, dropout=dropout,
                 adaptive=adaptive, attention=attention)
