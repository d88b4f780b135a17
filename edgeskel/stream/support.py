"""Which registered models stream, and why the others do not (yet).

Streaming needs every op that looks along T to be local in time (a temporal conv or pool of
finite extent). One global temporal op anywhere before the final average pool -- a mean over
the whole window feeding back into the features, attention across frames -- makes the
output at frame t depend on frames that a stream has not seen or has already dropped.

Each streamable family says how to find its frames-per-output, how to convert its temporal
path, and how to compute per-output-frame features for the reference (semantics.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn as nn

from edgeskel.checkpoint import ModelSpec
from edgeskel.stream.convert import Converter, NotStreamable, temporal_stride
from edgeskel.stream.layers import Timeline


@dataclass(frozen=True)
class Family:
    """How one architecture streams."""

    stride: Callable[[nn.Module], int]  # frames per final output (keep-stride)
    # rewrites the temporal path (in place, or into a new module) -> (the stream network, its output timeline)
    convert: Callable[[Converter, nn.Module, Timeline], tuple[nn.Module, Timeline]]
    features: Callable[[nn.Module, torch.Tensor], torch.Tensor]  # (N, C, T, V, M) -> (N*M, C', T', V)
    head: Callable[[nn.Module, torch.Tensor, int, int], torch.Tensor]  # (N*M, C', V) one frame -> (N, K)
    check: Callable[[nn.Module], None] = lambda net: None  # raises NotStreamable for a form that cannot stream
    # found by measurement rather than written per block (graph.py): build_step_model checks the
    # step model against the reference on a random stream before returning it
    measured: bool = False
    # the head is not affine (a user's MLP): the per-stream shape of one output frame's pool input
    # that a stream averages before running `head` on it (graph.pooled_shape); None: it averages logits
    pooled: Callable[[nn.Module], tuple[int, ...] | None] = lambda net: None


# ---- ST-GCN / ST-GCN++ (PYSKL STGCN class) ---------------------------------------------------
def _stgcn_stride(net: nn.Module) -> int:
    s = 1
    for block in net.gcn:
        s *= max((temporal_stride(m) for m in block.modules()), default=1)
    return s


def _stgcn_convert(conv: Converter, net: nn.Module, tl: Timeline) -> tuple[nn.Module, Timeline]:
    for i in range(len(net.gcn)):
        net.gcn[i], tl = conv.convert(net.gcn[i], tl)
    return net, tl


def _stgcn_features(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    from edgeskel.models.blocks import mvc_data_bn, vc_data_bn

    x = vc_data_bn(net.data_bn, x) if net.data_bn_type == "VC" else mvc_data_bn(net.data_bn, x)
    for block in net.gcn:
        x = block(x)
    return x


def _stgcn_head(net: nn.Module, feat: torch.Tensor, n: int, m: int) -> torch.Tensor:
    return net.fc(net.drop_out(feat.reshape(n, m, feat.shape[1], -1).mean(3).mean(1)))


STGCN_FAMILY = Family(_stgcn_stride, _stgcn_convert, _stgcn_features, _stgcn_head)


# ---- CTR-GCN (official), causal topology form ---------------------------------------------------
def _ctrgcn_layers(net: nn.Module) -> list[str]:
    """l1..lN: CTR-GCN's and Hyperformer's layers."""
    return [f"l{i}" for i in range(1, net.num_stages + 1)]


def _ctrgcn_stride(net: nn.Module) -> int:
    s = 1
    for name in _ctrgcn_layers(net):
        s *= max((temporal_stride(m) for m in getattr(net, name).modules()), default=1)
    return s


def _ctrgcn_check(net: nn.Module) -> None:
    from edgeskel.models.ctrgcn import CTRGC

    if any(isinstance(m, CTRGC) and m.trailing is None and m.static_input is None for m in net.modules()):
        raise NotStreamable(f"model 'ctrgcn' has no streaming form as trained: {CAUSAL_HINT['ctrgcn']}")


def _ctrgcn_convert(conv: Converter, net: nn.Module, tl: Timeline) -> tuple[nn.Module, Timeline]:
    for name in _ctrgcn_layers(net):
        new, tl = conv.convert(getattr(net, name), tl)
        setattr(net, name, new)
    return net, tl


def _ctrgcn_features(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    from edgeskel.models.blocks import mvc_data_bn

    x = mvc_data_bn(net.data_bn, x)
    for name in _ctrgcn_layers(net):
        x = getattr(net, name)(x)
    return x


CTRGCN_FAMILY = Family(_ctrgcn_stride, _ctrgcn_convert, _ctrgcn_features, _stgcn_head, _ctrgcn_check)


# ---- Hyperformer: attention over the joints of each frame, multi-scale TCN over time --------------
def _hyperformer_features(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    from edgeskel.models.blocks import mvc_data_bn

    x = mvc_data_bn(net.data_bn, x)
    for name in _ctrgcn_layers(net):
        x = getattr(net, name)(x, net.part_avg, net.part_scatter)
    return x


HYPERFORMER_FAMILY = Family(_ctrgcn_stride, _ctrgcn_convert, _hyperformer_features, _stgcn_head)

# ---- Shift-GCN: per-frame joint shifts, learned temporal shifts (depthwise convs along T) ---------
SHIFTGCN_FAMILY = Family(_ctrgcn_stride, _ctrgcn_convert, _ctrgcn_features, _stgcn_head)

# ---- MS-G3D: per stage relu(sgcn(x) + gcn3d(x)) then an MS-TCN; G3D windows are local in time ----
_MSG3D_STAGES = (1, 2, 3)


def _msg3d_stride(net: nn.Module) -> int:
    s = 1
    for i in _MSG3D_STAGES:
        s *= max((temporal_stride(m) for name in ("sgcn", "gcn3d", "tcn") for m in getattr(net, f"{name}{i}").modules()),
                 default=1)
    return s


def _msg3d_convert(conv: Converter, net: nn.Module, tl: Timeline) -> tuple[nn.Module, Timeline]:
    for i in _MSG3D_STAGES:
        paths = []
        for name in (f"sgcn{i}", f"gcn3d{i}"):
            ch = conv.out_channels(getattr(net, name))
            new, ptl = conv.convert(getattr(net, name), tl)
            paths.append((new, ptl, ch))
        (sgcn, gcn3d), tl = conv.align(paths, f"MS-G3D stage {i}")  # the two paths meet: delayed to one lag
        setattr(net, f"sgcn{i}", sgcn)
        setattr(net, f"gcn3d{i}", gcn3d)
        new, tl = conv.convert(getattr(net, f"tcn{i}"), tl)
        setattr(net, f"tcn{i}", new)
    return net, tl


def _msg3d_features(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    from edgeskel.models.blocks import mvc_data_bn

    x = mvc_data_bn(net.data_bn, x)
    for i in _MSG3D_STAGES:
        x = getattr(net, f"tcn{i}")(net.relu(getattr(net, f"sgcn{i}")(x) + getattr(net, f"gcn3d{i}")(x)))
    return x


MSG3D_FAMILY = Family(_msg3d_stride, _msg3d_convert, _msg3d_features, _stgcn_head)

# ---- a user's own module (models/user.py): the traced forward, judged op by op (graph.py) -------------
def _graph_family(spec: ModelSpec) -> Family:
    from edgeskel.stream import graph

    c, _, v, m = spec.input_shape
    plans = graph.GraphFamilyCache((c, v, m))
    return Family(stride=lambda net: plans.plan(net).stride,
                  convert=lambda conv, net, tl: graph.convert(conv, plans.plan(net), tl),
                  features=lambda net, x: graph.features(plans.plan(net), x),
                  head=lambda net, feat, n, m_: graph.head(plans.plan(net), feat, n, m_),
                  check=plans.check, measured=True, pooled=lambda net: graph.pooled_shape(plans.plan(net)))


# Families built per checkpoint (they need its input shape), by registered model family.
GRAPH_FAMILIES: dict[str, Callable[[ModelSpec], Family]] = {"user": _graph_family}

FAMILIES: dict[str, Family] = {"stgcn": STGCN_FAMILY, "stgcnpp": STGCN_FAMILY, "ctrgcn": CTRGCN_FAMILY,
                               "hyperformer": HYPERFORMER_FAMILY, "shiftgcn": SHIFTGCN_FAMILY, "msg3d": MSG3D_FAMILY}

# What to do about a model that needs its causal form (models' `causal_forms`) first.
CAUSAL_HINT = {
    "ctrgcn": "CTR-GCN refines its topology from a mean over the whole window (CTRGC averages conv1/conv2 "
              "over T); train a causal form: edgeskel train --init CHECKPOINT --streamable --data DATA (static: "
              "one learned topology per layer, a plain GCN's step cost; trained from scratch with --model ctrgcn "
              "--streamable --distill 0.5 --teacher CHECKPOINT it streams within a point of the windowed model "
              "on NW-UCLA) or --causal-form trailing (topology from a trailing mean, same weights)",
}

# Why the other registered models refuse. "cannot": a global temporal op is part of the
# architecture (a stream must replace it by a causal one, which changes the function and
# needs fine-tuning); "not yet": the temporal structure is local, the converter is not written.
NO_CONVERTER = "no streaming converter for this architecture"  # a model neither listed nor refused below
REFUSALS: dict[str, str] = {
    "pyskl_ctrgcn": "cannot stream as trained: PYSKL CTR-GCN refines its topology from a mean over the whole "
                    "window (CTRGC averages over T); a causal replacement (running mean + fine-tuning) is not "
                    "implemented yet",
    "aagcn": "cannot stream as trained: AAGCN's adaptive graph is a product over all T frames "
             "(conv_a^T conv_b / (inter*T)) and its temporal and channel attention average over the whole window",
    "efficientgcn": "cannot stream as trained: EfficientGCN's spatial-temporal attention averages over the whole "
                    "window (x.mean over T) inside every block",
    "ensemble": "not yet: a multi-stream ensemble fuses softmax scores of whole-window decisions, so a stream "
                "would keep one running mean per member and fuse after it; stream a member checkpoint instead "
                "(streaming.checkpoint) or export the ensemble windowed",
}


def family_for(name: str, spec: ModelSpec | None = None) -> Family:
    """How model `name` streams; `spec` (its checkpoint's) for the families found by measurement."""
    if name in FAMILIES:
        return FAMILIES[name]
    if name in GRAPH_FAMILIES and spec is not None:
        return GRAPH_FAMILIES[name](spec)
    reason = REFUSALS.get(name, NO_CONVERTER)
    raise NotStreamable(f"model {name!r} has no streaming form: {reason}")


def streaming_support(name: str) -> tuple[str, str]:
    """("yes" | "causal form" | "judged" | "no", why) for `edgeskel models`: what a user can expect
    before trying (the authoritative answer is build_step_model's, per checkpoint)."""
    if name in CAUSAL_HINT:
        return "causal form", CAUSAL_HINT[name]
    if name in FAMILIES:
        return "yes", "every temporal op is local (convs, pools, per-frame attention)"
    if name in GRAPH_FAMILIES:
        return "judged", "its traced forward is judged op by op (docs/STREAMING.md 'Your own module')"
    return "no", REFUSALS.get(name, NO_CONVERTER)


def streamable_models() -> list[str]:
    return sorted(set(FAMILIES) | set(GRAPH_FAMILIES))
