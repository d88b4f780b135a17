"""MS-G3D (Liu et al., CVPR 2020) as PYSKL implements it (pyskl/models/gcns/msg3d.py and
utils/msg3d_utils.py @ 3f6795f257, configs/msg3d/msg3d_pyskl_ntu60_xsub_3dkp/j.py).

Three stages (96, 192, 384 channels; T stride 2 in stages 2 and 3). Each adds two paths and
applies ReLU to the sum: a multi-scale spatial GCN (`sgcnN`: MSGCN over 13 hop scales, then
two MS-TCNs) and multi-window G3D blocks (`gcn3dN`: graph convolution over unfolded temporal
windows of 3 and 5 frames, on a (window*V)-node space-time graph with 6 scales), then an
MS-TCN. Graph "binary_adj" (no self loops); every adjacency is a fixed buffer `A` plus a
learned offset `PA`. Keys equal PYSKL's with `backbone.` stripped and `cls_head.fc_cls.`
renamed to `fc.`.

Export-first: the unfold (nn.Unfold in PYSKL) is a pad + constant-step slices, the
`einsum('kvu,nctv->nkctu')` aggregations are one MatMul each, so there is no Einsum, no
im2col and no shape-dependent Python; any T exports.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from edgeskel.errors import ConfigError
from edgeskel.layouts import SkeletonLayout, normalize_digraph
from edgeskel.models.blocks import check_input, mvc_data_bn, pool_persons
from edgeskel.models.graph import resolve_edges
from edgeskel.models.pyskl_units import MSTCN
from edgeskel.models.registry import register_model


def binary_adjacency(layout: SkeletonLayout, edges: Sequence[Sequence[int]] | None = None) -> np.ndarray:
    """PYSKL Graph(mode="binary_adj").A[0]: symmetric 0/1 bones, no self loops, (V, V)."""
    v = layout.num_joints
    a = np.zeros((v, v))
    for i, j in resolve_edges(layout, edges):
        a[j, i] = 1.0
        a[i, j] = 1.0
    return a


def k_adjacency(a: np.ndarray, k: int) -> np.ndarray:
    """PYSKL `k_adjacency(A, k, with_self=True)`: nodes exactly k hops away, plus self loops."""
    eye = np.eye(len(a), dtype=a.dtype)
    if k == 0:
        return eye
    ak = np.minimum(np.linalg.matrix_power(a + eye, k), 1) - np.minimum(np.linalg.matrix_power(a + eye, k - 1), 1)
    return ak + eye


def multiscale(a: np.ndarray, num_scales: int) -> torch.Tensor:
    """(K, V, V) column-normalised k-hop adjacencies, k = 0..K-1."""
    return torch.tensor(np.stack([normalize_digraph(k_adjacency(a, k)) for k in range(num_scales)]), dtype=torch.float32)


def aggregate(x: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    """einsum('kvu,nctv->nkctu') reshaped to (N, K*C, T, U), as one MatMul."""
    n, c, t, v = x.shape
    k = a.shape[0]
    y = torch.matmul(x.reshape(n, c * t, v), a.permute(1, 0, 2).reshape(v, k * v))  # (N, C*T, K*U)
    return y.reshape(n, c, t, k, v).permute(0, 3, 1, 2, 4).reshape(n, k * c, t, v)


class MLP(nn.Module):
    """PYSKL msg3d `MLP` with one layer: 1x1 conv, BN, optional ReLU (keys layers.0/1)."""

    def __init__(self, in_channels: int, out_channels: int, act: bool = True):
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(in_channels, out_channels, 1), nn.BatchNorm2d(out_channels)]
        if act:
            layers.append(nn.ReLU())
        self.layers = nn.ModuleList(layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return x


class MSGCN(nn.Module):
    """Multi-scale GCN: aggregate with every hop scale of (A + PA), then MLP."""

    def __init__(self, num_scales: int, in_channels: int, out_channels: int, a: np.ndarray):
        super().__init__()
        self.register_buffer("A", multiscale(a, num_scales))
        self.PA = nn.Parameter(torch.zeros_like(self.A))
        self.mlp = MLP(in_channels * num_scales, out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(aggregate(x, self.A + self.PA))


class UnfoldTemporalWindows(nn.Module):
    """(N, C, T, V) -> (N, C, T', window*V): the frames of each temporal window side by side
    (PYSKL does this with nn.Unfold; here a zero pad and `window` constant-step slices)."""

    temporal_stride_attr = "stride"  # models/temporal.py: it strides T itself (streaming, stride removal)

    def __init__(self, window_size: int, window_stride: int, window_dilation: int = 1):
        super().__init__()
        self.size, self.stride, self.dilation = window_size, window_stride, window_dilation
        self.padding = (window_size + (window_size - 1) * (window_dilation - 1) - 1) // 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, _, v = x.shape
        x = F.pad(x, (0, 0, self.padding, self.padding))
        span = (self.size - 1) * self.dilation
        parts = []
        for w in range(self.size):
            start, end = w * self.dilation, w * self.dilation - span
            parts.append(x[:, :, start: end if end < 0 else None: self.stride])
        return torch.stack(parts, 3).reshape(n, c, -1, self.size * v)


class STMSGCN(nn.Module):
    """PYSKL `ST_MSGCN`: multi-scale GCN on the space-time graph of one window (the
    self-looped skeleton tiled window x window), no residual, ReLU."""

    def __init__(self, in_channels: int, out_channels: int, a: np.ndarray, num_scales: int, window_size: int):
        super().__init__()
        big = np.tile(a + np.eye(len(a), dtype=a.dtype), (window_size, window_size))
        self.register_buffer("A", multiscale(big, num_scales))
        self.PA = nn.Parameter(torch.zeros_like(self.A))
        self.mlp = MLP(in_channels * num_scales, out_channels)
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.mlp(aggregate(x, self.A + self.PA)))


class MSG3DBlock(nn.Module):
    """One window size: unfold -> ST-MSGCN -> Conv3d collapsing the window -> BN (no activation)."""

    def __init__(self, in_channels: int, out_channels: int, a: np.ndarray, num_scales: int, window_size: int,
                 window_stride: int):
        super().__init__()
        self.window_size = window_size
        # PYSKL (embed_factor=1): the first block (3 input channels) widens right away, the
        # others only in out_conv; `== 3` is literally what PYSKL tests
        self.embed_out = out_channels if in_channels == 3 else in_channels
        self.gcn3d = nn.Sequential(UnfoldTemporalWindows(window_size, window_stride),
                                   STMSGCN(in_channels, self.embed_out, a, num_scales, window_size))
        self.out_conv = nn.Conv3d(self.embed_out, out_channels, kernel_size=(1, window_size, 1))
        self.out_bn = nn.BatchNorm2d(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, _, _, v = x.shape
        x = self.gcn3d(x).reshape(n, self.embed_out, -1, self.window_size, v)
        return self.out_bn(self.out_conv(x).squeeze(3))


class MWMSG3DBlock(nn.Module):
    """Sum of MSG3D blocks over several window sizes."""

    def __init__(self, in_channels: int, out_channels: int, a: np.ndarray, num_scales: int,
                 window_sizes: Sequence[int], window_stride: int):
        super().__init__()
        self.gcn3d = nn.ModuleList(MSG3DBlock(in_channels, out_channels, a, num_scales, ws, window_stride)
                                   for ws in window_sizes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.gcn3d[0](x)
        for block in self.gcn3d[1:]:
            out = out + block(x)
        return out


class MSG3D(nn.Module):
    """Canonical (N, C, T, V, M) in, (N, num_classes) logits out; any T."""

    def __init__(self, num_classes: int, a: np.ndarray, in_channels: int = 3, base_channels: int = 96,
                 num_gcn_scales: int = 13, num_g3d_scales: int = 6, window_sizes: Sequence[int] = (3, 5),
                 num_person: int = 2, dropout: float = 0.0):
        super().__init__()
        v = a.shape[-1]
        self.in_channels, self.num_joints, self.num_person = in_channels, v, num_person
        self.register_buffer("A", torch.tensor(a, dtype=torch.float32))
        self.data_bn = nn.BatchNorm1d(num_person * in_channels * v)
        c1, c2, c3 = base_channels, base_channels * 2, base_channels * 4
        ws = list(window_sizes)
        self.gcn3d1 = MWMSG3DBlock(in_channels, c1, a, num_g3d_scales, ws, 1)
        self.sgcn1 = nn.Sequential(MSGCN(num_gcn_scales, in_channels, c1, a), MSTCN(c1, c1), MSTCN(c1, c1, act=False))
        self.tcn1 = MSTCN(c1, c1)
        self.gcn3d2 = MWMSG3DBlock(c1, c2, a, num_g3d_scales, ws, 2)
        self.sgcn2 = nn.Sequential(MSGCN(num_gcn_scales, c1, c1, a), MSTCN(c1, c2, stride=2), MSTCN(c2, c2, act=False))
        self.tcn2 = MSTCN(c2, c2)
        self.gcn3d3 = MWMSG3DBlock(c2, c3, a, num_g3d_scales, ws, 2)
        self.sgcn3 = nn.Sequential(MSGCN(num_gcn_scales, c2, c2, a), MSTCN(c2, c3, stride=2), MSTCN(c3, c3, act=False))
        self.tcn3 = MSTCN(c3, c3)
        self.relu = nn.ReLU()
        self.drop_out = nn.Dropout(dropout) if dropout else nn.Identity()
        self.fc = nn.Linear(c3, num_classes)
        nn.init.normal_(self.fc.weight, 0, 0.01)
        nn.init.zeros_(self.fc.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x, self.in_channels, self.num_joints, self.num_person, "msg3d")
        n, m = x.shape[0], x.shape[4]
        x = mvc_data_bn(self.data_bn, x)
        x = self.tcn1(self.relu(self.sgcn1(x) + self.gcn3d1(x)))
        x = self.tcn2(self.relu(self.sgcn2(x) + self.gcn3d2(x)))
        x = self.tcn3(self.relu(self.sgcn3(x) + self.gcn3d3(x)))
        return self.fc(self.drop_out(pool_persons(x, n, m)))


@register_model("msg3d", family="gcn", description="MS-G3D (PYSKL implementation: multi-scale + space-time windows)",
                tiny={"layout": "kinect20", "width": 0.125, "num_gcn_scales": 4, "num_g3d_scales": 3, "window_sizes": [3]})
def build_msg3d(
    num_classes: int,
    layout: SkeletonLayout,
    num_person: int = 2,
    in_channels: int | None = None,
    width: float = 1.0,
    dropout: float = 0.0,
    *,
    base_channels: int | None = None,
    num_gcn_scales: int = 13,
    num_g3d_scales: int = 6,
    window_sizes: Sequence[int] = (3, 5),
    edges: Sequence[Sequence[int]] | None = None,
    **unknown: Any,
) -> nn.Module:
    """MS-G3D (PYSKL)."""
    if unknown:
        raise ConfigError(f"msg3d: unknown model arguments {sorted(unknown)}")
    if num_gcn_scales < 1 or num_g3d_scales < 1 or not window_sizes or any(int(w) < 1 for w in window_sizes):
        raise ConfigError("msg3d: scales must be >= 1 and window_sizes a non-empty list of positive sizes")
    base = base_channels if base_channels is not None else max(6, int(round(96 * width / 6)) * 6)
    return MSG3D(num_classes, binary_adjacency(layout, edges), in_channels=in_channels or layout.channels,
                 base_channels=base, num_gcn_scales=num_gcn_scales, num_g3d_scales=num_g3d_scales,
                 window_sizes=[int(w) for w in window_sizes], num_person=num_person, dropout=dropout)
