"""Shift-GCN (Cheng et al., CVPR 2020) as the official code implements it (model/shift_gcn.py).

Per layer: a *spatial* shift GCN (a fixed channel permutation across joints, a learnable
per-joint feature mask, one shared Linear, the inverse permutation, BN over V*C) and a
*temporal* shift TCN (BN, a learnable per-channel shift along T, 1x1 conv, ReLU, a second
shift with the layer's stride, BN). Keys equal the official `main.py` state_dict keys
(including the int64 permutation indices `lN.gcn1.shift_in/shift_out`), except that the
shared per-layer Linear is an `nn.Linear` (`gcn1.linear.*`, transposed on import) so that
low-rank compression can factorize it.

Export-first rewrites of the two official GPU-only pieces (same numbers, every backend):

- Spatial shift: `index_select` on (N*T, V*C) with the stored permutation = one constant
  Gather; the official `einsum('nwc,cd->nwd')` is a MatMul.
- Temporal shift: the official CUDA kernel (`shift_cuda_forward_kernel`) samples
  `input[h*stride + ypos[c], w + xpos[c]]` bilinearly with zero padding (+0.5 on ypos for
  stride 2, added in Python by `ShiftFunction`). Bilinear interpolation at a fractional
  offset y is a correlation with the "hat" kernel `max(0, 1 - |k - y|)` over integer
  offsets k, and zero padding is conv padding, so each shift is exactly two depthwise
  convolutions (T kernel 2R+1, V kernel 2Rx+1) whose weights are computed from `ypos`/`xpos`.
  No custom op, no data-dependent Python, trainable (the hat kernel is differentiable in y).
  R is a constructor argument; the importer sets it per shift from the checkpoint's offsets.
  Output rows: ceil(T / stride), which is the official T // stride for every T the official
  model runs (even T; odd T crashes there on the residual's shape) and matches the strided
  residual for odd T.
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
from edgeskel.models.blocks import check_input, make_residual, mvc_data_bn, pool_persons
from edgeskel.models.registry import register_model

# Largest |offset| + 1 of the released NTU/Kinetics checkpoints is 9 (trained ypos reach ~8.3).
DEFAULT_SHIFT_RADIUS = 9


def spatial_shift_index(num_joints: int, channels: int, direction: int) -> torch.Tensor:
    """The official permutation: channel j of joint i reads joint (i + direction*j) % V.

    `shift_in` is direction +1, `shift_out` direction -1 (index into the flattened V*C axis)."""
    i = torch.arange(num_joints).unsqueeze(1)
    j = torch.arange(channels).unsqueeze(0)
    return ((i * channels + j + direction * j * channels) % (channels * num_joints)).reshape(-1)


def shift_radius_for(offsets: torch.Tensor) -> int:
    """Smallest R whose hat kernel over [-R, R] covers floor(y) and floor(y) + 1 for all y."""
    if offsets.numel() == 0:
        return 1
    lo = int(math.floor(float(offsets.min())))
    hi = int(math.floor(float(offsets.max()))) + 1
    return max(1, -lo, hi)


def hat_weights(pos: torch.Tensor, radius: int) -> torch.Tensor:
    """(C,) fractional offsets -> (C, 2R+1) linear-interpolation weights at offsets -R..R."""
    k = torch.arange(-radius, radius + 1, dtype=pos.dtype, device=pos.device)
    pos = pos.clamp(-float(radius), float(radius))  # a no-op for imported offsets (R covers them)
    return torch.relu(1.0 - (k.unsqueeze(0) - pos.unsqueeze(1)).abs())


class Shift(nn.Module):
    """The official `Shift` (keys `xpos`, `ypos`) as two fixed-size depthwise convs."""

    temporal_stride_attr = "stride"  # models/temporal.py: it strides T itself (streaming, stride removal)

    def __init__(self, channels: int, stride: int = 1, radius: int = DEFAULT_SHIFT_RADIUS, radius_v: int = 1,
                 init_scale: float = 1.0):
        super().__init__()
        if radius < 1 or radius_v < 1:
            raise ConfigError(f"shiftgcn: shift radius must be >= 1, got {radius}/{radius_v}")
        self.stride, self.radius, self.radius_v = stride, radius, radius_v
        self.xpos = nn.Parameter(torch.empty(channels).uniform_(-1e-8, 1e-8))
        self.ypos = nn.Parameter(torch.empty(channels).uniform_(-init_scale, init_scale))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = x.shape[1]
        y = self.ypos + 0.5 if self.stride != 1 else self.ypos  # official ShiftFunction.forward
        wt = hat_weights(y, self.radius).reshape(c, 1, 2 * self.radius + 1, 1)
        wv = hat_weights(self.xpos, self.radius_v).reshape(c, 1, 1, 2 * self.radius_v + 1)
        x = F.conv2d(x, wt, stride=(self.stride, 1), padding=(self.radius, 0), groups=c)
        return F.conv2d(x, wv, padding=(0, self.radius_v), groups=c)


class ShiftTCN(nn.Module):
    """Official `Shift_tcn`: bn -> shift_in -> 1x1 conv -> ReLU -> shift_out(stride) -> bn2."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, radii: Sequence[int] = (9, 9)):
        super().__init__()
        self.bn = nn.BatchNorm2d(in_channels)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU()
        self.shift_in = Shift(in_channels, 1, radius=radii[0])
        self.shift_out = Shift(out_channels, stride, radius=radii[1])
        self.temporal_linear = nn.Conv2d(in_channels, out_channels, 1)
        nn.init.kaiming_normal_(self.temporal_linear.weight, mode="fan_out")
        nn.init.zeros_(self.temporal_linear.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.temporal_linear(self.shift_in(self.bn(x))))
        return self.bn2(self.shift_out(x))


class ShiftGCN(nn.Module):
    """Official `Shift_gcn`: gather(shift_in) * (tanh(mask) + 1) @ W + b, gather(shift_out),
    BN over V*C_out, + down(x), ReLU. The official graph `A` is never used."""

    def __init__(self, in_channels: int, out_channels: int, num_joints: int):
        super().__init__()
        self.out_channels = out_channels
        if in_channels != out_channels:
            self.down: nn.Module = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1), nn.BatchNorm2d(out_channels))
        else:
            self.down = nn.Identity()
        # official `Linear_weight` (C_in, C_out) / `Linear_bias` (1, 1, C_out), held as an nn.Linear so
        # the generic low-rank compression sees it (the importer transposes: importers/shiftgcn_official.py)
        self.linear = nn.Linear(in_channels, out_channels)
        nn.init.normal_(self.linear.weight, 0, math.sqrt(1.0 / out_channels))
        nn.init.zeros_(self.linear.bias)
        self.Feature_Mask = nn.Parameter(torch.zeros(1, num_joints, in_channels))
        self.bn = nn.BatchNorm1d(num_joints * out_channels)
        self.relu = nn.ReLU()
        # persistent: the official checkpoint stores them (as frozen int64 parameters)
        self.register_buffer("shift_in", spatial_shift_index(num_joints, in_channels, +1))
        self.register_buffer("shift_out", spatial_shift_index(num_joints, out_channels, -1))
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
                nn.init.zeros_(m.bias)

    def forward(self, x0: torch.Tensor) -> torch.Tensor:
        n, c, t, v = x0.shape
        x = x0.permute(0, 2, 3, 1).reshape(n * t, v * c)
        x = torch.index_select(x, 1, self.shift_in).reshape(n * t, v, c)
        x = self.linear(x * (torch.tanh(self.Feature_Mask) + 1))  # official einsum('nwc,cd->nwd') + bias
        x = torch.index_select(x.reshape(n * t, v * self.out_channels), 1, self.shift_out)
        x = self.bn(x).reshape(n, t, v, self.out_channels).permute(0, 3, 1, 2)
        return self.relu(x + self.down(x0))


class TCNGCNUnit(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, num_joints: int, stride: int = 1, residual: bool = True,
                 radii: Sequence[int] = (9, 9)):
        super().__init__()
        self.gcn1 = ShiftGCN(in_channels, out_channels, num_joints)
        self.tcn1 = ShiftTCN(out_channels, out_channels, stride=stride, radii=radii)
        self.relu = nn.ReLU()
        self.residual = make_residual(in_channels, out_channels, stride, residual)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.tcn1(self.gcn1(x))
        if self.residual is not None:
            y = y + self.residual(x)
        return self.relu(y)


def layer_plan(base: int, num_stages: int) -> list[tuple[int, int]]:
    """(out_channels, stride) per layer: the official 10-layer schedule, truncated."""
    full = [(base, 1)] * 4 + [(2 * base, 2)] + [(2 * base, 1)] * 2 + [(4 * base, 2)] + [(4 * base, 1)] * 2
    return full[:num_stages]


class ShiftGCNModel(nn.Module):
    """Canonical (N, C, T, V, M) in, (N, num_classes) logits out (mean over persons)."""

    def __init__(
        self,
        num_classes: int,
        num_joints: int,
        num_person: int = 2,
        in_channels: int = 3,
        base_channels: int = 64,
        num_stages: int = 10,
        shift_radius: int | Sequence[int] = DEFAULT_SHIFT_RADIUS,
        dropout: float = 0.0,
    ):
        super().__init__()
        plan = layer_plan(base_channels, num_stages)
        radii = [int(shift_radius)] * (2 * len(plan)) if isinstance(shift_radius, int) else [int(r) for r in shift_radius]
        if len(radii) != 2 * len(plan):
            raise ConfigError(f"shiftgcn: shift_radius needs 1 or {2 * len(plan)} values (2 per layer), got {len(radii)}")
        self.in_channels, self.num_joints, self.num_person = in_channels, num_joints, num_person
        self.data_bn = nn.BatchNorm1d(num_person * in_channels * num_joints)
        c_in = in_channels
        for i, (c_out, stride) in enumerate(plan, start=1):
            unit = TCNGCNUnit(c_in, c_out, num_joints, stride, residual=i > 1, radii=radii[2 * i - 2 : 2 * i])
            self.add_module(f"l{i}", unit)
            c_in = c_out
        self.num_stages = len(plan)
        self.drop_out = nn.Dropout(dropout) if dropout else nn.Identity()
        self.fc = nn.Linear(c_in, num_classes)
        nn.init.normal_(self.fc.weight, 0, math.sqrt(2.0 / num_classes))
        nn.init.zeros_(self.fc.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x, self.in_channels, self.num_joints, self.num_person, "shiftgcn")
        n, m = x.shape[0], x.shape[4]
        x = mvc_data_bn(self.data_bn, x)
        for i in range(1, self.num_stages + 1):
            x = getattr(self, f"l{i}")(x)
        return self.fc(self.drop_out(pool_persons(x, n, m)))


@register_model("shiftgcn", family="gcn", description="Shift-GCN (official implementation, shifts as fixed convs/gathers)",
                tiny={"layout": "ntu25", "width": 0.125, "num_stages": 5, "shift_radius": 3})
def build_shiftgcn(
    num_classes: int,
    layout: SkeletonLayout,
    num_person: int = 2,
    in_channels: int | None = None,
    width: float = 1.0,
    dropout: float = 0.0,
    *,
    base_channels: int | None = None,
    num_stages: int = 10,
    shift_radius: int | Sequence[int] = DEFAULT_SHIFT_RADIUS,
    **unknown: Any,
) -> nn.Module:
    """Shift-GCN (official)."""
    if unknown:
        raise ConfigError(f"shiftgcn: unknown model arguments {sorted(unknown)}")
    if not 1 <= num_stages <= 10:
        raise ConfigError(f"shiftgcn: num_stages must be 1..10, got {num_stages}")
    base = base_channels if base_channels is not None else max(1, int(round(64 * width)))
    return ShiftGCNModel(
        num_classes, layout.num_joints, num_person=num_person, in_channels=in_channels or layout.channels,
        base_channels=base, num_stages=num_stages, shift_radius=shift_radius, dropout=dropout,
    )
