"""PYSKL's GCN building blocks (pyskl/models/gcns/utils/{gcn,tcn,msg3d_utils}.py @ 3f6795f257),
written for export: every graph contraction is a MatMul (no Einsum), no Python branches on
tensor values, no in-place ops. Module and attribute names equal PYSKL's, so its state_dict
keys load unchanged (`backbone.` stripped).

Shared by `stgcn`, `stgcnpp`, `pyskl_ctrgcn`, `aagcn` and `msg3d`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn

from edgeskel.errors import ConfigError
from edgeskel.models.blocks import UnitTCN
from edgeskel.models.export_form import rewrites_enabled

ADAPTIVE_MODES = ("importance", "offset", "init")
MSTCN_PP_CFG: tuple = ((3, 1), (3, 2), (3, 3), (3, 4), ("max", 3), "1x1")


class UnitGCN(nn.Module):
    """PYSKL `unit_gcn` (conv_pos="pre"): 1x1 conv to K*C channels, aggregate over the K graph
    subsets, BN (+ residual `down` when with_res), ReLU. Adaptive graph: "importance" A*PA,
    "offset" A+PA (A a fixed buffer, PA learnable), "init" A learnable."""

    def __init__(self, in_channels: int, out_channels: int, A: torch.Tensor, adaptive: str = "importance",
                 with_res: bool = False):
        super().__init__()
        if adaptive not in ADAPTIVE_MODES:
            raise ConfigError(f"gcn_adaptive must be one of {list(ADAPTIVE_MODES)}, got {adaptive!r}")
        self.num_subsets, self.out_channels, self.adaptive = A.shape[0], out_channels, adaptive
        if adaptive == "init":
            self.A = nn.Parameter(A.clone())
        else:
            self.register_buffer("A", A.clone())  # persistent: PYSKL keeps it in the state_dict
            self.PA = nn.Parameter(torch.ones_like(A) if adaptive == "importance" else torch.zeros_like(A))
        self.conv = nn.Conv2d(in_channels, out_channels * self.num_subsets, 1)
        self.down: nn.Module | None = None
        if with_res:
            self.down = (nn.Sequential(nn.Conv2d(in_channels, out_channels, 1), nn.BatchNorm2d(out_channels))
                         if in_channels != out_channels else nn.Identity())
        self.bn = nn.BatchNorm2d(out_channels)
        self.act = nn.ReLU()

    def graph(self) -> torch.Tensor:
        if self.adaptive == "importance":
            return self.A * self.PA
        if self.adaptive == "offset":
            return self.A + self.PA
        return self.A

    # ONNX export form of the aggregation (scripts/stgcn_export_form.py, docs/BENCHMARKS.md):
    # "post" aggregates first and mixes channels after (a dilated conv); "concat" the same with
    # K MatMuls + Concat + 1x1 conv (measured, slower than "post"); "pre" is PYSKL's order.
    # Training and eager evaluation always run "pre" (PYSKL's numerics; compression hooks see
    # `conv` called); benchmark baselines export "pre" (`export_form.original_forms`).
    export_form = "post"

    def _split_conv(self) -> tuple[nn.Module | None, torch.Tensor, torch.Tensor | None] | None:
        """(what runs before the last 1x1 conv, its (K*C, R) weight, its bias) when `conv` is a
        plain 1x1 conv or a factorized one ending in a 1x1 conv (edgeskel's `LowRankConv1x1`);
        None for any other structure (then the export keeps the "pre" form)."""
        conv, pre = self.conv, None
        if isinstance(conv, nn.Sequential) and len(conv) > 1:
            head = list(conv)
            pre, conv = (head[0] if len(head) == 2 else nn.Sequential(*head[:-1])), head[-1]
        if (isinstance(conv, nn.Conv2d) and conv.kernel_size == (1, 1) and conv.groups == 1 and conv.stride == (1, 1)
                and conv.padding == (0, 0) and conv.dilation == (1, 1)):
            return pre, conv.weight[:, :, 0, 0], conv.bias
        return None

    def _forward_post(self, x: torch.Tensor, pre: nn.Module | None, w: torch.Tensor,
                      b: torch.Tensor | None) -> torch.Tensor:
        """Same function as the "pre" form with BN in inference mode:
        z2 = pre(x) @ [G_0 | ... | G_K-1] (one MatMul on R <= C_in channels, no Reshape/ReduceSum),
        then a (1, K) conv with dilation V sums W_k z G_k over k, BN folded into it; the conv
        bias through the graph is the constant sum_k b_k colsum(G_k), a (C, V) Add."""
        g = self.graph()
        k, v, c = g.shape[0], g.shape[-1], self.out_channels
        z = pre(x) if pre is not None else x
        bn = self.bn
        scale = torch.rsqrt(bn.running_var + bn.eps)
        if bn.weight is not None:
            scale = scale * bn.weight
        shift = -bn.running_mean * scale + (bn.bias if bn.bias is not None else 0.0)
        if self.export_form == "concat":  # K MatMuls, channel concat, one 1x1 conv over (k, r)
            z2 = torch.cat([torch.matmul(z, g[i]) for i in range(k)], dim=1)
            wk = w.reshape(k, c, w.shape[1]).permute(1, 0, 2).reshape(c, -1, 1, 1) * scale.reshape(c, 1, 1, 1)
            y = torch.nn.functional.conv2d(z2, wk, shift)
        else:
            z2 = torch.matmul(z, g.permute(1, 0, 2).reshape(v, k * v))
            wk = w.reshape(k, c, w.shape[1]).permute(1, 2, 0).unsqueeze(2) * scale.reshape(c, 1, 1, 1)
            y = torch.nn.functional.conv2d(z2, wk, shift, dilation=(1, v))
        if b is not None:
            y = y + ((b.reshape(k, c, 1) * g.sum(1).unsqueeze(1)).sum(0) * scale.reshape(c, 1)).reshape(1, c, 1, v)
        return y

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (self.export_form in ("post", "concat") and not self.training and torch.onnx.is_in_onnx_export()
                and rewrites_enabled()):
            parts = self._split_conv()
            if parts is not None and self.bn.track_running_stats and self.bn.running_var is not None:
                y = self._forward_post(x, *parts)
                if self.down is not None:
                    y = y + self.down(x)
                return self.act(y)
        n, _, t, v = x.shape
        k, c = self.num_subsets, self.out_channels
        y = self.conv(x).reshape(n, k, c * t, v)
        y = torch.matmul(y, self.graph()).sum(1).reshape(n, c, t, v)  # einsum('nkctv,kvw->nctw')
        y = self.bn(y)
        if self.down is not None:
            y = y + self.down(x)
        return self.act(y)


class TemporalConvNoBN(nn.Module):
    """PYSKL `unit_tcn(norm=None)`: the k x 1 conv alone (keys conv.*)."""

    def __init__(self, channels: int, kernel_size: int, stride: int, dilation: int):
        super().__init__()
        pad = (kernel_size + (kernel_size - 1) * (dilation - 1) - 1) // 2
        self.conv = nn.Conv2d(channels, channels, (kernel_size, 1), padding=(pad, 0), stride=(stride, 1),
                              dilation=(dilation, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class MSTCNpp(nn.Module):
    """PYSKL `mstcn` (ST-GCN++): branches (1x1 -> BN -> ReLU -> dilated k x 1 conv), a max-pool
    branch and a strided 1x1 conv; branch 0 takes the channel remainder; the concatenation goes
    through BN -> ReLU -> 1x1 conv, then `bn`."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, ms_cfg: Sequence = MSTCN_PP_CFG):
        super().__init__()
        nb = len(ms_cfg)
        mid = out_channels // nb
        rem = out_channels - mid * (nb - 1)
        branches: list[nn.Module] = []
        for i, cfg in enumerate(ms_cfg):
            bc = rem if i == 0 else mid
            if cfg == "1x1":
                branches.append(nn.Conv2d(in_channels, bc, 1, stride=(stride, 1)))
            elif cfg[0] == "max":
                branches.append(nn.Sequential(
                    nn.Conv2d(in_channels, bc, 1), nn.BatchNorm2d(bc), nn.ReLU(),
                    nn.MaxPool2d((int(cfg[1]), 1), stride=(stride, 1), padding=(1, 0))))
            else:
                branches.append(nn.Sequential(
                    nn.Conv2d(in_channels, bc, 1), nn.BatchNorm2d(bc), nn.ReLU(),
                    TemporalConvNoBN(bc, int(cfg[0]), stride, int(cfg[1]))))
        self.branches = nn.ModuleList(branches)
        tin = mid * (nb - 1) + rem
        self.transform = nn.Sequential(nn.BatchNorm2d(tin), nn.ReLU(), nn.Conv2d(tin, out_channels, 1))
        self.bn = nn.BatchNorm2d(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.transform(torch.cat([b(x) for b in self.branches], 1)))


class MSTCN(nn.Module):
    """PYSKL `MSTCN` (MS-G3D style; also PYSKL CTR-GCN's tcn1): one (1x1 -> BN -> ReLU ->
    dilated k x 1 `unit_tcn` with BN) branch per dilation, a max-pool branch, and a strided 1x1
    branch that takes the channel remainder; + residual, then ReLU (`act`, which MS-G3D sets to
    identity for the last MSTCN of each `sgcn` path)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1,
                 dilations: Sequence[int] = (1, 2, 3, 4), residual: bool = True, act: bool = True):
        super().__init__()
        nb = len(dilations) + 2
        bc = out_channels // nb
        rem = out_channels - bc * (nb - 1)
        branches: list[nn.Module] = [
            nn.Sequential(nn.Conv2d(in_channels, bc, 1), nn.BatchNorm2d(bc), nn.ReLU(),
                          UnitTCN(bc, bc, kernel_size, stride=stride, dilation=d))
            for d in dilations
        ]
        branches.append(nn.Sequential(
            nn.Conv2d(in_channels, bc, 1), nn.BatchNorm2d(bc), nn.ReLU(),
            nn.MaxPool2d((3, 1), stride=(stride, 1), padding=(1, 0)), nn.BatchNorm2d(bc)))
        branches.append(nn.Sequential(nn.Conv2d(in_channels, rem, 1, stride=(stride, 1)), nn.BatchNorm2d(rem)))
        self.branches = nn.ModuleList(branches)
        self.residual: nn.Module | None = None
        if residual:
            self.residual = (nn.Identity() if in_channels == out_channels and stride == 1
                             else UnitTCN(in_channels, out_channels, 1, stride=stride))
        self.act: nn.Module = nn.ReLU() if act else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.cat([b(x) for b in self.branches], 1)
        if self.residual is not None:
            y = y + self.residual(x)
        return self.act(y)


class PysklCTRGC(nn.Module):
    """PYSKL `CTRGC`. Differs from the official CTR-GCN's: relation channels are 8 for
    in_channels <= 16 (else in/8), and the aggregation is `x3 @ (conv4(rel)*alpha + A)` over
    the first joint index (einsum 'ncuv,nctu->nctv'), not its transpose."""

    def __init__(self, in_channels: int, out_channels: int, rel_reduction: int = 8):
        super().__init__()
        self.rel_channels = 8 if in_channels <= 16 else in_channels // rel_reduction
        self.conv1 = nn.Conv2d(in_channels, self.rel_channels, 1)
        self.conv2 = nn.Conv2d(in_channels, self.rel_channels, 1)
        self.conv3 = nn.Conv2d(in_channels, out_channels, 1)
        self.conv4 = nn.Conv2d(self.rel_channels, out_channels, 1)
        self.tanh = nn.Tanh()

    def forward(self, x: torch.Tensor, a: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
        x1, x2, x3 = self.conv1(x).mean(-2), self.conv2(x).mean(-2), self.conv3(x)
        rel = self.conv4(self.tanh(x1.unsqueeze(-1) - x2.unsqueeze(-2))) * alpha  # (N, C, U, V)
        # x3 @ (rel + a): the shared (V, V) topology kept as its own product so OpenVINO does not
        # fold conv4's bias and `a` into a (C, V, V) constant (see ctrgcn.CTRGC)
        return torch.matmul(x3, rel) + torch.matmul(x3, a)


class UnitCTRGCN(nn.Module):
    """PYSKL `unit_ctrgcn`: sum of K CTRGC subsets over a learnable graph `A`, one shared
    `alpha`, BN, + down(x), ReLU."""

    def __init__(self, in_channels: int, out_channels: int, A: torch.Tensor):
        super().__init__()
        self.num_subset = A.shape[0]
        self.convs = nn.ModuleList(PysklCTRGC(in_channels, out_channels) for _ in range(self.num_subset))
        self.down: nn.Module = (nn.Sequential(nn.Conv2d(in_channels, out_channels, 1), nn.BatchNorm2d(out_channels))
                                if in_channels != out_channels else nn.Identity())
        self.A = nn.Parameter(A.clone())
        self.alpha = nn.Parameter(torch.zeros(1))
        self.bn = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.convs[0](x, self.A[0], self.alpha)
        for i in range(1, self.num_subset):
            y = y + self.convs[i](x, self.A[i], self.alpha)
        return self.relu(self.bn(y) + self.down(x))


class UnitAAGCN(nn.Module):
    """PYSKL `unit_aagcn`: per subset, x @ (A_i + tanh(conv_a^T conv_b / (inter*T)) * alpha)
    then a 1x1 conv_d; BN + down(x), ReLU; then spatial, temporal and channel attention, each
    applied as y * s + y."""

    def __init__(self, in_channels: int, out_channels: int, A: torch.Tensor, coff_embedding: int = 4,
                 adaptive: bool = True, attention: bool = True):
        super().__init__()
        self.inter_c = out_channels // coff_embedding
        self.num_subset = A.shape[0]
        self.adaptive, self.attention = adaptive, attention
        v = A.shape[-1]
        self.conv_d = nn.ModuleList(nn.Conv2d(in_channels, out_channels, 1) for _ in range(self.num_subset))
        if adaptive:
            self.A = nn.Parameter(A.clone())
            self.alpha = nn.Parameter(torch.zeros(1))
            self.conv_a = nn.ModuleList(nn.Conv2d(in_channels, self.inter_c, 1) for _ in range(self.num_subset))
            self.conv_b = nn.ModuleList(nn.Conv2d(in_channels, self.inter_c, 1) for _ in range(self.num_subset))
        else:
            self.register_buffer("A", A.clone())
        if attention:
            self.conv_ta = nn.Conv1d(out_channels, 1, 9, padding=4)
            ker = v if v % 2 else v - 1
            self.conv_sa = nn.Conv1d(out_channels, 1, ker, padding=(ker - 1) // 2)
            self.fc1c = nn.Linear(out_channels, out_channels // 2)
            self.fc2c = nn.Linear(out_channels // 2, out_channels)
        self.down: nn.Module = (nn.Sequential(nn.Conv2d(in_channels, out_channels, 1), nn.BatchNorm2d(out_channels))
                                if in_channels != out_channels else nn.Identity())
        self.bn = nn.BatchNorm2d(out_channels)
        self.tan = nn.Tanh()
        self.sigmoid = nn.Sigmoid()
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, t, v = x.shape
        flat = x.reshape(n, c * t, v)
        y: torch.Tensor | None = None
        for i in range(self.num_subset):
            a = self.A[i]
            if self.adaptive:
                a1 = self.conv_a[i](x).permute(0, 3, 1, 2).reshape(n, v, self.inter_c * t)
                a2 = self.conv_b[i](x).reshape(n, self.inter_c * t, v)
                a = a + self.tan(torch.matmul(a1, a2) / (self.inter_c * t)) * self.alpha
            z = self.conv_d[i](torch.matmul(flat, a).reshape(n, c, t, v))
            y = z if y is None else y + z
        assert y is not None
        y = self.relu(self.bn(y) + self.down(x))
        if self.attention:
            s = self.sigmoid(self.conv_sa(y.mean(-2)))  # (N, 1, V)
            y = y * s.unsqueeze(-2) + y
            s = self.sigmoid(self.conv_ta(y.mean(-1)))  # (N, 1, T)
            y = y * s.unsqueeze(-1) + y
            s = self.sigmoid(self.fc2c(self.relu(self.fc1c(y.mean(-1).mean(-1)))))  # (N, C)
            y = y * s.unsqueeze(-1).unsqueeze(-1) + y
        return y


def pyskl_block_plan(base: int, num_stages: int, in_channels: int, inflate: Sequence[int] = (5, 8),
                     down: Sequence[int] = (5, 8), ratio: float = 2) -> list[tuple[int, int, int, bool]]:
    """(in, out, stride, residual) per block as PYSKL's STGCN/AAGCN/CTRGCN build them: an input
    block in_channels -> base (no residual, skipped when they are equal), then stages 2..N
    inflating channels by `ratio` at `inflate` and striding at `down`."""
    plan: list[tuple[int, int, int, bool]] = []
    if in_channels != base:
        plan.append((in_channels, base, 1, False))
    c_in, times = base, 0
    for i in range(2, num_stages + 1):
        if i in inflate:
            times += 1
        c_out = int(base * ratio**times + 1e-4)
        plan.append((c_in, c_out, 1 + (i in down), True))
        c_in = c_out
    return plan
