"""CTR-GCN (Chen et al., ICCV 2021) as the official code implements it (model/ctrgcn.py).

Per layer: `unit_gcn` with three CTRGC subsets that refine a learnable copy of the spatial
graph (`PA`, init = the (3, V, V) "spatial" graph) by a channel-wise topology
`conv4(tanh(x1 - x2)) * alpha`, then a multi-scale temporal conv; input BN over M*V*C.
Keys equal the official `main.py` state_dict keys. `einsum('ncuv,nctv->nctu')` is written
as `x3 @ A^T` so the exported graph has no Einsum node.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn as nn

from edgeskel.errors import ConfigError
from edgeskel.layouts import SkeletonLayout
from edgeskel.models.blocks import (
    MultiScaleTemporalConv,
    bn_init,
    check_input,
    conv_init,
    make_residual,
    mvc_data_bn,
    official_tcn_init,
    pool_persons,
    round_channels,
)
from edgeskel.models.export_form import rewrites_enabled
from edgeskel.models.graph import ctrgcn_spatial
from edgeskel.models.parallel_1x1 import conv_chain, parallel_maps
from edgeskel.models.registry import CausalForm, register_model


class TrailingMean(nn.Module):
    """Per frame t, the mean of frames max(0, t - window + 1) .. t: a causal stand-in for a mean
    over the whole window (the stream form keeps the last window - 1 frames in its state,
    edgeskel/stream/layers.py StreamTrailingMean). At the last frame of a clip no longer than
    `window` it equals the clip's mean."""

    def __init__(self, window: int):
        super().__init__()
        if window < 1:
            raise ValueError(f"trailing mean over {window} frames")
        self.window = int(window)

    def forward(self, z: torch.Tensor) -> torch.Tensor:  # (N, C, T, V)
        t = z.shape[2]
        cs = torch.cumsum(z, 2)
        if t > self.window:
            cs = torch.cat([cs[:, :, : self.window], cs[:, :, self.window:] - cs[:, :, : t - self.window]], 2)
        count = torch.clamp(torch.arange(1, t + 1, dtype=z.dtype, device=z.device), max=float(self.window))
        return cs / count.reshape(1, 1, t, 1)


class CTRGC(nn.Module):
    """Channel-wise topology refinement graph conv for one graph subset. `causal_window` > 0:
    the topology of frame t is refined from a trailing mean over the last `causal_window`
    frames (TrailingMean) instead of the mean over the whole window: one topology per frame,
    causal in time, so the layer streams (docs/STREAMING.md); the weights are the same.
    `static_joints` > 0: the topology is refined from a learned (C_in, V) input (`static_input`,
    initialised at the training set's mean features, `calibrate_static`) instead of the sample's:
    one channel-wise topology for every sample and frame, so the layer is per-frame and streams
    at the cost of a plain GCN."""

    def __init__(self, in_channels: int, out_channels: int, rel_reduction: int = 8, causal_window: int = 0,
                 static_joints: int = 0):
        super().__init__()
        if causal_window and static_joints:
            raise ValueError("a CTRGC refines its topology from a trailing mean or a static input, not both")
        # Official: 8 relation channels for 3/9-channel input, else in/8. Tiny inputs (2-D
        # keypoints, narrow test widths) would give 0, so they also get 8.
        self.rel_channels = 8 if in_channels in (3, 9) or in_channels < rel_reduction else in_channels // rel_reduction
        self.conv1 = nn.Conv2d(in_channels, self.rel_channels, 1)
        self.conv2 = nn.Conv2d(in_channels, self.rel_channels, 1)
        self.conv3 = nn.Conv2d(in_channels, out_channels, 1)
        self.conv4 = nn.Conv2d(self.rel_channels, out_channels, 1)
        self.tanh = nn.Tanh()
        self.trailing = TrailingMean(causal_window) if causal_window else None
        # from scratch a random "mean input" (zeros would give every joint pair the same relation);
        # a fine-tune from a windowed checkpoint sets it from data (calibrate_static)
        self.static_input = nn.Parameter(torch.randn(in_channels, static_joints)) if static_joints else None

    def forward(self, x: torch.Tensor, a: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
        if self.trailing is not None:
            return self._causal(x, a, alpha)
        if self.static_input is not None:
            return torch.matmul(self.conv3(x), self.static_topology(a, alpha).transpose(-1, -2))
        x1, x2, x3 = self.conv1(x).mean(-2), self.conv2(x).mean(-2), self.conv3(x)
        rel = self.tanh(x1.unsqueeze(-1) - x2.unsqueeze(-2))  # (N, R, U, V)
        refined = self.conv4(rel) * alpha  # (N, C, U, V)
        # Official: x3 @ (refined + a)^T. Applying the shared topology `a` as its own (V, V)
        # product is the same sum, but keeps it a V x V constant: written as `refined + a`,
        # OpenVINO folds conv4's bias and `a` into one (C, V, V) constant per subset, which
        # tripled the IR's size (9.5 MB vs 3.1 MB ONNX for compressed CTR-GCN).
        return torch.matmul(x3, refined.transpose(-1, -2)) + torch.matmul(x3, a.transpose(-1, -2))  # (N, C, T, U)

    def static_topology(self, a: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
        """The static form's whole topology, (1, C, U, V): refined from the learned "mean input"
        (1, C, 1, V) as the windowed form refines from a sample's, plus the shared `a`; a
        constant once trained (the exporter folds it)."""
        src = self.static_input.unsqueeze(0).unsqueeze(2)
        rel = self.tanh(self.conv1(src).mean(-2).unsqueeze(-1) - self.conv2(src).mean(-2).unsqueeze(-2))
        return self.conv4(rel) * alpha + a

    def _causal(self, x: torch.Tensor, a: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
        """Per frame: x3[t] @ (conv4(tanh(m1[t] - m2[t])) * alpha)^T + x3[t] @ a^T, m = trailing means."""
        r = self.rel_channels
        m = self.trailing(torch.cat([self.conv1(x), self.conv2(x)], 1))  # (N, 2R, T, V): conv1/2 per frame, then averaged
        x1, x2 = m[:, :r], m[:, r:]
        rel = self.tanh(x1.unsqueeze(-1) - x2.unsqueeze(-2))  # (N, R, T, U, V)
        n, _, t, u, v = rel.shape
        x3 = self.conv3(x)  # (N, C, T, V)
        conv4 = self.conv4
        if r < v and isinstance(conv4, nn.Conv2d) and conv4.groups == 1 and conv4.bias is not None:
            # the same sum contracted over V first: one (R*U, V) @ (V, C) GEMM per frame and an
            # R-term sum, never the (N, C, T, U, V) per-frame topologies (3x faster to train for
            # the first layers; equal to float error, tests/test_ctrgcn_causal.py)
            c = x3.shape[1]
            q = torch.matmul(rel.permute(0, 2, 1, 3, 4).reshape(n, t, r * u, v), x3.permute(0, 2, 3, 1))
            w4 = conv4.weight.reshape(c, r).t().reshape(1, 1, r, 1, c)
            per = (q.reshape(n, t, r, u, c) * w4).sum(2)  # (N, T, U, C): sum_r W4[c, r] sum_v rel x3
            per = per + conv4.bias.reshape(1, 1, 1, c) * x3.sum(-1).transpose(1, 2).unsqueeze(2)
            return per.permute(0, 3, 1, 2) * alpha + torch.matmul(x3, a.transpose(-1, -2))
        refined = conv4(rel.reshape(n, r, t * u, v)).reshape(n, -1, t, u, v) * alpha  # (N, C, T, U, V)
        per_frame = torch.matmul(refined, x3.unsqueeze(-1)).squeeze(-1)  # (N, C, T, U)
        return per_frame + torch.matmul(x3, a.transpose(-1, -2))


class UnitGCN(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, A: torch.Tensor, causal_window: int = 0,
                 static_topology: bool = False):
        super().__init__()
        self.num_subset = A.shape[0]
        static_joints = A.shape[-1] if static_topology else 0
        self.convs = nn.ModuleList(CTRGC(in_channels, out_channels, causal_window=causal_window,
                                         static_joints=static_joints) for _ in range(self.num_subset))
        if in_channels != out_channels:
            self.down: nn.Module = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1), nn.BatchNorm2d(out_channels))
        else:
            self.down = nn.Identity()
        self.PA = nn.Parameter(A.clone())
        self.alpha = nn.Parameter(torch.zeros(1))
        self.bn = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU()

    # ONNX export form (scripts/ctrgcn_export_form.py, docs/bench/ctrgcn-export-form-*.json,
    # docs/BENCHMARKS.md): "subsets" is the official per-subset loop; "stacked" runs the subsets'
    # convs as one conv per stage and sums the subsets in one MatMul (654 -> 394 nodes), measured
    # on this CPU at 0.67-0.77x on ORT fp32 (its Transpose of x3 costs more than the nodes saved),
    # 1.02-1.18x on OpenVINO fp32 and 1.05-1.09x on OpenVINO bf16: too little for a per-backend
    # graph, so edgeskel exports "subsets". Training and eager evaluation run the official loop.
    export_form = "subsets"

    def _stackable(self) -> bool:
        """conv1/conv2 must be affine per position (plain or factorized 1x1 convs) to move the
        temporal mean before them; conv3/conv4 may be anything (`parallel_maps` falls back)."""
        return all(conv_chain(getattr(c, f"conv{i}")) is not None for c in self.convs for i in (1, 2))

    def _forward_stacked(self, x: torch.Tensor) -> torch.Tensor:
        """The official sum over subsets s of x3_s @ (conv4(tanh(x1_s - x2_s)) * alpha + A_s)^T
        with every subset at once. conv1/conv2 are affine per position, so they run on the
        temporal mean (CTR-GC averages their outputs over T anyway): (N, C, 1, V), T times less
        work. The subset sum is one MatMul over (subset, joint): X (N, C, T, S*V) @ (N, C, S*V, V)."""
        n, _, t, v = x.shape
        s, convs = self.num_subset, list(self.convs)
        x12 = parallel_maps([c.conv1 for c in convs] + [c.conv2 for c in convs], x.mean(2, keepdim=True), False)
        x1, x2 = x12.squeeze(2).chunk(2, dim=1)  # (N, S*R, V) each
        rel = torch.tanh(x1.unsqueeze(-1) - x2.unsqueeze(-2))  # (N, S*R, U, V)
        refined = parallel_maps([c.conv4 for c in convs], rel, True) * self.alpha  # (N, S*C, U, V)
        c = refined.shape[1] // s
        x3 = parallel_maps([c_.conv3 for c_ in convs], x, False)  # (N, S*C, T, V)
        xs = x3.reshape(n, s, c, t, v).permute(0, 2, 3, 1, 4).reshape(n, c, t, s * v)
        r = refined.reshape(n, s, c, v, v).permute(0, 2, 1, 4, 3).reshape(n, c, s * v, v)
        a = self.PA.permute(0, 2, 1).reshape(s * v, v)  # A_s^T stacked: the shared topology as its own constant
        return torch.matmul(xs, r) + torch.matmul(xs, a)

    def _forward_static(self, x: torch.Tensor) -> torch.Tensor:
        """Static topology: every subset's topology is a constant, so the subsets are one product
        X (N, C, T, S*V) @ W (C, S*V, U) after one stacked conv3 -- a third of the MatMuls and
        conv3 nodes of the per-subset loop, the same sum (a step graph's cost is per node)."""
        n, _, t, v = x.shape
        s, convs = self.num_subset, list(self.convs)
        x3 = parallel_maps([c.conv3 for c in convs], x, False)  # (N, S*C, T, V)
        c = x3.shape[1] // s
        xs = x3.reshape(n, s, c, t, v).permute(0, 2, 3, 1, 4).reshape(n, c, t, s * v)
        topo = torch.cat([cv.static_topology(self.PA[i], self.alpha) for i, cv in enumerate(convs)], 0)  # (S, C, U, V)
        w = topo.permute(1, 0, 3, 2).reshape(c, s * v, v)  # W[c, s*V + v, u] = topology_s[c, u, v]
        return torch.matmul(xs, w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.convs[0].static_input is not None:
            return self.relu(self.bn(self._forward_static(x)) + self.down(x))
        if (self.export_form == "stacked" and not self.training and self.convs[0].trailing is None and torch.onnx.is_in_onnx_export()
                and rewrites_enabled() and self._stackable()):
            y = self._forward_stacked(x)
        else:
            y = self.convs[0](x, self.PA[0], self.alpha)
            for i in range(1, self.num_subset):
                y = y + self.convs[i](x, self.PA[i], self.alpha)
        return self.relu(self.bn(y) + self.down(x))


class TCNGCNUnit(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, A: torch.Tensor, stride: int = 1, residual: bool = True,
                 causal_window: int = 0, static_topology: bool = False):
        super().__init__()
        self.gcn1 = UnitGCN(in_channels, out_channels, A, causal_window, static_topology)
        self.tcn1 = MultiScaleTemporalConv(out_channels, out_channels, kernel_size=5, stride=stride, dilations=(1, 2))
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


class CTRGCN(nn.Module):
    """Canonical (N, C, T, V, M) in, (N, num_classes) logits out (mean over persons)."""

    def __init__(
        self,
        num_classes: int,
        A: torch.Tensor,
        num_person: int = 2,
        in_channels: int = 3,
        base_channels: int = 64,
        num_stages: int = 10,
        dropout: float = 0.0,
        topology_window: int = 0,
        static_topology: bool = False,
    ):
        super().__init__()
        v = A.shape[-1]
        self.in_channels, self.num_joints, self.num_person = in_channels, v, num_person
        self.data_bn = nn.BatchNorm1d(num_person * in_channels * v)
        c_in, rate = in_channels, 1
        for i, (c_out, stride) in enumerate(layer_plan(base_channels, num_stages), start=1):
            # causal topology: a trailing mean over the frames the windowed layer would average
            window = -(-topology_window // rate) if topology_window else 0
            self.add_module(f"l{i}", TCNGCNUnit(c_in, c_out, A, stride=stride, residual=i > 1, causal_window=window,
                                                static_topology=static_topology))
            c_in, rate = c_out, rate * stride
        self.num_stages = num_stages
        self.drop_out = nn.Dropout(dropout) if dropout else nn.Identity()
        self.fc = nn.Linear(c_in, num_classes)
        self.init_weights()

    def init_weights(self) -> None:
        """The official initialisation (matters when training from scratch)."""
        for m in self.modules():
            if isinstance(m, UnitGCN):
                for sub in m.modules():
                    if isinstance(sub, nn.Conv2d):
                        conv_init(sub)
                    elif isinstance(sub, nn.BatchNorm2d):
                        bn_init(sub, 1.0)
                bn_init(m.bn, 1e-6)
        official_tcn_init(self)
        nn.init.normal_(self.fc.weight, 0, (2.0 / self.fc.out_features) ** 0.5)
        bn_init(self.data_bn, 1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x, self.in_channels, self.num_joints, self.num_person, "ctrgcn")
        n, m = x.shape[0], x.shape[4]
        x = mvc_data_bn(self.data_bn, x)
        for i in range(1, self.num_stages + 1):
            x = getattr(self, f"l{i}")(x)
        return self.fc(self.drop_out(pool_persons(x, n, m)))


def _trailing_ctrgcn(kwargs: dict[str, Any], num_frames: int) -> dict[str, Any]:
    """Each layer's topology from a trailing mean over the frames the windowed model averages
    (num_frames at the input rate)."""
    rest = {k: v for k, v in kwargs.items() if k != "static_topology"}
    return {**rest, "topology_window": int(kwargs.get("topology_window") or num_frames)}


def _static_ctrgcn(kwargs: dict[str, Any], num_frames: int) -> dict[str, Any]:
    """One learned channel-wise topology per layer and subset (no per-sample refinement)."""
    return {**{k: v for k, v in kwargs.items() if k != "topology_window"}, "static_topology": True}


@torch.no_grad()
def calibrate_static(static_net: nn.Module, windowed_net: nn.Module, clips: Any) -> None:
    """Set each static CTRGC's `static_input` to the mean over `clips` (iterable of (1, C, T, V, M)
    tensors) of what the windowed model's CTRGC at the same place averages over T: the topology
    a typical sample gets, where the fine-tune starts."""
    windowed = {name: m for name, m in windowed_net.named_modules() if isinstance(m, CTRGC)}
    sums: dict[str, torch.Tensor] = {}
    count = 0

    def hook(name: str):
        def record(mod: nn.Module, args: tuple, out: torch.Tensor) -> None:
            x = args[0]
            sums[name] = sums.get(name, 0) + x.mean(2).sum(0)  # (C, V): window mean, summed over rows
        return record

    handles = [m.register_forward_hook(hook(name)) for name, m in windowed.items()]
    was_training = windowed_net.training
    windowed_net.eval()
    try:
        for clip in clips:
            windowed_net(clip)
            count += clip.shape[0] * clip.shape[-1]  # rows = samples x persons
    finally:
        for h in handles:
            h.remove()
        windowed_net.train(was_training)
    if not count:
        raise ConfigError("ctrgcn: no clips to calibrate the static topology from")
    for name, m in static_net.named_modules():
        if isinstance(m, CTRGC) and m.static_input is not None:
            if name not in sums:
                raise ConfigError(f"ctrgcn: no windowed CTRGC at {name} to calibrate the static topology from")
            m.static_input.copy_(sums[name] / count)


CAUSAL_FORMS = {  # the default first: streams as well or better (docs/STREAMING.md) at a third of the step cost
    "static": CausalForm(_static_ctrgcn, calibrate_static, "one learned channel-wise topology per layer and "
                         "subset, started at the training set's mean sample (a plain GCN's step cost)"),
    "trailing": CausalForm(_trailing_ctrgcn, description="topology of frame t refined from a trailing mean over "
                           "the window's frames up to t (same parameters; ~1640 step-graph nodes)"),
}


@register_model("ctrgcn", family="gcn", description="CTR-GCN (official implementation, channel-wise topology refinement)",
                tiny={"layout": "kinect20", "width": 0.125, "num_stages": 5}, causal_forms=CAUSAL_FORMS)
def build_ctrgcn(
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
    topology_window: int = 0,
    static_topology: bool = False,
    **unknown: Any,
) -> nn.Module:
    """CTR-GCN (official). `topology_window` > 0: the causal (streamable) form, topology refined
    from a trailing mean over that many input frames (0: the official mean over the window).
    `static_topology`: the other causal form, one learned topology per layer and subset."""
    if unknown:
        raise ConfigError(f"ctrgcn: unknown model arguments {sorted(unknown)}")
    if topology_window and static_topology:
        raise ConfigError("ctrgcn: topology_window and static_topology are two causal forms; choose one")
    if not 1 <= num_stages <= 10:
        raise ConfigError(f"ctrgcn: num_stages must be in 1..10, got {num_stages}")
    # base must keep 4*base, 2*base and base divisible by the 4 temporal branches
    base = base_channels if base_channels is not None else round_channels(64 * width, 4)
    if base % 4:
        raise ConfigError(f"ctrgcn: base_channels must be a multiple of 4, got {base}")
    A = torch.from_numpy(ctrgcn_spatial(layout, edges))
    return CTRGCN(num_classes, A, num_person=num_person, in_channels=in_channels or layout.channels,
                  base_channels=base, num_stages=num_stages, dropout=dropout, topology_window=int(topology_window),
                  static_topology=bool(static_topology))
