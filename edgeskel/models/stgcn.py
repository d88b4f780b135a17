"""ST-GCN as PYSKL implements it (pyskl/models/gcns/stgcn.py + GCNHead).

Ten blocks (64-64-64-64-128-128-128-256-256-256, stride 2 at blocks 5 and 8), each a
`unit_gcn` with `adaptive="importance"` (fixed graph buffer `A` times a learnable mask `PA`),
a 9x1 `unit_tcn` and a residual; input BN of type "VC" (one BatchNorm1d(V*C) shared by all
persons) or "MVC"; the head averages over T, V, then persons, then applies `fc`.

Keys equal PYSKL's with `backbone.` stripped and `cls_head.fc_cls.` renamed to `fc.`.
The graph contraction `einsum('nkctv,kvw->nctw')` is written as one MatMul + sum so the
exported graph has no Einsum node.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn as nn

from edgeskel.errors import ConfigError
from edgeskel.layouts import SkeletonLayout
from edgeskel.models.blocks import UnitTCN, check_input, make_residual, mvc_data_bn, pool_persons, vc_data_bn
from edgeskel.models.graph import stgcn_spatial
from edgeskel.models.registry import register_model


class UnitGCN(nn.Module):
    """PYSKL `unit_gcn` (conv_pos="pre", adaptive="importance"): 1x1 conv to K*C channels,
    aggregate over the K graph subsets with A * PA, then BN + ReLU."""

    def __init__(self, in_channels: int, out_channels: int, A: torch.Tensor):
        super().__init__()
        self.num_subsets = A.shape[0]
        self.out_channels = out_channels
        self.register_buffer("A", A.clone())  # persistent: PYSKL keeps it in the state_dict
        self.PA = nn.Parameter(torch.ones_like(A))
        self.conv = nn.Conv2d(in_channels, out_channels * self.num_subsets, 1)
        self.bn = nn.BatchNorm2d(out_channels)
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, _, t, v = x.shape
        k, c = self.num_subsets, self.out_channels
        a = self.A * self.PA  # (K, V, W)
        y = self.conv(x).reshape(n, k, c * t, v)
        y = torch.matmul(y, a).sum(1).reshape(n, c, t, v)
        return self.act(self.bn(y))


class STGCNBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, A: torch.Tensor, stride: int = 1, residual: bool = True):
        super().__init__()
        self.gcn = UnitGCN(in_channels, out_channels, A)
        self.tcn = UnitTCN(out_channels, out_channels, 9, stride=stride)
        self.relu = nn.ReLU()
        self.residual = make_residual(in_channels, out_channels, stride, residual)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.tcn(self.gcn(x))
        if self.residual is not None:
            y = y + self.residual(x)
        return self.relu(y)


class STGCN(nn.Module):
    """Canonical (N, C, T, V, M) in, (N, num_classes) logits out (mean over persons)."""

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
    ):
        super().__init__()
        if data_bn_type not in ("VC", "MVC"):
            raise ConfigError(f"stgcn: data_bn_type must be 'VC' or 'MVC', got {data_bn_type!r}")
        v = A.shape[-1]
        self.in_channels, self.num_joints, self.num_person = in_channels, v, num_person
        self.data_bn_type = data_bn_type
        self.data_bn = nn.BatchNorm1d((num_person if data_bn_type == "MVC" else 1) * in_channels * v)
        blocks: list[nn.Module] = []
        if in_channels != base_channels:
            blocks.append(STGCNBlock(in_channels, base_channels, A, 1, residual=False))
        c_in, inflate = base_channels, 0
        for i in range(2, num_stages + 1):
            stride = 1 + (i in down_stages)
            if i in inflate_stages:
                inflate += 1
            c_out = int(base_channels * ch_ratio**inflate + 1e-4)
            blocks.append(STGCNBlock(c_in, c_out, A, stride))
            c_in = c_out
        self.gcn = nn.ModuleList(blocks)
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


@register_model("stgcn", family="gcn", description="ST-GCN (PYSKL implementation, importance-weighted spatial graph)")
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
    **unknown: Any,
) -> nn.Module:
    """ST-GCN (PYSKL)."""
    if unknown:
        raise ConfigError(f"stgcn: unknown model arguments {sorted(unknown)}")
    if num_stages < 1:
        raise ConfigError(f"stgcn: num_stages must be >= 1, got {num_stages}")
    A = torch.from_numpy(stgcn_spatial(layout, edges, max_hop))
    base = base_channels if base_channels is not None else max(1, int(round(64 * width)))
    return STGCN(
        num_classes, A, in_channels=in_channels or layout.channels, base_channels=base, num_stages=num_stages,
        data_bn_type=data_bn_type, num_person=num_person, dropout=dropout,
    )
