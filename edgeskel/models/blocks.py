"""Building blocks shared by the GCN/transformer models.

Module and attribute names follow the official code (`conv`, `bn`, `branches.i.j`) so that
official state_dict keys load without renaming. Everything is export-friendly: no in-place
ops on graph tensors, no Python control flow on tensor values.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn


def round_channels(value: float, multiple: int, minimum: int | None = None) -> int:
    """Round a scaled channel count to a multiple (divisibility constraints of heads/groups/branches)."""
    minimum = multiple if minimum is None else minimum
    return max(minimum, int(round(value / multiple)) * multiple)


class UnitTCN(nn.Module):
    """k x 1 temporal conv + BN (CTR-GCN/Hyperformer/PYSKL `unit_tcn`, keys conv.*, bn.*)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 9, stride: int = 1, dilation: int = 1):
        super().__init__()
        pad = (kernel_size + (kernel_size - 1) * (dilation - 1) - 1) // 2
        self.conv = nn.Conv2d(
            in_channels, out_channels, kernel_size=(kernel_size, 1), padding=(pad, 0),
            stride=(stride, 1), dilation=(dilation, 1),
        )
        self.bn = nn.BatchNorm2d(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(x))


# CTR-GCN's `TemporalConv` has the same structure and keys as `unit_tcn`.
TemporalConv = UnitTCN


class MultiScaleTemporalConv(nn.Module):
    """CTR-GCN / Hyperformer `MultiScale_TemporalConv` (residual=False variant used by both):
    one (1x1 -> BN -> ReLU -> k x 1 dilated conv -> BN) branch per dilation, a max-pool branch
    and a strided 1x1 branch, concatenated along channels."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 5,
        stride: int = 1,
        dilations: Sequence[int] = (1, 2),
    ):
        super().__init__()
        num_branches = len(dilations) + 2
        if out_channels % num_branches:
            raise ValueError(f"out_channels {out_channels} must be a multiple of {num_branches} branches")
        bc = out_channels // num_branches
        branches: list[nn.Module] = [
            nn.Sequential(
                nn.Conv2d(in_channels, bc, kernel_size=1),
                nn.BatchNorm2d(bc),
                nn.ReLU(),
                TemporalConv(bc, bc, kernel_size=kernel_size, stride=stride, dilation=d),
            )
            for d in dilations
        ]
        branches.append(
            nn.Sequential(
                nn.Conv2d(in_channels, bc, kernel_size=1),
                nn.BatchNorm2d(bc),
                nn.ReLU(),
                nn.MaxPool2d(kernel_size=(3, 1), stride=(stride, 1), padding=(1, 0)),
                nn.BatchNorm2d(bc),
            )
        )
        branches.append(
            nn.Sequential(nn.Conv2d(in_channels, bc, kernel_size=1, stride=(stride, 1)), nn.BatchNorm2d(bc))
        )
        self.branches = nn.ModuleList(branches)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([branch(x) for branch in self.branches], dim=1)


def conv_init(conv: nn.Conv2d) -> None:
    """Official CTR-GCN/Hyperformer `conv_init`: Kaiming normal (fan_out), zero bias."""
    nn.init.kaiming_normal_(conv.weight, mode="fan_out")
    if conv.bias is not None:
        nn.init.zeros_(conv.bias)


def bn_init(bn: nn.Module, scale: float) -> None:
    nn.init.constant_(bn.weight, scale)
    nn.init.zeros_(bn.bias)


def official_tcn_init(module: nn.Module) -> None:
    """CTR-GCN/Hyperformer initialisation of temporal blocks: `weights_init` for the
    multi-scale TCN (BN weight ~ N(1, 0.02)), `conv_init` + unit BN for `unit_tcn`."""
    for m in module.modules():
        if isinstance(m, UnitTCN):
            conv_init(m.conv)
            bn_init(m.bn, 1.0)
    for m in module.modules():  # after: overrides the TemporalConvs inside the MS-TCNs
        if isinstance(m, MultiScaleTemporalConv):
            for sub in m.modules():
                if isinstance(sub, nn.Conv2d):
                    conv_init(sub)
                elif isinstance(sub, nn.BatchNorm2d):
                    nn.init.normal_(sub.weight, 1.0, 0.02)
                    nn.init.zeros_(sub.bias)


def make_residual(in_channels: int, out_channels: int, stride: int, enabled: bool = True) -> nn.Module | None:
    """Block residual as in the official code: none, identity, or a strided 1x1 `unit_tcn`."""
    if not enabled:
        return None
    if in_channels == out_channels and stride == 1:
        return nn.Identity()
    return UnitTCN(in_channels, out_channels, kernel_size=1, stride=stride)


def mvc_data_bn(bn: nn.BatchNorm1d, x: torch.Tensor) -> torch.Tensor:
    """CTR-GCN/Hyperformer input BN over M*V*C channels (index m*V*C + v*C + c).

    (N, C, T, V, M) -> (N*M, C, T, V)."""
    n, c, t, v, m = x.shape
    x = bn(x.permute(0, 4, 3, 1, 2).reshape(n, m * v * c, t))
    return x.reshape(n, m, v, c, t).permute(0, 1, 3, 4, 2).reshape(n * m, c, t, v)


def vc_data_bn(bn: nn.BatchNorm1d, x: torch.Tensor) -> torch.Tensor:
    """PYSKL "VC" input BN over V*C channels, shared by all persons (index v*C + c).

    (N, C, T, V, M) -> (N*M, C, T, V)."""
    n, c, t, v, m = x.shape
    x = bn(x.permute(0, 4, 3, 1, 2).reshape(n * m, v * c, t))
    return x.reshape(n, m, v, c, t).permute(0, 1, 3, 4, 2).reshape(n * m, c, t, v)


def pool_persons(x: torch.Tensor, n: int, m: int) -> torch.Tensor:
    """(N*M, C, T, V) -> (N, C): mean over T and V, then over persons (all three official heads)."""
    c = x.shape[1]
    return x.reshape(n, m, c, -1).mean(3).mean(1)


def check_input(x: torch.Tensor, channels: int, joints: int, persons: int | None, name: str) -> None:
    """Fail early with a readable message; shapes are static at export time so this traces away."""
    if x.dim() != 5:
        raise ValueError(f"{name}: expected input (N, C, T, V, M), got shape {tuple(x.shape)}")
    _, c, _, v, m = x.shape
    if c != channels or v != joints or (persons is not None and m != persons):
        want = f"(N, {channels}, T, {joints}, {persons if persons is not None else 'M'})"
        raise ValueError(f"{name}: expected input {want}, got {tuple(x.shape)}")
