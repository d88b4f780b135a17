"""The step model: `forward(frame, *states) -> (logits, *new_states)`.

Built from a trained (possibly factorized) checkpoint model by `build_step_model`. One call
takes `stride` new raw frames (N=1, C, stride, V, M) -- one frame unless a strided network
keeps its strides -- and returns the decision for the stream so far (semantics.py) plus the
next state. State 0 is the call counter, the last one the ring of recent per-output logits;
the others belong to the causal preprocessing and to the network's temporal layers.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn as nn

from edgeskel.checkpoint import ModelSpec
from edgeskel.errors import ConfigError
from edgeskel.stream.convert import STRIDE_MODES, Converter, NotStreamable, probe_channels, remove_strides
from edgeskel.stream.layers import StreamContext, Timeline
from edgeskel.stream.preprocess import CausalPreprocess, empty_chunk
from edgeskel.stream.support import Family, family_for


@dataclass(frozen=True)
class StreamPlan:
    """What a step model computes (docs/STREAMING.md has the definitions)."""

    model: str
    stride_mode: str  # "keep" | "remove"
    stride: int  # frames per call = frames between decisions
    window_outputs: int  # W: final output frames averaged per decision
    window: int  # W * stride input frames (the windowed model's T, rounded up to the stride)
    lag: int  # calls: the decision after call c averages output frames <= c - lag
    delay: int  # frames: lag * stride
    valid_from: int  # frames fed after which every decision averages a full window
    num_classes: int
    channels: int
    joints: int
    persons: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class StepModel(nn.Module):
    def __init__(self, prefix: CausalPreprocess, net: nn.Module, ctx: StreamContext, plan: StreamPlan,
                 ring_slot: int, cap: int, hold_empty: bool = True):
        super().__init__()
        self.hold_empty = hold_empty
        self.prefix, self.net = prefix, net
        self.__dict__["ctx"] = ctx
        self.plan, self.ring_slot, self.cap = plan, ring_slot, cap
        self.reference_model: nn.Module | None = None  # set by build_step_model, not a submodule
        self.family: Family | None = None

    # -- states ------------------------------------------------------------------------------------
    def state_shapes(self) -> list[tuple[int, ...]]:
        p = self.plan
        out = []
        for shape, batch in zip(self.ctx.shapes, self.ctx.batch_dims, strict=True):
            lead = {"none": (), "n": (1,), "nm": (p.persons,)}[batch]
            out.append(lead + tuple(shape))
        return out

    def initial_states(self) -> list[torch.Tensor]:
        return [torch.zeros(s, dtype=torch.float32) for s in self.state_shapes()]

    def frame_shape(self) -> tuple[int, ...]:
        p = self.plan
        return (1, p.channels, p.stride, p.joints, p.persons)

    # -- one call ---------------------------------------------------------------------------------
    def forward(self, frame: torch.Tensor, *states: torch.Tensor) -> tuple[torch.Tensor, ...]:
        ctx = self.ctx
        if len(states) != len(ctx.shapes):
            raise ValueError(f"step model takes {len(ctx.shapes)} states, got {len(states)}")
        count = states[0]
        ctx.count, ctx.inputs, ctx.outputs = count, list(states), {}
        logit = self.net(self.prefix(frame))  # (1, K): the newest output frame's logits
        ring = torch.cat([states[self.ring_slot][:, :, 1:], logit.unsqueeze(-1)], -1)
        ctx.outputs[self.ring_slot] = ring
        ctx.outputs[0] = torch.clamp(count + 1.0, max=float(self.cap))
        if self.hold_empty:  # an empty call changes nothing (the windowed pipeline drops empty frames)
            hold = empty_chunk(frame)
            new = [torch.where(hold, states[i], ctx.outputs[i]) for i in range(len(states))]
        else:
            new = [ctx.outputs[i] for i in range(len(states))]
        w = self.plan.window_outputs
        valid = torch.clamp(new[0] - float(self.plan.lag), min=0.0, max=float(w))  # (1,)
        weights = (torch.arange(w, dtype=frame.dtype) >= float(w) - valid).to(frame.dtype)  # newest `valid`
        logits = (new[self.ring_slot] * weights).sum(-1) / torch.clamp(valid, min=1.0)
        ctx.inputs, ctx.outputs, ctx.count = [], {}, None
        return (logits, *new)


def build_step_model(model: nn.Module, spec: ModelSpec, stride_mode: str = "keep", hold_empty: bool = True) -> StepModel:
    """The streaming form of `model` (left unchanged). Raises NotStreamable with the reason.
    `hold_empty=False`: the graph does not check for empty calls; the caller must not feed them
    (saves one Where per state; streaming.json says which applies)."""
    if stride_mode not in STRIDE_MODES:
        raise ConfigError(f"stride mode {stride_mode!r}; choose one of {list(STRIDE_MODES)}")
    family = family_for(spec.name)
    base = copy.deepcopy(model).eval()
    if stride_mode == "remove":
        base = remove_strides(base)
    net = copy.deepcopy(base)
    c, t, v, m = spec.input_shape
    stride = family.stride(net)
    window = -(-t // stride) * stride
    out_ch, in_ch = probe_channels(net, torch.zeros(1, c, window, v, m))
    ctx = StreamContext(joints=v)
    ctx.new_slot((1,), "none")  # slot 0: the call counter
    prefix = CausalPreprocess(spec.layout, spec.preprocess, Timeline(stride, 0, window), ctx)
    try:
        tl = family.convert(Converter(ctx, out_ch, in_ch), net, prefix.timeline)
    except ValueError as exc:
        raise NotStreamable(f"model {spec.name!r}: {exc}") from None
    if tl.n != 1:
        raise NotStreamable(f"model {spec.name!r}: {tl.n} output frames per call (strides along its branches differ)")
    w = tl.length
    ring_slot = ctx.new_slot((spec.num_classes, w), "n")
    cap = max(ctx.settle, tl.lag + w) + 1
    plan = StreamPlan(model=spec.name, stride_mode=stride_mode, stride=stride, window_outputs=w, window=w * stride,
                      lag=tl.lag, delay=tl.lag * stride, valid_from=(w + tl.lag) * stride,
                      num_classes=spec.num_classes, channels=c, joints=v, persons=m)
    step = StepModel(prefix, net, ctx, plan, ring_slot, cap, hold_empty).eval()
    step.__dict__["reference_model"] = base
    step.__dict__["family"] = family
    step.__dict__["spec"] = spec
    return step


def run_stream(step: StepModel, frames: torch.Tensor) -> torch.Tensor:
    """Feed raw frames (C, L, V, M), `stride` at a time; returns (L // stride, K) decisions."""
    s = step.plan.stride
    states = step.initial_states()
    outs = []
    with torch.no_grad():
        for i in range(frames.shape[1] // s):
            res = step(frames[:, i * s:(i + 1) * s].unsqueeze(0), *states)
            outs.append(res[0][0])
            states = list(res[1:])
    return torch.stack(outs) if outs else torch.zeros(0, step.plan.num_classes)
