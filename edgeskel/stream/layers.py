"""Streaming primitives: the stateful modules the conversion puts where a network looks along T.

Every tensor inside a step model carries a *timeline* (`Timeline`): each call delivers `n`
consecutive frames of that tensor, and at call `c` (0-based) the first of them has index
`c * n - lag` in the windowed network's own frame index of that tensor. A temporal layer with
kernel k, dilation d, padding p and stride s needs input index `s*j - p + d*(k-1)` for output
j, so its output lags its input (`conv_timeline`); its state is the last `buffer` input frames
(never the partial sums CoST-GCN's continual convolutions keep: (k-1) x fewer floats).
Branches that meet (Add, Concat) are aligned by `Delay`s to the largest lag.

Indices below 0 do not exist in the windowed network (there the layer sees its zero padding,
or -inf for max pooling). The step model's state starts at zeros, so early calls carry values
at negative indices; each temporal layer replaces its inputs at negative indices by its
padding value (a mask computed from the shared call counter), which makes the stream equal to
the network run from frame 0 (docs/STREAMING.md). After `settle` calls every mask is all ones.

All modules read their state from, and write their next state to, a `StreamContext` that the
step model fills before each call; in ONNX the states become graph inputs and outputs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass(frozen=True)
class Timeline:
    """`n` frames per call; at call c the first has index c*n - lag; `length`: how many frames
    this tensor has in the windowed network run on `window` input frames; `ops`: the (k, s, p, d)
    of every length-changing temporal layer before it (its length for any input length)."""

    n: int
    lag: int
    length: int
    ops: tuple[tuple[int, int, int, int], ...] = ()

    def length_for(self, frames: int) -> int:
        """This tensor's length in the network run on `frames` input frames (may be <= 0)."""
        for k, s, p, d in self.ops:
            frames = conv_out_length(frames, k, s, p, d)
        return frames


@dataclass
class StreamContext:
    """Per-call exchange between the step model and its stateful modules."""

    count: torch.Tensor | None = None  # (N,) float32: calls already made, per stream (saturates)
    # end of stream (docs/STREAMING.md "Ending a stream"): this call's index relative to the
    # end call (-1e6 while the stream has not ended) and the real frames in the end call, one-hot
    end_call: torch.Tensor | None = None  # (N,)
    end_frames: torch.Tensor | None = None  # (N, stride + 1) one-hot of r (network frames)
    valid: torch.Tensor | None = None  # (N,): real frames in this call's chunk
    stride: int = 1  # network frames per call (source frames x preprocess.upsample)
    inputs: list[torch.Tensor] = field(default_factory=list)
    outputs: dict[int, torch.Tensor] = field(default_factory=dict)
    shapes: list[tuple[int, ...]] = field(default_factory=list)  # per slot, batch dim excluded
    batch_dims: list[str] = field(default_factory=list)  # per slot: "n" (streams) or "nm" (streams x persons)
    settle: int = 0  # calls after which every mask is all ones
    joints: int = 0  # V of every (N*M, C, T, V) tensor in the network
    batch: int = 1  # N: streams served by one call, each with its own counter, end and states
    persons: int = 1  # M: network tensors hold N*M rows, stream n's persons at rows n*M..n*M+M-1

    def new_slot(self, shape: tuple[int, ...], batch: str) -> int:
        self.shapes.append(tuple(int(s) for s in shape))
        self.batch_dims.append(batch)
        return len(self.shapes) - 1

    def per_stream(self, t: torch.Tensor, dims: int) -> torch.Tensor:
        """A per-stream (N,) value shaped to broadcast over (N, ...) with `dims` more axes."""
        return t.reshape((-1,) + (1,) * dims)

    def per_row(self, t: torch.Tensor, dims: int = 3) -> torch.Tensor:
        """A per-stream (N,) value shaped to broadcast over the network's (N*M, ...) rows."""
        if self.persons > 1:
            t = t.reshape(-1, 1).expand(-1, self.persons)
        return t.reshape((-1,) + (1,) * dims)


class _Stateful(nn.Module):
    """Holds a reference to the shared context (not a submodule: plain attribute)."""

    def bind(self, ctx: StreamContext, slot: int) -> None:
        self.__dict__["_ctx"] = ctx
        self.slot = slot

    @property
    def ctx(self) -> StreamContext:
        return self.__dict__["_ctx"]

    def _state(self) -> torch.Tensor:
        return self.ctx.inputs[self.slot]

    def _set(self, value: torch.Tensor) -> None:
        self.ctx.outputs[self.slot] = value


def conv_out_length(length: int, k: int, s: int, p: int, d: int) -> int:
    return (length + 2 * p - d * (k - 1) - 1) // s + 1


def conv_timeline(tl: Timeline, k: int, s: int, p: int, d: int) -> tuple[Timeline, int]:
    """(output timeline, buffer) of a temporal layer. `buffer` >= 0: input frames kept in the
    state; < 0: that many leading frames of each chunk are not needed (1x1 strided convs)."""
    if tl.n % s:
        raise ValueError(f"a stride-{s} temporal layer gets {tl.n} frames per call (not a multiple of {s})")
    e = d * (k - 1) - p  # look-ahead: output j is complete when input s*j + e arrives
    lag = (tl.lag + e) // s
    buffer = s * lag + p - tl.lag
    same = s == 1 and 2 * p == d * (k - 1)  # length unchanged: not recorded
    ops = tl.ops if same else tl.ops + ((k, s, p, d),)
    return Timeline(tl.n // s, lag, conv_out_length(tl.length, k, s, p, d), ops), buffer


def end_length_table(tl: Timeline, stride: int) -> torch.Tensor:
    """(stride + 1,) lengths of a tensor for r = 0..stride input frames. Because
    conv_out_length(a*s + b) = a + conv_out_length(b), a stream that ends after c_e whole calls
    and r more frames has this tensor at length c_e * tl.n + table[r]: the end is known per layer
    from the end call's index and r alone (no absolute frame counter that could overflow)."""
    return torch.tensor([float(tl.length_for(r)) for r in range(stride + 1)])


def beyond_end(ctx: StreamContext, tl: Timeline, offsets: torch.Tensor, table: torch.Tensor,
               rows: str = "net") -> torch.Tensor:
    """True where frame `c*n + offset` of a tensor on timeline `tl` lies past its stream's end.
    `rows`: how the tensor holds the streams: "net" (N*M, C, T, V), "frame" (N, C, S, V, M) or
    "stream" (N, ...offsets)."""
    length_r = (ctx.end_frames * table).sum(-1)  # (N,)
    edge = ctx.end_call * float(tl.n) - length_r
    if rows == "net":
        edge = ctx.per_row(edge, offsets.dim() - 1)
    elif rows == "frame":
        edge = ctx.per_stream(edge, offsets.dim() - 1)
    return (edge + offsets) >= 0


class _Temporal(_Stateful):
    """Common part of StreamConv / StreamMaxPool: buffer, chunk, mask of indices outside the
    stream (negative ones, and those past its end once it ended).

    Convs mask only the incoming chunk (their zero initial state already is their padding, and
    what enters the state was masked on arrival); max pools, whose padding is -inf, mask the
    whole window. A mask is `count >= threshold` per frame, and not past the end."""

    pad_value = 0.0
    mask_window = False

    def _setup(self, tl: Timeline, k: int, s: int, p: int, d: int, channels: int, ctx: StreamContext,
               width: int | None = None) -> Timeline:
        """`width`: the tensor's last axis (the joints, unless a user's module changed it)."""
        out, self.buffer = conv_timeline(tl, k, s, p, d)
        self.n_in, self.lag_in = tl.n, tl.lag
        if self.buffer > 0:
            self.bind(ctx, ctx.new_slot((channels, self.buffer, width or ctx.joints), "nm"))
        else:
            self.__dict__["_ctx"] = ctx
            self.slot = -1
        # index of frame i of what is masked, at call c: c * n_in + first + i; kept once >= 0
        if self.mask_window:
            first, size = -tl.lag - self.buffer, self.buffer + tl.n
        else:
            first, size = -tl.lag, tl.n
        thr = [max(0, math.ceil(-(first + i) / tl.n)) for i in range(size)]
        self.masked = max(thr) > 0
        self.register_buffer("threshold", torch.tensor(thr, dtype=torch.float32).reshape(1, 1, -1, 1),
                             persistent=False)
        self.in_timeline = tl
        self.register_buffer("offsets", torch.arange(first, first + size, dtype=torch.float32).reshape(1, 1, -1, 1),
                             persistent=False)
        self.register_buffer("end_table", end_length_table(tl, ctx.stride), persistent=False)
        ctx.settle = max(ctx.settle, max(thr))
        return out

    def _mask(self, h: torch.Tensor) -> torch.Tensor:
        ctx = self.ctx
        keep = ~beyond_end(ctx, self.in_timeline, self.offsets, self.end_table)
        if self.masked:
            keep = keep & (ctx.per_row(ctx.count) >= self.threshold)
        return torch.where(keep, h, torch.full_like(h, self.pad_value))

    def _window(self, x: torch.Tensor) -> torch.Tensor:
        if not self.mask_window:
            x = self._mask(x)
        if self.buffer > 0:
            h = torch.cat([self._state(), x], 2)
            self._set(h[:, :, h.shape[2] - self.buffer:])
        elif self.buffer < 0:
            h = x[:, :, -self.buffer:]
        else:
            h = x
        if self.mask_window:
            h = self._mask(h)
        return h


class StreamConv(_Temporal):
    """A (k x 1) temporal Conv2d run on [state, new frames] with no temporal padding."""

    def __init__(self, conv: nn.Conv2d, tl: Timeline, ctx: StreamContext, width: int | None = None):
        super().__init__()
        if conv.padding_mode != "zeros" or isinstance(conv.padding, str):
            raise ValueError(f"temporal conv with padding {conv.padding!r}/{conv.padding_mode!r} is not supported")
        self.conv = conv
        k, s, p, d = conv.kernel_size[0], conv.stride[0], conv.padding[0], conv.dilation[0]
        self.timeline = self._setup(tl, k, s, p, d, conv.in_channels, ctx, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = self.conv
        return F.conv2d(self._window(x), c.weight, c.bias, (c.stride[0], c.stride[1]), (0, c.padding[1]),
                        c.dilation, c.groups)


class StreamUnfold(_Temporal):
    """MS-G3D's temporal windows (models/msg3d.py `UnfoldTemporalWindows`: zero pad, then the
    `size` frames of each window side by side along V) on [state, new frames], no padding."""

    def __init__(self, unfold: nn.Module, tl: Timeline, ctx: StreamContext, channels: int):
        super().__init__()
        self.size, self.stride, self.dilation = unfold.size, unfold.stride, unfold.dilation
        self.timeline = self._setup(tl, self.size, self.stride, unfold.padding, self.dilation, channels, ctx)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self._window(x)
        n, c, _, v = h.shape
        span = (self.size - 1) * self.dilation
        parts = [h[:, :, w * self.dilation: (w * self.dilation - span) or None: self.stride] for w in range(self.size)]
        return torch.stack(parts, 3).reshape(n, c, -1, self.size * v)


class StreamMaxPool(_Temporal):
    """A (k x 1) temporal MaxPool2d; inputs at negative indices count as -inf (its padding)."""

    pad_value = float("-inf")
    mask_window = True

    def __init__(self, pool: nn.MaxPool2d, tl: Timeline, ctx: StreamContext, channels: int, width: int | None = None):
        super().__init__()
        ks = pair(pool.kernel_size)
        st = pair(pool.stride if pool.stride is not None else pool.kernel_size)
        pd, dl = pair(pool.padding), pair(pool.dilation)
        if pool.ceil_mode or pool.return_indices:
            raise ValueError("MaxPool2d with ceil_mode/return_indices is not supported")
        self.kernel, self.stride, self.spatial_pad, self.dilation = ks, st, pd[1], dl
        self.timeline = self._setup(tl, ks[0], st[0], pd[0], dl[0], channels, ctx, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.max_pool2d(self._window(x), self.kernel, self.stride, (0, self.spatial_pad), self.dilation)
        # a window wholly outside the stream (an output frame before frame 0 or past the end: it
        # exists in no network, and later layers mask it) is -inf: 0 keeps every tensor finite
        # for INT8 calibration and -inf * 0 from becoming NaN in the next 1x1 conv
        return torch.where(out > float("-inf"), out, torch.zeros_like(out))


class StreamTrailingMean(_Stateful):
    """`TrailingMean` (models/ctrgcn.py) in a stream: per incoming frame, the mean of it and the
    window - 1 frames before it. State: those frames. Frames at negative indices are zeros
    and not counted (the windowed form starts at frame 0); past the end nothing is needed (later
    layers mask those frames)."""

    def __init__(self, window: int, tl: Timeline, channels: int, ctx: StreamContext):
        super().__init__()
        self.window, self.n, self.lag = int(window), tl.n, tl.lag
        self.keep = self.window - 1
        if self.keep > 0:
            self.bind(ctx, ctx.new_slot((channels, self.keep, ctx.joints), "nm"))
        else:
            self.__dict__["_ctx"] = ctx
        # frame i of a call c has index c*n - lag + i; it counts min(index + 1, window) frames
        first = [float(-tl.lag + i) for i in range(tl.n)]
        self.register_buffer("first_index", torch.tensor(first).reshape(1, 1, -1, 1), persistent=False)
        self.register_buffer("threshold", torch.tensor(
            [float(max(0, math.ceil(-(f) / tl.n))) for f in first]).reshape(1, 1, -1, 1), persistent=False)
        # calls until every frame counts a full window (the counter must not saturate before)
        ctx.settle = max(ctx.settle, max(0, math.ceil((self.window - 1 + tl.lag) / tl.n)))
        self.timeline = tl

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        ctx = self.ctx
        z = torch.where(ctx.per_row(ctx.count) >= self.threshold, z, torch.zeros_like(z))  # negative indices: no frames
        if self.keep > 0:
            h = torch.cat([self._state(), z], 2)
            self._set(h[:, :, h.shape[2] - self.keep:])
            sums = F.avg_pool2d(h, (self.window, 1), stride=1) * float(self.window)
        else:
            sums = z
        count = torch.clamp(ctx.per_row(ctx.count) * float(self.n) + self.first_index + 1.0, min=1.0,
                            max=float(self.window))
        return sums / count


class Delay(_Stateful):
    """Output = input `frames` calls' worth of frames ago (aligns a branch with a later one)."""

    def __init__(self, frames: int, channels: int, ctx: StreamContext, width: int | None = None):
        super().__init__()
        if frames < 1:
            raise ValueError(f"a delay of {frames} frames")
        self.frames = int(frames)
        self.bind(ctx, ctx.new_slot((channels, self.frames, width or ctx.joints), "nm"))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.cat([self._state(), x], 2)
        self._set(h[:, :, x.shape[2]:])
        return h[:, :, : x.shape[2]]


def pair(v) -> tuple[int, int]:
    """An int-or-pair module argument (kernel_size, stride, ...) as a pair of ints."""
    return (int(v[0]), int(v[1])) if isinstance(v, (tuple, list)) else (int(v), int(v))
