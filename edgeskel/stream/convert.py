"""Module surgery: a trained (possibly factorized) network becomes its streaming form.

The network keeps its own forward code; only the modules that look along T are swapped:
a temporal Conv2d/MaxPool2d becomes `StreamConv`/`StreamMaxPool` (state = its last input
frames), and wherever branches meet (a block's residual, the branches of a multi-scale TCN)
the earlier branches get a `Delay` so every branch sees the same frames. Per-frame modules
(1x1 convs, BN, activations, the PYSKL graph convolution) stay as they are. Factorized
temporal convs (Tucker-2 1x1 -> k x 1 -> 1x1, SVD k x 1 -> 1x1, low-rank strided 1x1) are
Sequentials of Conv2d, so the same rules cover them.

Rules are per module class; a module the rules do not know is refused (`NotStreamable`)
rather than guessed, because an unknown forward may mix frames (a mean over T, attention).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn as nn

from edgeskel.errors import EdgeskelError
from edgeskel.models.temporal import remove_strides, temporal_stride
from edgeskel.stream.layers import (
    Delay,
    StreamContext,
    StreamConv,
    StreamMaxPool,
    StreamTrailingMean,
    StreamUnfold,
    Timeline,
)


class NotStreamable(EdgeskelError):
    """The model (or one of its modules) has no streaming form; the message says why."""


STRIDE_MODES = ("keep", "remove")
__all__ = ["STRIDE_MODES", "Converter", "NotStreamable", "probe_channels", "remove_strides", "temporal_stride"]


class Converter:
    """Rewrites modules in place (call on a deep copy) and tracks timelines.

    `channels`: output channel count per module id, from one shape probe of the original."""

    def __init__(self, ctx: StreamContext, channels: dict[int, int], in_channels: dict[int, int]):
        self.ctx = ctx
        self.channels = channels
        self.in_channels = in_channels
        self.rules: list[tuple[tuple[type, ...], Callable[[nn.Module, Timeline], tuple[nn.Module, Timeline]]]] = []
        self._builtin_rules()

    # -- dispatch -------------------------------------------------------------------------
    def convert(self, module: nn.Module, tl: Timeline) -> tuple[nn.Module, Timeline]:
        for types, rule in self.rules:
            if type(module) in types:
                return rule(module, tl)
        if isinstance(module, nn.Sequential):  # Tucker2Conv, LowRankConvK, ... (Sequential subclasses)
            return self._chain(module, tl)
        raise NotStreamable(f"{type(module).__module__}.{type(module).__name__}: edgeskel does not know whether "
                            "this module mixes frames (no streaming rule for it)")

    def add_rule(self, types: tuple[type, ...], rule) -> None:
        self.rules.insert(0, (types, rule))

    # -- generic rules ----------------------------------------------------------------------
    def _builtin_rules(self) -> None:
        from edgeskel.models import ctrgcn, hyperformer, msg3d, shiftgcn
        from edgeskel.models.blocks import MultiScaleTemporalConv, UnitTCN
        from edgeskel.models.pyskl_units import MSTCN, MSTCNpp, TemporalConvNoBN, UnitGCN
        from edgeskel.models.stgcn import STGCNBlock

        pointwise = (nn.BatchNorm2d, nn.ReLU, nn.Identity, nn.Dropout, nn.Tanh, nn.Sigmoid, nn.GELU, nn.Hardswish,
                     nn.SiLU, nn.LeakyReLU)
        self.rules = [
            (pointwise, lambda m, tl: (m, tl)),
            ((nn.Conv2d,), self._conv),
            ((nn.MaxPool2d,), self._maxpool),
            ((nn.Sequential, UnitTCN, TemporalConvNoBN), self._chain),
            ((UnitGCN,), self._per_frame),
            ((STGCNBlock,), self._block),
            ((ctrgcn.TCNGCNUnit,), lambda m, tl: self._block(m, tl, "gcn1", "tcn1")),
            ((ctrgcn.UnitGCN,), self._per_frame_stateful),
            ((ctrgcn.TrailingMean,), self._trailing_mean),
            ((hyperformer.TCNViTUnit,), lambda m, tl: self._block(m, tl, "vit1", "tcn1")),
            ((hyperformer.UnitViT,), self._per_frame),  # attention over the joints of one frame
            ((MSTCNpp,), lambda m, tl: self._branches(m, tl, ("transform", "bn"))),
            ((MSTCN,), lambda m, tl: self._branches(m, tl, ("act",), residual="residual")),
            ((MultiScaleTemporalConv,), lambda m, tl: self._branches(m, tl, ())),
            ((shiftgcn.Shift,), self._shift),
            ((shiftgcn.ShiftTCN,), lambda m, tl: self._in_order(m, tl, ("shift_in", "temporal_linear", "shift_out"))),
            ((shiftgcn.ShiftGCN,), self._per_frame),  # joint shifts and a Linear within each frame
            ((shiftgcn.TCNGCNUnit,), lambda m, tl: self._block(m, tl, "gcn1", "tcn1")),
            ((msg3d.UnfoldTemporalWindows,), self._unfold),
            ((msg3d.STMSGCN, msg3d.MSGCN), self._per_frame),  # graph convs within a frame / a window's frames
            ((msg3d.MSG3DBlock,), self._g3d_block),
            ((msg3d.MWMSG3DBlock,), self._summed),
        ]

    def _conv(self, m: nn.Conv2d, tl: Timeline) -> tuple[nn.Module, Timeline]:
        if m.kernel_size[0] == 1 and m.stride[0] == 1 and m.padding[0] == 0:
            return m, tl
        if isinstance(m.padding, str) or m.padding_mode != "zeros":
            raise NotStreamable(f"temporal Conv2d with padding={m.padding!r}, padding_mode={m.padding_mode!r}: "
                                "only zero padding has a streaming form")
        new = StreamConv(m, tl, self.ctx)
        return new, new.timeline

    def _shift(self, m: nn.Module, tl: Timeline) -> tuple[nn.Module, Timeline]:
        """Shift-GCN's learned shift = a depthwise (2R+1) x 1 conv along T (weights from the
        trained offsets) then a per-frame depthwise conv along V: the temporal one streams."""
        from edgeskel.models.shiftgcn import hat_weights

        if id(m) not in self.in_channels:
            raise NotStreamable("Shift: its channels are unknown (never called on a probe)")
        c, r, rv = self.in_channels[id(m)], m.radius, m.radius_v
        y = m.ypos + 0.5 if m.stride != 1 else m.ypos  # as Shift.forward (the official kernel)
        temporal = nn.Conv2d(c, c, (2 * r + 1, 1), stride=(m.stride, 1), padding=(r, 0), groups=c, bias=False)
        joints = nn.Conv2d(c, c, (1, 2 * rv + 1), padding=(0, rv), groups=c, bias=False)
        with torch.no_grad():
            temporal.weight.copy_(hat_weights(y, r).reshape(c, 1, 2 * r + 1, 1))
            joints.weight.copy_(hat_weights(m.xpos, rv).reshape(c, 1, 1, 2 * rv + 1))
        new, tl = self._conv(temporal, tl)
        return nn.Sequential(new, joints), tl

    def _unfold(self, m: nn.Module, tl: Timeline) -> tuple[nn.Module, Timeline]:
        if id(m) not in self.in_channels:
            raise NotStreamable("UnfoldTemporalWindows: its channels are unknown (never called on a probe)")
        new = StreamUnfold(m, tl, self.ctx, self.in_channels[id(m)])
        return new, new.timeline

    def _g3d_block(self, m: nn.Module, tl: Timeline) -> tuple[nn.Module, Timeline]:
        """MS-G3D's window block: unfold + graph conv (converted), then a Conv3d over the window
        axis and BN, both per frame."""
        m.gcn3d, tl = self.convert(m.gcn3d, tl)
        ks, st = m.out_conv.kernel_size, m.out_conv.stride
        if ks[0] != 1 or st[0] != 1:
            raise NotStreamable(f"MSG3DBlock.out_conv {m.out_conv} looks along T; no streaming rule for it")
        return m, tl

    def _summed(self, m: nn.Module, tl: Timeline) -> tuple[nn.Module, Timeline]:
        """`sum(block(x) for block in m.gcn3d)` (MS-G3D's window sizes): branches delayed to one lag."""
        parts = []
        for b in m.gcn3d:
            ch = self.out_channels(b)
            new, btl = self.convert(b, tl)
            parts.append((new, btl, ch))
        mods, out = self.align(parts, type(m).__name__)
        for i, mod in enumerate(mods):
            m.gcn3d[i] = mod
        return m, out

    def _in_order(self, m: nn.Module, tl: Timeline, names: tuple[str, ...]) -> tuple[nn.Module, Timeline]:
        """Children that look along T, in the order the module's forward applies them (the
        others are per-frame: BN, ReLU)."""
        for name in names:
            new, tl = self.convert(getattr(m, name), tl)
            setattr(m, name, new)
        return m, tl

    def _maxpool(self, m: nn.MaxPool2d, tl: Timeline) -> tuple[nn.Module, Timeline]:
        ks = m.kernel_size if isinstance(m.kernel_size, (tuple, list)) else (m.kernel_size, m.kernel_size)
        pd = m.padding if isinstance(m.padding, (tuple, list)) else (m.padding, m.padding)
        if ks[0] == 1 and temporal_stride(m) == 1 and pd[0] == 0:
            return m, tl
        new = StreamMaxPool(m, tl, self.ctx, self.in_channels[id(m)])
        return new, new.timeline

    def _chain(self, m: nn.Module, tl: Timeline) -> tuple[nn.Module, Timeline]:
        """Children applied one after another in registration order (nn.Sequential, unit_tcn)."""
        for name, child in list(m.named_children()):
            new, tl = self.convert(child, tl)
            if new is not child:
                setattr(m, name, new)
        return m, tl

    def _per_frame(self, m: nn.Module, tl: Timeline) -> tuple[nn.Module, Timeline]:
        """A module whose forward works frame by frame (checked: it holds no temporal layer)."""
        for sub in m.modules():
            if isinstance(sub, (nn.Conv2d, nn.MaxPool2d)):
                ks = sub.kernel_size if isinstance(sub.kernel_size, (tuple, list)) else (sub.kernel_size,) * 2
                if ks[0] != 1 or temporal_stride(sub) != 1:
                    raise NotStreamable(f"{type(m).__name__} holds a temporal layer ({sub}); no streaming rule for it")
        return m, tl

    def _per_frame_stateful(self, m: nn.Module, tl: Timeline) -> tuple[nn.Module, Timeline]:
        """Per-frame except for causal means (CTR-GCN's causal topology): each TrailingMean gets
        its stream form; any other temporal layer is refused."""
        from edgeskel.models.ctrgcn import TrailingMean

        for name, sub in list(m.named_modules()):
            if isinstance(sub, TrailingMean):
                parent = m.get_submodule(name.rpartition(".")[0]) if "." in name else m
                setattr(parent, name.rpartition(".")[2], self._trailing_mean(sub, tl)[0])
        if any(isinstance(s, TrailingMean) for s in m.modules()):
            raise NotStreamable(f"{type(m).__name__}: a trailing mean was left unconverted")
        return self._per_frame(m, tl)

    def _trailing_mean(self, m: nn.Module, tl: Timeline) -> tuple[nn.Module, Timeline]:
        if id(m) not in self.in_channels:
            raise NotStreamable("TrailingMean: its channels are unknown (never called on a probe)")
        return StreamTrailingMean(m.window, tl, self.in_channels[id(m)], self.ctx), tl

    def _delay(self, branch: nn.Module, frames: int, channels: int) -> nn.Module:
        if frames < 0:
            raise NotStreamable(f"branch {type(branch).__name__} would need a negative delay ({frames})")
        if frames == 0:
            return branch
        return nn.Sequential(branch, Delay(frames, channels, self.ctx))

    def align(self, parts: list[tuple[nn.Module, Timeline, int]], what: str) -> tuple[list[nn.Module], Timeline]:
        """Delay every branch to the largest lag; all must deliver the same frames per call."""
        if len({tl.n for _, tl, _ in parts}) != 1:
            raise NotStreamable(f"{what}: branches deliver different frame rates {[tl.n for _, tl, _ in parts]}")
        lag = max(tl.lag for _, tl, _ in parts)
        out = [self._delay(mod, lag - tl.lag, ch) for mod, tl, ch in parts]
        first = parts[0][1]
        if len({tuple(tl.length_for(f) for f in range(64)) for _, tl, _ in parts}) != 1:
            raise NotStreamable(f"{what}: branches give different lengths for the same input")
        return out, Timeline(first.n, lag, first.length, first.ops)

    def out_channels(self, m: nn.Module) -> int:
        if id(m) not in self.channels:
            raise NotStreamable(f"{type(m).__name__}: its output channels are unknown (never called on a probe)")
        return self.channels[id(m)]

    # -- model-specific structure -------------------------------------------------------------
    def _branches(self, m: nn.Module, tl: Timeline, tail: tuple[str, ...], residual: str | None = None):
        """`torch.cat([b(x) for b in m.branches], 1)` (+ `m.<residual>(x)`), then per-frame `tail`."""
        parts = []
        for b in m.branches:
            ch = self.out_channels(b)
            new, btl = self.convert(b, tl)
            parts.append((new, btl, ch))
        res = getattr(m, residual) if residual else None
        if res is not None:
            ch = self.out_channels(res)
            new, rtl = self.convert(res, tl)
            parts.append((new, rtl, ch))
        mods, out = self.align(parts, type(m).__name__)
        for i in range(len(m.branches)):
            m.branches[i] = mods[i]
        if res is not None:
            setattr(m, residual, mods[-1])
        for name in tail:
            sub = getattr(m, name)
            new, out2 = self.convert(sub, out)
            if out2 != out:
                raise NotStreamable(f"{type(m).__name__}.{name} is not per-frame")
            setattr(m, name, new)
        return m, out

    def _block(self, m: nn.Module, tl: Timeline, gcn: str = "gcn", tcn: str = "tcn"):
        """STGCNBlock / CTR-GCN's TCN_GCN_unit: relu(tcn(gcn(x)) + residual(x))."""
        new_gcn, gtl = self.convert(getattr(m, gcn), tl)
        setattr(m, gcn, new_gcn)
        new_tcn, ttl = self.convert(getattr(m, tcn), gtl)
        setattr(m, tcn, new_tcn)
        if m.residual is not None:
            ch = self.out_channels(m.residual)
            res, rtl = self.convert(m.residual, tl)
            (new_tcn, m.residual), ttl = self.align([(new_tcn, ttl, self._out_channels_after(m)), (res, rtl, ch)],
                                                     type(m).__name__)
            setattr(m, tcn, new_tcn)
        return m, ttl

    def _out_channels_after(self, block: nn.Module) -> int:
        return self.channels[id(block)]


def probe_channels(model: nn.Module, x) -> tuple[dict[int, int], dict[int, int]]:
    """Output and input channel counts (dim 1) of every module, from one forward of `x`."""
    import torch

    out: dict[int, int] = {}
    inp: dict[int, int] = {}
    hooks = []

    def hook(mod, args, res):
        if isinstance(res, torch.Tensor) and res.dim() >= 2:
            out[id(mod)] = int(res.shape[1])
        if args and isinstance(args[0], torch.Tensor) and args[0].dim() >= 2:
            inp[id(mod)] = int(args[0].shape[1])

    for m in model.modules():
        hooks.append(m.register_forward_hook(hook))
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in hooks:
            h.remove()
    return out, inp
