"""CTR-GCN as PYSKL implements it (pyskl/models/gcns/ctrgcn.py @ 3f6795f257), which is not
the official CTR-GCN (`ctrgcn`): the aggregation runs over the other joint index
(`x3 @ A`, not `x3 @ A^T`), relation channels are 8 up to 16 input channels, the temporal
part is PYSKL's `MSTCN` (4 branches, ReLU after the concatenation), the graph is PYSKL's
"spatial" one, and a block is relu(tcn1(gcn1(x)) + residual(x)).

Keys equal PYSKL's with `backbone.` stripped and `cls_head.fc_cls.` renamed to `fc.`;
`A` (an unused copy of the initial graph PYSKL keeps as a buffer) is kept so the import can
check the layout against it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn as nn

from edgeskel.errors import ConfigError
from edgeskel.layouts import SkeletonLayout
from edgeskel.models.blocks import check_input, make_residual, mvc_data_bn, pool_persons
from edgeskel.models.pyskl_units import MSTCN, UnitCTRGCN, pyskl_block_plan
from edgeskel.models.registry import register_model
from edgeskel.models.stgcn import pyskl_graph


class CTRGCNBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, A: torch.Tensor, stride: int = 1, residual: bool = True):
        super().__init__()
        self.gcn1 = UnitCTRGCN(in_channels, out_channels, A)
        self.tcn1 = MSTCN(out_channels, out_channels, kernel_size=5, stride=stride, dilations=(1, 2), residual=False)
        self.relu = nn.ReLU()
        self.residual = make_residual(in_channels, out_channels, stride, residual)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.tcn1(self.gcn1(x))
        if self.residual is not None:
            y = y + self.residual(x)
        return self.relu(y)


class PysklCTRGCN(nn.Module):
    """Canonical (N, C, T, V, M) in, (N, num_classes) logits out; any T."""

    def __init__(self, num_classes: int, A: torch.Tensor, in_channels: int = 3, base_channels: int = 64,
                 num_stages: int = 10, num_person: int = 2, dropout: float = 0.0):
        super().__init__()
        v = A.shape[-1]
        self.in_channels, self.num_joints, self.num_person = in_channels, v, num_person
        self.register_buffer("A", A.clone())
        self.data_bn = nn.BatchNorm1d(num_person * in_channels * v)
        # PYSKL always builds the input block (even when in_channels == base_channels)
        plan = [(in_channels, base_channels, 1, False)] + pyskl_block_plan(base_channels, num_stages, base_channels)
        self.net = nn.ModuleList(CTRGCNBlock(ci, co, A, s, r) for ci, co, s, r in plan)
        self.drop_out = nn.Dropout(dropout) if dropout else nn.Identity()
        self.fc = nn.Linear(plan[-1][1], num_classes)
        nn.init.normal_(self.fc.weight, 0, 0.01)
        nn.init.zeros_(self.fc.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x, self.in_channels, self.num_joints, self.num_person, "pyskl_ctrgcn")
        n, m = x.shape[0], x.shape[4]
        x = mvc_data_bn(self.data_bn, x)
        for block in self.net:
            x = block(x)
        return self.fc(self.drop_out(pool_persons(x, n, m)))


@register_model("pyskl_ctrgcn", family="gcn", description="CTR-GCN (PYSKL implementation, differs from the official)",
                tiny={"layout": "kinect20", "width": 0.125, "num_stages": 5})
def build_pyskl_ctrgcn(
    num_classes: int,
    layout: SkeletonLayout,
    num_person: int = 2,
    in_channels: int | None = None,
    width: float = 1.0,
    dropout: float = 0.0,
    *,
    base_channels: int | None = None,
    num_stages: int = 10,
    edges: Sequence[Sequence[int]] | None = None,
    **unknown: Any,
) -> nn.Module:
    """CTR-GCN (PYSKL)."""
    if unknown:
        raise ConfigError(f"pyskl_ctrgcn: unknown model arguments {sorted(unknown)}")
    if num_stages < 1:
        raise ConfigError(f"pyskl_ctrgcn: num_stages must be >= 1, got {num_stages}")
    base = base_channels if base_channels is not None else max(4, int(round(64 * width / 4)) * 4)
    return PysklCTRGCN(num_classes, pyskl_graph(layout, "spatial", edges), in_channels=in_channels or layout.channels,
                       base_channels=base, num_stages=num_stages, num_person=num_person, dropout=dropout)
