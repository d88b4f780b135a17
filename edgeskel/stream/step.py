"""The step model: `forward(frame, *states) -> (logits, *new_states)`.

Built from a trained (possibly factorized) checkpoint model by `build_step_model`. One call
takes `stride` new raw frames (N=1, C, stride, V, M) -- one frame unless a strided network
keeps its strides -- and returns the decision for the stream so far (semantics.py) plus the
next state. State 0 is the call counter, the last one the ring of recent per-output logits;
the others belong to the causal preprocessing and to the network's temporal layers.
"""

from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn as nn

from edgeskel.checkpoint import ModelSpec
from edgeskel.errors import ConfigError
from edgeskel.remote.device_runner import end_call_plan as end_calls  # one end-of-stream plan everywhere
from edgeskel.stream.convert import STRIDE_MODES, Converter, NotStreamable, probe_channels, remove_strides
from edgeskel.stream.layers import StreamContext, Timeline, beyond_end, end_length_table
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
    flush_calls: int  # calls from the end call on (incl.) until the decision covers the last frame
    num_classes: int
    channels: int
    joints: int
    persons: int
    upsample: int = 1  # network frames per source frame (stride, window, delay, valid_from: source frames)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class StepModel(nn.Module):
    def __init__(self, prefix: CausalPreprocess, net: nn.Module, ctx: StreamContext, plan: StreamPlan,
                 slots: dict[str, int], out_timeline: Timeline, cap: int, hold_empty: bool = True,
                 pooled: tuple[int, ...] | None = None):
        super().__init__()
        self.hold_empty = hold_empty
        self.pooled = pooled  # the ring holds pool-input frames of this per-stream shape, the head runs on their mean
        self.prefix, self.net = prefix, net
        self.__dict__["ctx"] = ctx
        self.plan, self.cap = plan, cap
        self.ring_slot, self.filled_slot = slots["ring"], slots["filled"]
        self.end_slot, self.end_r_slot = slots["since_end"], slots["end_frames"]
        self.out_timeline = out_timeline
        # the end machinery counts network frames: r source frames are r * upsample of them
        self.register_buffer("r_values", torch.arange(plan.stride * plan.upsample + 1, dtype=torch.float32),
                             persistent=False)
        self.register_buffer("out_offset", torch.tensor([-float(out_timeline.lag)]), persistent=False)
        self.register_buffer("out_table", end_length_table(out_timeline, plan.stride * plan.upsample),
                             persistent=False)
        self.reference_model: nn.Module | None = None  # set by build_step_model, not a submodule
        self.family: Family | None = None

    # -- states ------------------------------------------------------------------------------------
    @property
    def batch(self) -> int:
        """Streams one call serves (each with its own counter, end and state rows)."""
        return self.ctx.batch

    def state_shapes(self) -> list[tuple[int, ...]]:
        p, n = self.plan, self.ctx.batch
        out = []
        for shape, batch in zip(self.ctx.shapes, self.ctx.batch_dims, strict=True):
            lead = {"n": (n,), "nm": (n * p.persons,)}[batch]
            out.append(lead + tuple(shape))
        return out

    def state_rows(self) -> list[str]:
        """Per state, how its leading axis holds the streams (streaming.json `rows`)."""
        return ["stream" if b == "n" else "stream x person" for b in self.ctx.batch_dims]

    def initial_states(self) -> list[torch.Tensor]:
        return [torch.zeros(s, dtype=torch.float32) for s in self.state_shapes()]

    def frame_shape(self) -> tuple[int, ...]:
        p = self.plan
        return (self.ctx.batch, p.channels, p.stride, p.joints, p.persons)

    # -- one call ---------------------------------------------------------------------------------
    def forward(self, frame: torch.Tensor, valid: torch.Tensor, *states: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """`frame` (N, C, S, V, M) raw, `valid` (N,): how many of each stream's S frames are real
        (S while the stream runs; fewer or 0 ends it: "Ending a stream" in docs/STREAMING.md).
        Every stream has its own counter, end and state rows, so streams of one batch may start
        (their rows at the initial value) and end on different calls."""
        ctx, p = self.ctx, self.plan
        if len(states) != len(ctx.shapes):
            raise ValueError(f"step model takes {len(ctx.shapes)} states, got {len(states)}")
        count, since_end, end_r = states[0], states[self.end_slot], states[self.end_r_slot]
        stride = float(p.stride)
        ended_before = since_end > 0
        ends_now = ~ended_before & (valid < stride)
        since_new = torch.where(ended_before, torch.clamp(since_end + 1.0, max=float(self.cap)),
                                ends_now.to(since_end.dtype))
        end_r_new = torch.where(ends_now, valid, end_r)
        ctx.count, ctx.inputs, ctx.outputs = count, list(states), {}
        ctx.end_call = torch.where(since_new > 0, since_new - 1.0, torch.full_like(since_new, -1e6))
        ctx.end_frames = (end_r_new.unsqueeze(-1) * float(p.upsample) == self.r_values).to(frame.dtype)  # (N, S*r + 1)
        ctx.valid = valid
        logit = self.net(self.prefix(frame))  # (N, K): the newest output frame's logits
        if self.pooled is not None:  # its pool input instead, one row per stream
            logit = logit.reshape(frame.shape[0], -1)
        # the newest output frame enters the running mean if it exists: >= 0, before the end
        push = (count >= float(p.lag)) & ~beyond_end(ctx, self.out_timeline, self.out_offset, self.out_table, "stream")
        ring_in = states[self.ring_slot]
        ring = torch.where(push.reshape(-1, 1, 1), torch.cat([ring_in[:, :, 1:], logit.unsqueeze(-1)], -1), ring_in)
        ctx.outputs[self.ring_slot] = ring
        ctx.outputs[self.filled_slot] = torch.clamp(states[self.filled_slot] + push.to(frame.dtype),
                                                    max=float(p.window_outputs))
        ctx.outputs[0] = torch.clamp(count + 1.0, max=float(self.cap))
        ctx.outputs[self.end_slot], ctx.outputs[self.end_r_slot] = since_new, end_r_new
        if self.hold_empty:  # an empty call changes nothing (the windowed pipeline drops empty frames)
            hold = empty_chunk(frame) & (valid >= stride) & ~ended_before  # (N,)
            new = [torch.where(self._rows(hold, i, states[i].dim() - 1), states[i], ctx.outputs[i])
                   for i in range(len(states))]
        else:
            new = [ctx.outputs[i] for i in range(len(states))]
        w = p.window_outputs
        filled = new[self.filled_slot]  # (N,): complete output frames in the ring, <= W
        weights = (torch.arange(w, dtype=frame.dtype) >= float(w) - filled.unsqueeze(-1)).to(frame.dtype)  # newest `filled`
        logits = (new[self.ring_slot] * weights.unsqueeze(1)).sum(-1) / torch.clamp(filled, min=1.0).unsqueeze(-1)
        if self.pooled is not None:  # the head on the mean pool input (zeros while no output frame is complete)
            n, shape = logits.shape[0], self.pooled
            head = self.family.head(self.reference_model, logits.reshape((n * shape[0],) + shape[1:]), n, p.persons)
            logits = torch.where((filled > 0).unsqueeze(-1), head, torch.zeros_like(head))
        ctx.inputs, ctx.outputs, ctx.count = [], {}, None
        ctx.end_call = ctx.end_frames = ctx.valid = None
        return (logits, *new)

    def _rows(self, per_stream: torch.Tensor, slot: int, dims: int) -> torch.Tensor:
        """A per-stream (N,) value shaped for state `slot` (rows per stream, or per stream x person)."""
        if self.ctx.batch_dims[slot] == "nm":
            return self.ctx.per_row(per_stream, dims)
        return self.ctx.per_stream(per_stream, dims)

    def full_valid(self) -> torch.Tensor:
        """The `valid` input of a call whose frames are all real (every stream)."""
        return torch.full((self.ctx.batch,), float(self.plan.stride))


def build_step_model(model: nn.Module, spec: ModelSpec, stride_mode: str = "keep", hold_empty: bool = True,
                     window: int | None = None, batch: int = 1) -> StepModel:
    """The streaming form of `model` (left unchanged). Raises NotStreamable with the reason.
    `hold_empty=False`: the graph does not check for empty calls; the caller must not feed them
    (saves one Where per state; streaming.json says which applies). `window`: the frames a
    decision averages, in source frames (default: the T the model was trained on, / upsample); a longer window lets the
    final decision of an ended stream cover a whole long action. `batch`: streams one call
    serves (N independent streams; docs/STREAMING.md "Batched streams")."""
    if batch < 1:
        raise ConfigError(f"stream batch of {batch}; give at least 1")
    if stride_mode not in STRIDE_MODES:
        raise ConfigError(f"stride mode {stride_mode!r}; choose one of {list(STRIDE_MODES)}")
    family = family_for(spec.name, spec)
    # judged in eval mode (a training-mode BN mixes frames); no grad: a pooled head's weights are
    # traced from it into the step graph as constants
    base = copy.deepcopy(model).eval().requires_grad_(False)
    if stride_mode == "remove":
        base = remove_strides(base)
    try:
        family.check(base)
    except NotStreamable as exc:
        if not family.measured:
            raise
        raise NotStreamable(f"model {spec.name!r} has no streaming form: {exc}") from None
    net = copy.deepcopy(base)
    c, t, v, m = spec.input_shape
    up = int(spec.preprocess.upsample)
    stride = family.stride(net)  # network frames per call
    if stride % up:
        raise NotStreamable(f"model {spec.name!r}: upsample {up} needs a whole number of source frames per call; "
                            f"the {stride_mode}-stride network takes {stride} frames per call (choose an upsample "
                            f"that divides {stride})")
    if window is not None:  # source frames
        if window < 1:
            raise ConfigError(f"stream window of {window} frames; give at least 1")
        t = int(window) * up
    window = -(-t // stride) * stride  # network frames
    out_ch, in_ch = probe_channels(net, torch.zeros(1, c, window, v, m))
    ctx = StreamContext(joints=v, stride=stride, batch=int(batch), persons=m)
    ctx.new_slot((), "n")  # slot 0: the call counter, one per stream
    slots = {"since_end": ctx.new_slot((), "n"), "end_frames": ctx.new_slot((), "n")}
    prefix = CausalPreprocess(spec.layout, spec.preprocess, Timeline(stride, 0, window), ctx)
    try:
        net, tl = family.convert(Converter(ctx, out_ch, in_ch), net, prefix.timeline)
    except ValueError as exc:
        raise NotStreamable(f"model {spec.name!r}: {exc}") from None
    if tl.n != 1:
        raise NotStreamable(f"model {spec.name!r}: {tl.n} output frames per call (strides along its branches differ)")
    w = tl.length
    slots["filled"] = ctx.new_slot((), "n")
    pooled = family.pooled(base)
    slots["ring"] = ctx.new_slot((math.prod(pooled) if pooled else spec.num_classes, w), "n")
    flush = max(max(1, tl.length_for(r) + tl.lag) for r in range(0, stride, up))
    cap = max(ctx.settle, tl.lag + w, flush) + 1
    src = stride // up  # source frames per call: what callers count in
    plan = StreamPlan(model=spec.name, stride_mode=stride_mode, stride=src, window_outputs=w, window=w * src,
                      lag=tl.lag, delay=tl.lag * src, valid_from=(w + tl.lag) * src, flush_calls=flush,
                      num_classes=spec.num_classes, channels=c, joints=v, persons=m, upsample=up)
    step = StepModel(prefix, net, ctx, plan, slots, tl, cap, hold_empty, pooled).eval()
    step.__dict__["reference_model"] = base
    step.__dict__["family"] = family
    step.__dict__["spec"] = spec
    if family.measured:
        _check_against_reference(step)
    return step


def _check_against_reference(step: StepModel) -> None:
    """A step model found by measurement (a user's module) must give the reference's decision
    (semantics.py) on a random stream, running and ended, before anyone uses it."""
    from edgeskel.stream.semantics import reference_logits

    p = step.plan
    gen = torch.Generator().manual_seed(0)
    length = p.valid_from + 2 * p.stride
    frames = torch.randn(p.channels, length, p.joints, p.persons, generator=gen)
    running = run_stream(step, frames)[-1].numpy()
    ended = run_stream(step, frames[:, : length - 1], end=True)[-1].numpy()
    worst = 0.0
    for got, want in ((running, reference_logits(step, frames.numpy())),
                      (ended, reference_logits(step, frames[:, : length - 1].numpy(), p.flush_calls))):
        worst = max(worst, float(abs(got - want).max()) / (1.0 + float(abs(want).max())))
    if worst > 1e-4:
        raise NotStreamable(f"model {p.model!r}: its streaming form does not give the decision of its forward run "
                            f"over the stream (relative error {worst:.2g}); the forward likely depends on the number "
                            "of frames it is given (e.g. divides by its own T) in a way a stream cannot reproduce")


def run_stream(step: StepModel, frames: torch.Tensor, end: bool = False) -> torch.Tensor:
    """Feed raw frames (C, L, V, M), `stride` at a time; returns one decision per call (K each).
    `end`: then end the stream (the leftover frames, then `plan.flush_calls` calls in all): the
    last decision covers the stream up to its last frame. Without it, L // stride calls."""
    s, p = step.plan.stride, step.plan
    c, length = frames.shape[0], frames.shape[1]
    if end:
        calls = end_calls(length, s, p.flush_calls)
    else:
        calls = [(i * s, s) for i in range(length // s)]
    states = step.initial_states()
    outs = []
    with torch.no_grad():
        for first, real in calls:
            chunk = torch.zeros((c, s) + tuple(frames.shape[2:]), dtype=torch.float32)
            chunk[:, :real] = frames[:, first:first + real]
            n = step.batch  # a batched step model gets the stream in every row; row 0 is returned
            res = step(chunk.unsqueeze(0).expand(n, *chunk.shape).contiguous(), torch.full((n,), float(real)), *states)
            outs.append(res[0][0])
            states = list(res[1:])
    return torch.stack(outs) if outs else torch.zeros(0, p.num_classes)
