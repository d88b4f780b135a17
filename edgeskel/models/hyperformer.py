"""Hyperformer (Zhou et al., 2022) as the official code implements it (model/Hyperformer.py).

Ten `TCN_ViT_unit`s of width 24 * num_heads (216 for 9 heads). Each unit: LayerNorm over
channels, hypergraph self-attention (`MHSA`) whose logits add four terms -- content
(q.k), hop-indexed relative position (q.rpe[hops]), hyperedge (q.e) and hyperedge bias
(w1.e) -- mixed as `(alpha * softmax + outer) @ v`, a grouped 1x1 projection, a skip, then a
multi-scale temporal conv. Hyperedge features `e` are part averages of the joints
(from per-joint body-part labels) projected by `pe_proj` and scattered back to joints.

Export-first rewrite: every einsum is a MatMul/reshape, the one-hot part matrices and hop
indices are precomputed non-persistent buffers (the state_dict keys equal the official
ones), and there is no Python-side shape logic that depends on tensor values.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from edgeskel.errors import ConfigError
from edgeskel.layouts import SkeletonLayout
from edgeskel.models.blocks import (
    MultiScaleTemporalConv,
    bn_init,
    check_input,
    make_residual,
    mvc_data_bn,
    official_tcn_init,
    pool_persons,
)
from edgeskel.models.graph import hop_distances, part_matrices
from edgeskel.models.registry import register_model

PROJ_GROUPS = 6  # official: nn.Conv2d(dim, dim, 1, groups=6)
TCN_BRANCHES = 4  # dilations (1, 2) + max-pool + 1x1


class MHSA(nn.Module):
    def __init__(self, dim_in: int, dim: int, hops: torch.Tensor, num_heads: int):
        super().__init__()
        self.num_heads, self.dim = num_heads, dim
        self.head_dim = dim // num_heads
        self.scale = self.head_dim**-0.5
        v = hops.shape[0]
        self.register_buffer("hops", hops.clone(), persistent=False)
        self.rpe = nn.Parameter(torch.zeros(int(hops.max()) + 1, dim))
        self.w1 = nn.Parameter(torch.zeros(num_heads, self.head_dim))
        self.outer = nn.Parameter(torch.eye(v).repeat(num_heads, 1, 1))
        self.alpha = nn.Parameter(torch.zeros(1))
        self.kv = nn.Conv2d(dim_in, dim * 2, 1, bias=False)
        self.q = nn.Conv2d(dim_in, dim, 1, bias=False)
        self.proj = nn.Conv2d(dim, dim, 1, groups=PROJ_GROUPS)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        """(B, H*d, T, V) -> (B, T, H, V, d)."""
        b, _, t, v = x.shape
        return x.reshape(b, self.num_heads, self.head_dim, t, v).permute(0, 3, 1, 4, 2)

    def forward(self, x: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        """Official MHSA math in an export form with fewer layout ops (issue 20 item 4).

        Why: every permute becomes an ONNX Transpose, a memory copy on ORT and OpenVINO.
        (1) q.k^T + q.e^T = q.(k + e)^T is summed BEFORE the head split, so k and e share
        one split; (2) the hyperedge bias w1.e is a per-head weighted channel sum, computed
        as a grouped 1x1 conv on e in its (B, C, T, V) layout instead of on split heads.
        Measured and NOT kept (scripts/hyperformer_export_form.py, docs/BENCHMARKS.md):
        merging heads with one 5-D permute (one Transpose fewer, but slower on ORT than the
        two single-axis transposes below) and LayerNorm on the channel axis (UnitViT).
        """
        b, _, t, v = x.shape
        h, d = self.num_heads, self.head_dim
        kv = self.kv(x)
        ke, val = self._heads(kv[:, : self.dim] + e), self._heads(kv[:, self.dim :])
        q = self._heads(self.q(x))
        # relative position term b[.., n, m] = q[.., n, :] . rpe[hops[n, m]] (per head):
        # batch the matmul over (head, query joint) with B*T rows each.
        k_r = self.rpe[self.hops].reshape(v, v, h, d).permute(2, 0, 3, 1)  # (H, Vn, d, Vm)
        q_hn = q.permute(2, 3, 0, 1, 4).reshape(h, v, b * t, d)
        pos = torch.matmul(q_hn, k_r).reshape(h, v, b, t, v).permute(2, 3, 0, 1, 4)  # (B, T, H, Vn, Vm)
        logits = torch.matmul(q, ke.transpose(-1, -2)) + pos
        # hyperedge bias sum_c w1[h, c] e[b, h*d + c, t, m]: (B, H, T, V) -> (B, T, H, 1, V)
        bias = F.conv2d(e, self.w1.reshape(h, d, 1, 1), groups=h).permute(0, 2, 1, 3).unsqueeze(3)
        attn = torch.softmax((logits + bias) * self.scale, dim=-1)
        y = torch.matmul(self.alpha * attn + self.outer, val)  # (B, T, H, V, d)
        y = y.transpose(3, 4).reshape(b, t, h * d, v).transpose(1, 2)
        return self.proj(y)


class UnitViT(nn.Module):
    def __init__(self, dim_in: int, dim: int, hops: torch.Tensor, num_heads: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim_in)
        self.attn = MHSA(dim_in, dim, hops, num_heads)
        self.skip_proj = nn.Conv2d(dim_in, dim, 1, bias=False) if dim_in != dim else None
        self.pe_proj = nn.Conv2d(dim_in, dim, 1, bias=False)

    def forward(self, x: torch.Tensor, part_avg: torch.Tensor, part_scatter: torch.Tensor) -> torch.Tensor:
        # hyperedge features: average joints per part, project, copy back to every joint
        e = torch.matmul(self.pe_proj(torch.matmul(x, part_avg)), part_scatter)
        # LayerNorm stays permute -> LayerNorm -> permute: ORT fuses LayerNorm only over the last
        # axis; a mean/var form on dim 1 measured slower there (issue 20 item 4)
        xn = self.norm1(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        skip = x if self.skip_proj is None else self.skip_proj(x)
        return skip + self.attn(xn, e)


class TCNViTUnit(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, hops: torch.Tensor, num_heads: int, stride: int = 1):
        super().__init__()
        self.vit1 = UnitViT(in_channels, out_channels, hops, num_heads)
        self.tcn1 = MultiScaleTemporalConv(out_channels, out_channels, kernel_size=5, stride=stride, dilations=(1, 2))
        self.act = nn.ReLU()
        self.residual = make_residual(in_channels, out_channels, stride, True)

    def forward(self, x: torch.Tensor, part_avg: torch.Tensor, part_scatter: torch.Tensor) -> torch.Tensor:
        y = self.tcn1(self.vit1(x, part_avg, part_scatter))
        assert self.residual is not None
        return self.act(y + self.residual(x))


class Hyperformer(nn.Module):
    """Canonical (N, C, T, V, M) in, (N, num_classes) logits out (mean over persons)."""

    def __init__(
        self,
        num_classes: int,
        hops: torch.Tensor,
        parts: Sequence[int],
        num_person: int = 2,
        in_channels: int = 3,
        num_heads: int = 9,
        head_dim: int = 24,
        num_stages: int = 10,
        dropout: float = 0.0,
    ):
        super().__init__()
        v = hops.shape[0]
        self.in_channels, self.num_joints, self.num_person = in_channels, v, num_person
        part_avg, part_scatter = part_matrices(parts)
        self.register_buffer("part_avg", torch.from_numpy(part_avg), persistent=False)
        self.register_buffer("part_scatter", torch.from_numpy(part_scatter), persistent=False)
        self.data_bn = nn.BatchNorm1d(num_person * in_channels * v)
        dim = head_dim * num_heads
        c_in = in_channels
        strides = [1, 1, 1, 1, 2, 1, 1, 2, 1, 1][:num_stages]
        for i, stride in enumerate(strides, start=1):
            self.add_module(f"l{i}", TCNViTUnit(c_in, dim, hops, num_heads, stride=stride))
            c_in = dim
        self.num_stages = num_stages
        self.drop_out = nn.Dropout(dropout) if dropout else nn.Identity()
        self.fc = nn.Linear(dim, num_classes)
        # official initialisation: temporal blocks, classifier N(0, sqrt(2/K)), data_bn 1/0
        official_tcn_init(self)
        nn.init.normal_(self.fc.weight, 0, (2.0 / num_classes) ** 0.5)
        bn_init(self.data_bn, 1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x, self.in_channels, self.num_joints, self.num_person, "hyperformer")
        n, m = x.shape[0], x.shape[4]
        x = mvc_data_bn(self.data_bn, x)
        for i in range(1, self.num_stages + 1):
            x = getattr(self, f"l{i}")(x, self.part_avg, self.part_scatter)
        return self.fc(self.drop_out(pool_persons(x, n, m)))


def _lcm(*values: int) -> int:
    out = 1
    for v in values:
        out = out * v // math.gcd(out, v)
    return out


@register_model("hyperformer", family="transformer", description="Hyperformer (official implementation, hypergraph self-attention)",
                tiny={"layout": "ntu25", "width": 0.2, "num_heads": 3, "num_stages": 2})
def build_hyperformer(
    num_classes: int,
    layout: SkeletonLayout,
    num_person: int = 2,
    in_channels: int | None = None,
    width: float = 1.0,
    dropout: float = 0.0,
    *,
    num_heads: int = 9,
    head_dim: int | None = None,
    num_stages: int = 10,
    edges: Sequence[Sequence[int]] | None = None,
    parts: Sequence[int] | None = None,
    **unknown: Any,
) -> nn.Module:
    """Hyperformer (official)."""
    if unknown:
        raise ConfigError(f"hyperformer: unknown model arguments {sorted(unknown)}")
    if not 1 <= num_stages <= 10:
        raise ConfigError(f"hyperformer: num_stages must be in 1..10, got {num_stages}")
    if num_heads < 1:
        raise ConfigError(f"hyperformer: num_heads must be >= 1, got {num_heads}")
    # dim = heads * head_dim must divide by the proj groups and the temporal branches
    step = _lcm(num_heads, PROJ_GROUPS, TCN_BRANCHES) // num_heads
    if head_dim is None:
        head_dim = max(step, int(round(24 * width / step)) * step)
    if (head_dim * num_heads) % _lcm(PROJ_GROUPS, TCN_BRANCHES):
        raise ConfigError(
            f"hyperformer: num_heads*head_dim = {head_dim * num_heads} must be a multiple of "
            f"{_lcm(PROJ_GROUPS, TCN_BRANCHES)} (proj groups {PROJ_GROUPS}, {TCN_BRANCHES} temporal branches)"
        )
    labels = list(parts) if parts is not None else list(layout.body_parts)
    if len(labels) != layout.num_joints:
        raise ConfigError(f"hyperformer: {len(labels)} part labels for {layout.num_joints} joints")
    hops = torch.from_numpy(hop_distances(layout, edges))
    return Hyperformer(num_classes, hops, labels, num_person=num_person, in_channels=in_channels or layout.channels,
                       num_heads=num_heads, head_dim=head_dim, num_stages=num_stages, dropout=dropout)
