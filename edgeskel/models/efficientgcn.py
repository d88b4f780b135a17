"""EfficientGCN B0-B4 (Song et al., TPAMI 2022) as the official code implements it
(yfsong0709/EfficientGCNv1 `src/model/*`, `src/dataset/graphs.py`, `ntu_feeder.py`).

The official model takes a pre-computed (N, I, 2C, T, V, M) multi-input tensor that its data
feeder derives from the skeleton (`NTU_Feeder.multi_input`). Here that transform is part of
the model (`MultiInput`), so the deployed model takes plain (N, C, T, V, M) skeletons like
every other edgeskel model and the exported graph contains the feature computation:

- J (joint): xyz and xyz relative to the `root` joint (official: joint 1, 0-based);
- V (velocity): x[t+1]-x[t] and x[t+2]-x[t], zero for the last two frames;
- B (bone): x[v] - x[parent(v)] and arccos(bone_c / (|bone| + 1e-4)) per axis.

Each input branch is init BN -> spatial graph layer -> temporal layer -> `fusion_stage`
blocks; the branches are concatenated on channels into the main stream; blocks are a
spatial graph layer, `depth` temporal layers (SG / Sep / Bottleneck / Basic) and the
spatial-temporal joint attention; global average pool over (T, V, M); a 1x1x1 Conv3d head.
Keys equal the official state_dict keys (`input_branches.0.block-0_scn.conv.gcn.weight`); reading
constructor facts from such a state_dict is the importer's job
(`importers/efficientgcn_official.py::infer_efficientgcn`).

Export-first rewrites (same numbers): `einsum('nkctv,kvw->nctw')` as MatMul + sum; the
attention's concat/split over T+V as two applications of the same pointwise layers.
B1-B4 use the official compound scaling (`rescale_block`): channels * 1.2^s rounded to a
multiple of 16, depth * 1.35^s rounded.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from edgeskel.errors import ConfigError
from edgeskel.layouts import SkeletonLayout, hop_distance, normalize_digraph
from edgeskel.models.blocks import check_input, pool_persons
from edgeskel.models.graph import resolve_edges
from edgeskel.models.registry import register_model

# Official model_args of the released EfficientGCN weights (configs 2001-2004 of the later
# official release: layer SG, reduct_ratio 2, expand_ratio 0).
DEFAULT_BLOCK_ARGS: tuple[tuple[int, int, float], ...] = ((48, 1, 0.5), (24, 1, 0.5), (64, 2, 1), (128, 2, 1))
DEFAULT_SCALE_ARGS = (1.2, 1.35)
LAYER_TYPES = ("SG", "Sep", "Bottleneck", "Basic")
ACTIVATIONS = {"swish": nn.SiLU, "hswish": nn.Hardswish, "relu": nn.ReLU, "relu6": nn.ReLU6}
BONE_EPS = 1e-4  # official multi_input: |bone| + 0.0001


def rescale_block(block_args: Sequence[Sequence[float]], scale_args: Sequence[float], scale: int) -> list[list[int]]:
    """Official `src/model/__init__.py rescale_block` (compound scaling for B`scale`)."""
    channel_scaler = math.pow(scale_args[0], scale)
    depth_scaler = math.pow(scale_args[1], scale)
    out = []
    for channel, stride, depth in block_args:
        c = max(int(round(channel * channel_scaler / 16)) * 16, 16)
        out.append([c, int(stride), int(round(depth * depth_scaler))])
    return out


def efficientgcn_graph(layout: SkeletonLayout, edges: Sequence[Sequence[int]] | None = None,
                       max_hop: int = 10, num_hops: int = 3) -> np.ndarray:
    """Official `Graph(...).A[:num_hops]`: hop-distance partitions of the column-normalised
    adjacency of every joint within `max_hop` hops (the normalisation sees all of them)."""
    v = layout.num_joints
    hop = hop_distance(v, resolve_edges(layout, edges), max_hop)
    norm = normalize_digraph((hop <= max_hop).astype(np.float64))
    a = np.zeros((max_hop + 1, v, v))
    for h in range(max_hop + 1):
        a[h][hop == h] = norm[hop == h]
    return a[:num_hops].astype(np.float32)


def bone_parents(layout: SkeletonLayout, root: int, edges: Sequence[Sequence[int]] | None = None) -> list[int]:
    """The official `connect_joint`: each joint's neighbour towards `root` (root -> itself)."""
    v = layout.num_joints
    nbrs: list[list[int]] = [[] for _ in range(v)]
    for a, b in resolve_edges(layout, edges):
        nbrs[a].append(b)
        nbrs[b].append(a)
    parent = [-1] * v
    parent[root] = root
    queue = deque([root])
    while queue:
        i = queue.popleft()
        for j in sorted(nbrs[i]):
            if parent[j] < 0:
                parent[j] = i
                queue.append(j)
    return [p if p >= 0 else i for i, p in enumerate(parent)]  # unreachable joints: bone 0


class MultiInput(nn.Module):
    """(N*M, C, T, V) skeleton -> the official J/V/B branch inputs, each (N*M, 2C, T, V)."""

    def __init__(self, inputs: str, root: int, parents: Sequence[int]):
        super().__init__()
        self.inputs, self.root = inputs, root
        self.register_buffer("parents", torch.tensor(list(parents), dtype=torch.int64), persistent=False)

    def joint(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, x - x[:, :, :, self.root : self.root + 1]], dim=1)

    def velocity(self, x: torch.Tensor) -> torch.Tensor:
        base = x[:, :, :-2]
        vel = torch.cat([x[:, :, 1:-1] - base, x[:, :, 2:] - base], dim=1)
        return F.pad(vel, (0, 0, 0, 2))[:, :, : x.shape[2]]  # frames T-2, T-1 stay 0 as in the feeder (any T >= 1)

    def bone(self, x: torch.Tensor) -> torch.Tensor:
        bone = x - torch.index_select(x, 3, self.parents)
        length = torch.sqrt((bone * bone).sum(1, keepdim=True)) + BONE_EPS
        return torch.cat([bone, torch.acos(bone / length)], dim=1)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        make = {"J": self.joint, "V": self.velocity, "B": self.bone}
        return [make[k](x) for k in self.inputs]


class SpatialGraphConv(nn.Module):
    """1x1 conv to K*C channels, aggregated over the K hop partitions with A * edge."""

    def __init__(self, in_channels: int, out_channels: int, A: torch.Tensor, bias: bool, edge: bool):
        super().__init__()
        self.k, self.out_channels = A.shape[0], out_channels
        self.gcn = nn.Conv2d(in_channels, out_channels * self.k, 1, bias=bias)
        self.register_buffer("A", A.clone())  # official: frozen nn.Parameter, in the state_dict
        self.edge = nn.Parameter(torch.ones_like(A)) if edge else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, _, t, v = x.shape
        a = self.A * self.edge if self.edge is not None else self.A
        y = self.gcn(x).reshape(n, self.k, self.out_channels * t, v)
        return torch.matmul(y, a).sum(1).reshape(n, self.out_channels, t, v)


def conv_bn(c_in: int, c_out: int, bias: bool, kernel: int = 1, stride: int = 1, groups: int = 1) -> nn.Sequential:
    """Conv (k x 1, 'same' padding) + BN: the official `nn.Sequential(conv, bn)` (keys 0.*, 1.*)."""
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, (kernel, 1), (stride, 1), ((kernel - 1) // 2, 0), groups=groups, bias=bias),
        nn.BatchNorm2d(c_out),
    )


def temporal_residual(channels: int, stride: int, bias: bool) -> nn.Module:
    return nn.Identity() if stride == 1 else conv_bn(channels, channels, bias, stride=stride)


class SpatialGraphLayer(nn.Module):
    """Official `Spatial_Graph_Layer`: act(bn(gcn(x)) + residual(x))."""

    def __init__(self, c_in: int, c_out: int, A: torch.Tensor, bias: bool, edge: bool, act: nn.Module):
        super().__init__()
        self.conv = SpatialGraphConv(c_in, c_out, A, bias, edge)
        self.bn = nn.BatchNorm2d(c_out)
        self.residual = nn.Identity() if c_in == c_out else conv_bn(c_in, c_out, bias)
        self.act = act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)) + self.residual(x))


class TemporalBasicLayer(nn.Module):
    """Official `Temporal_Basic_Layer`: act(bn(k x 1 conv(x)) + residual(x))."""

    def __init__(self, channels: int, kernel: int, bias: bool, act: nn.Module, stride: int = 1, **_: Any):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, (kernel, 1), (stride, 1), ((kernel - 1) // 2, 0), bias=bias)
        self.bn = nn.BatchNorm2d(channels)
        self.residual = temporal_residual(channels, stride, bias)
        self.act = act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)) + self.residual(x))


class TemporalSGLayer(nn.Module):
    """Official `Temporal_SG_Layer` (sandglass): dw -> act -> pw(C/r) -> pw(C) -> act -> dw(stride), + res."""

    def __init__(self, channels: int, kernel: int, bias: bool, act: nn.Module, reduct_ratio: int, stride: int = 1,
                 **_: Any):
        super().__init__()
        inner = channels // reduct_ratio
        self.act = act
        self.depth_conv1 = conv_bn(channels, channels, bias, kernel, groups=channels)
        self.point_conv1 = conv_bn(channels, inner, bias)
        self.point_conv2 = conv_bn(inner, channels, bias)
        self.depth_conv2 = conv_bn(channels, channels, bias, kernel, stride, groups=channels)
        self.residual = temporal_residual(channels, stride, bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        res = self.residual(x)
        x = self.point_conv1(self.act(self.depth_conv1(x)))
        return self.depth_conv2(self.act(self.point_conv2(x))) + res


class TemporalSepLayer(nn.Module):
    """Official `Temporal_Sep_Layer`: [pw expand -> act] -> dw(stride) -> act -> pw, + res."""

    def __init__(self, channels: int, kernel: int, bias: bool, act: nn.Module, expand_ratio: int, stride: int = 1,
                 **_: Any):
        super().__init__()
        inner = channels * expand_ratio if expand_ratio > 0 else channels
        self.act = act
        self.expand_conv = conv_bn(channels, inner, bias) if expand_ratio > 0 else None
        self.depth_conv = conv_bn(inner, inner, bias, kernel, stride, groups=inner)
        self.point_conv = conv_bn(inner, channels, bias)
        self.residual = temporal_residual(channels, stride, bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        res = self.residual(x)
        if self.expand_conv is not None:
            x = self.act(self.expand_conv(x))
        return self.point_conv(self.act(self.depth_conv(x))) + res


class TemporalBottleneckLayer(nn.Module):
    """Official `Temporal_Bottleneck_Layer`: pw(C/r) -> act -> k x 1 (stride) -> act -> pw(C) + res -> act."""

    def __init__(self, channels: int, kernel: int, bias: bool, act: nn.Module, reduct_ratio: int, stride: int = 1,
                 **_: Any):
        super().__init__()
        inner = channels // reduct_ratio
        self.act = act
        self.reduct_conv = conv_bn(channels, inner, bias)
        self.conv = conv_bn(inner, inner, bias, kernel, stride)
        self.expand_conv = conv_bn(inner, channels, bias)
        self.residual = temporal_residual(channels, stride, bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        res = self.residual(x)
        x = self.act(self.conv(self.act(self.reduct_conv(x))))
        return self.act(self.expand_conv(x) + res)


TEMPORAL_LAYERS: dict[str, type[nn.Module]] = {
    "SG": TemporalSGLayer, "Sep": TemporalSepLayer, "Bottleneck": TemporalBottleneckLayer, "Basic": TemporalBasicLayer,
}


class STJointAtt(nn.Module):
    """Official `ST_Joint_Att`. The official code concatenates the T- and V-pooled features,
    applies the pointwise `fcn` and splits again; applying `fcn` to each part is the same."""

    def __init__(self, channels: int, reduct_ratio: int, bias: bool):
        super().__init__()
        inner = channels // reduct_ratio
        self.fcn = nn.Sequential(nn.Conv2d(channels, inner, 1, bias=bias), nn.BatchNorm2d(inner), nn.Hardswish())
        self.conv_t = nn.Conv2d(inner, channels, 1)
        self.conv_v = nn.Conv2d(inner, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x_t = self.fcn(x.mean(3, keepdim=True))  # (N, C', T, 1)
        x_v = self.fcn(x.mean(2, keepdim=True))  # (N, C', 1, V)
        return torch.sigmoid(self.conv_t(x_t)) * torch.sigmoid(self.conv_v(x_v))


class AttentionLayer(nn.Module):
    """Official `Attention_Layer`: act(bn(x * att(x)) + x)."""

    def __init__(self, channels: int, reduct_ratio: int, bias: bool, act: nn.Module):
        super().__init__()
        self.att = STJointAtt(channels, reduct_ratio, bias)
        self.bn = nn.BatchNorm2d(channels)
        self.act = act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(x * self.att(x)) + x)


def make_blocks(init_channel: int, block_args: Sequence[Sequence[int]], A: torch.Tensor, cfg: dict[str, Any],
                input_channel: int = 0) -> nn.Sequential:
    """Official `EfficientGCN_Blocks` (an nn.Sequential; names like `block-0_scn`)."""
    kernel, act, bias = cfg["kernel"], cfg["act"], cfg["bias"]
    seq = nn.Sequential()
    if input_channel > 0:
        seq.add_module("init_bn", nn.BatchNorm2d(input_channel))
        seq.add_module("stem_scn", SpatialGraphLayer(input_channel, init_channel, A, bias, cfg["edge"], act))
        seq.add_module("stem_tcn", TemporalBasicLayer(init_channel, kernel, bias, act))
    last = init_channel
    temporal = TEMPORAL_LAYERS[cfg["layer_type"]]
    for i, (channel, stride, depth) in enumerate(block_args):
        seq.add_module(f"block-{i}_scn", SpatialGraphLayer(last, channel, A, bias, cfg["edge"], act))
        for j in range(depth):
            seq.add_module(
                f"block-{i}_tcn-{j}",
                temporal(channel, kernel, bias, act, reduct_ratio=cfg["reduct_ratio"],
                         expand_ratio=cfg["expand_ratio"], stride=stride if j == 0 else 1),
            )
        seq.add_module(f"block-{i}_att", AttentionLayer(channel, cfg["reduct_ratio"], bias, act))
        last = channel
    return seq


class EfficientGCN(nn.Module):
    """Canonical (N, C, T, V, M) in, (N, num_classes) logits out (mean over T, V, M)."""

    def __init__(
        self,
        num_classes: int,
        A: torch.Tensor,
        block_args: Sequence[Sequence[int]],
        parents: Sequence[int],
        root: int,
        in_channels: int = 3,
        inputs: str = "JVB",
        stem_channel: int = 64,
        fusion_stage: int = 2,
        layer_type: str = "SG",
        act_type: str = "swish",
        kernel_size: int = 5,
        reduct_ratio: int = 2,
        expand_ratio: int = 0,
        bias: bool = True,
        edge: bool = True,
        dropout: float = 0.0,
    ):
        super().__init__()
        self.in_channels, self.num_joints = in_channels, A.shape[-1]
        act = ACTIVATIONS[act_type]()  # stateless, shared like the official single instance
        cfg = {"kernel": kernel_size, "act": act, "bias": bias, "edge": edge, "layer_type": layer_type,
               "reduct_ratio": reduct_ratio, "expand_ratio": expand_ratio}
        self.multi_input = MultiInput(inputs, root, parents)
        self.input_branches = nn.ModuleList(
            make_blocks(stem_channel, block_args[:fusion_stage], A, cfg, input_channel=2 * in_channels) for _ in inputs
        )
        last = stem_channel if fusion_stage == 0 else block_args[fusion_stage - 1][0]
        self.main_stream = make_blocks(len(inputs) * last, block_args[fusion_stage:], A, cfg)
        last = len(inputs) * block_args[-1][0] if fusion_stage == len(block_args) else block_args[-1][0]
        self.classifier = nn.Sequential()
        self.classifier.add_module("dropout", nn.Dropout(dropout) if dropout else nn.Identity())
        self.classifier.add_module("fc", nn.Conv3d(last, num_classes, 1))
        self.init_weights()

    def init_weights(self) -> None:
        """Official `init_param` (matters when training from scratch)."""
        for m in self.modules():
            if isinstance(m, (nn.Conv1d, nn.Conv2d)):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="leaky_relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.modules.batchnorm._BatchNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, (nn.Conv3d, nn.Linear)):
                nn.init.normal_(m.weight, std=0.001)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x, self.in_channels, self.num_joints, None, "efficientgcn")
        n, c, t, v, m = x.shape
        x = x.permute(0, 4, 1, 2, 3).reshape(n * m, c, t, v)
        x = torch.cat([branch(xi) for branch, xi in zip(self.input_branches, self.multi_input(x), strict=True)], dim=1)
        x = self.main_stream(x)
        pooled = pool_persons(x, n, m)  # official AdaptiveAvgPool3d over (T, V, M)
        out = self.classifier(pooled.reshape(n, -1, 1, 1, 1))
        return out.reshape(n, -1)


def variant_scale(variant: str | int) -> int:
    """'B0'..'B4' (or 'EfficientGCN-B2', or 2) -> the compound scaling exponent."""
    s = str(variant).strip().upper().removeprefix("EFFICIENTGCN-").removeprefix("B")
    if not s.isdigit():
        raise ConfigError(f"efficientgcn: variant must be B0..B4 (or an integer scale), got {variant!r}")
    return int(s)


@register_model("efficientgcn", family="gcn", description="EfficientGCN B0-B4 (official; J/V/B inputs computed in-graph)",
                tiny={"layout": "kinect20", "stem_channel": 8, "blocks": [[8, 1, 0], [16, 2, 1]], "fusion_stage": 1})
def build_efficientgcn(
    num_classes: int,
    layout: SkeletonLayout,
    num_person: int = 2,
    in_channels: int | None = None,
    width: float = 1.0,
    dropout: float = 0.0,
    *,
    variant: str | int = "B0",
    stem_channel: int = 64,
    block_args: Sequence[Sequence[float]] = DEFAULT_BLOCK_ARGS,
    scale_args: Sequence[float] = DEFAULT_SCALE_ARGS,
    fusion_stage: int = 2,
    layer_type: str = "SG",
    act_type: str = "swish",
    kernel_size: int = 5,
    max_graph_distance: int = 2,
    reduct_ratio: int = 2,
    expand_ratio: int = 0,
    bias: bool = True,
    edge: bool = True,
    inputs: str = "JVB",
    root: int | None = None,
    parents: Sequence[int] | None = None,
    edges: Sequence[Sequence[int]] | None = None,
    max_hop: int = 10,
    blocks: Sequence[Sequence[int]] | None = None,
    **unknown: Any,
) -> nn.Module:
    """EfficientGCN (official).

    `variant` B0-B4 scales `block_args` as the official code does; `blocks` (concrete
    [channels, stride, depth] per block, as an importer reads them from weight shapes)
    replaces that computation. `num_person` is accepted for the common interface: no weight
    depends on M, so any person count runs."""
    if unknown:
        raise ConfigError(f"efficientgcn: unknown model arguments {sorted(unknown)}")
    if layer_type not in TEMPORAL_LAYERS:
        raise ConfigError(f"efficientgcn: layer_type must be one of {list(TEMPORAL_LAYERS)}, got {layer_type!r}")
    if act_type not in ACTIVATIONS:
        raise ConfigError(f"efficientgcn: act_type must be one of {sorted(ACTIVATIONS)}, got {act_type!r}")
    if not inputs or set(inputs) - set("JVB") or len(set(inputs)) != len(inputs):
        raise ConfigError(f"efficientgcn: inputs must be distinct letters of 'JVB', got {inputs!r}")
    if max_graph_distance < 0 or max_graph_distance > max_hop:
        raise ConfigError(f"efficientgcn: max_graph_distance must be 0..max_hop ({max_hop}), got {max_graph_distance}")
    stem = stem_channel
    if blocks is not None:
        if len(blocks) < 1 or any(len(b) != 3 or int(b[0]) < 1 or int(b[1]) < 1 or int(b[2]) < 0 for b in blocks):
            raise ConfigError(f"efficientgcn: blocks must be [channels, stride, depth] triples, got {blocks!r}")
        blocks = [[int(c), int(s), int(d)] for c, s, d in blocks]
    else:
        blocks = rescale_block(block_args, scale_args, variant_scale(variant))
    if width != 1.0:  # edgeskel's width multiplier (small test/edge models); 1.0 = the official sizes
        stem = max(4, int(round(stem * width / 4)) * 4)
        blocks = [[max(4, int(round(c * width / 4)) * 4), s, d] for c, s, d in blocks]
    if not 0 <= fusion_stage <= len(blocks):
        raise ConfigError(f"efficientgcn: fusion_stage must be 0..{len(blocks)}, got {fusion_stage}")
    root = layout.origin_joint if root is None else int(root)
    if not 0 <= root < layout.num_joints:
        raise ConfigError(f"efficientgcn: root joint {root} out of range for layout {layout.name!r}")
    if parents is None:
        parents = bone_parents(layout, root, edges)
    elif len(parents) != layout.num_joints or not all(0 <= int(p) < layout.num_joints for p in parents):
        raise ConfigError(f"efficientgcn: parents must give one joint index per joint ({layout.num_joints}), got {parents!r}")
    A = torch.from_numpy(efficientgcn_graph(layout, edges, max_hop, max_graph_distance + 1))
    return EfficientGCN(
        num_classes, A, blocks, [int(p) for p in parents], root, in_channels=in_channels or layout.channels,
        inputs=inputs, stem_channel=stem, fusion_stage=fusion_stage, layer_type=layer_type, act_type=act_type,
        kernel_size=kernel_size, reduct_ratio=reduct_ratio, expand_ratio=expand_ratio, bias=bias, edge=edge,
        dropout=dropout,
    )
