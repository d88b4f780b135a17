"""The windowed preprocessing (`edgeskel.data.preprocess`) made causal, inside the step graph.

A pose source gives raw frames: camera-space joints, a missing joint or person as zeros. The
windowed pipeline drops all-zero frames, keeps the most active persons, centres on the origin
joint of person 0 at its first valid frame, resamples to `num_frames` and derives the stream.
In a stream:

- all-zero frames: the step model keeps its state and repeats its last decision (step.py);
- persons: kept in the order the source gives them (a tracker's order); choosing the "most
  active" persons needs the whole clip;
- centring: the origin is taken at the first frame where person 0 is present and kept in the
  state; a person absent in a frame stays zero (as in `center`);
- no resampling to the clip's length: frames arrive at the source's rate (training for streams
  is part 3); `upsample` r > 1 (a fixed rate, causal) turns each source frame into r frames,
  linear from the person's previous present frame (edgeskel.data.preprocess.upsample_frames);
- bone: per frame; motion (x[t+1] - x[t]): needs the next frame, so it is one frame late
  (lag 1) and keeps the previous frame in the state.
"""

from __future__ import annotations

import torch

from edgeskel.checkpoint import Preprocess
from edgeskel.layouts import SkeletonLayout
from edgeskel.stream.layers import StreamContext, Timeline, _Stateful, beyond_end


class CausalPreprocess(_Stateful):
    """(N, C, S, V, M) raw frames -> (N, C, S*r, V, M) model input, and its timeline (`tl`: the
    network's input, S*r frames per call; r = cfg.upsample)."""

    def __init__(self, layout: SkeletonLayout, cfg: Preprocess, tl: Timeline, ctx: StreamContext):
        super().__init__()
        self.__dict__["_ctx"] = ctx
        c, v, m = layout.channels, layout.num_joints, cfg.num_person
        self.up = int(cfg.upsample)
        if tl.n % self.up:
            raise ValueError(f"upsample {self.up} does not divide the {tl.n} network frames per call")
        self.stride = tl.n // self.up  # raw frames per call
        if self.up > 1:
            self.prev_slot_up = ctx.new_slot((c, 1, v, m), "n")  # each person's previous present frame
            self.have_slot_up = ctx.new_slot((1, 1, 1, m), "n")
            self.register_buffer("up_steps", (torch.arange(1, self.up + 1, dtype=torch.float32) / self.up)
                                 .reshape(1, 1, -1, 1, 1), persistent=False)
        self.center = bool(cfg.center)
        self.origin_joint = int(layout.origin_joint)
        if self.center:
            self.origin_slot = ctx.new_slot((c, 1, 1, 1), "n")
            self.have_slot = ctx.new_slot((1, 1, 1, 1), "n")
        stream = cfg.streams
        self.bone = stream in ("bone", "bone_motion")
        self.motion = stream in ("motion", "bone_motion")
        bmat = torch.eye(v)
        if self.bone:
            bmat = torch.zeros(v, v)
            for child, parent in layout.bones:
                bmat[child, child] = 1.0
                bmat[parent, child] -= 1.0
        self.register_buffer("bone_matrix", bmat, persistent=False)
        if self.motion:
            self.prev_slot = ctx.new_slot((c, 1, v, m), "n")
        # frames past `valid` (the end call's padding) are no frames; motion at the last frame is 0
        self.register_buffer("raw_index", torch.arange(self.stride, dtype=torch.float32).reshape(1, 1, -1, 1, 1),
                             persistent=False)
        self.register_buffer("frame_index", torch.arange(tl.n, dtype=torch.float32).reshape(1, 1, -1, 1, 1),
                             persistent=False)
        self.register_buffer("end_table", torch.arange(tl.n + 1, dtype=torch.float32), persistent=False)
        self.input_timeline = tl
        self.timeline = Timeline(tl.n, tl.lag + (1 if self.motion else 0), tl.length, tl.ops)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ctx = self.ctx
        x = torch.where(self.raw_index < ctx.per_stream(ctx.valid, 4), x, torch.zeros_like(x))
        present = (x != 0).any(dim=3, keepdim=True).any(dim=1, keepdim=True)  # (N, 1, S, 1, M)
        if self.center:
            origin, have = ctx.inputs[self.origin_slot], ctx.inputs[self.have_slot]
            frames = []
            for s in range(self.stride):  # S is small (frames per call); unrolled
                p0 = present[:, :, s:s + 1, :, 0:1]
                cand = x[:, :, s:s + 1, self.origin_joint:self.origin_joint + 1, 0:1]
                origin = torch.where(have > 0, origin, torch.where(p0, cand, origin))
                have = torch.maximum(have, p0.to(have.dtype))
                xs = x[:, :, s:s + 1]
                frames.append(torch.where(present[:, :, s:s + 1], xs - origin, torch.zeros_like(xs)))
            x = frames[0] if len(frames) == 1 else torch.cat(frames, 2)
            ctx.outputs[self.origin_slot], ctx.outputs[self.have_slot] = origin, have
        if self.up > 1:
            x = self._upsample(x, present)
        if self.bone:
            x = torch.matmul(x.transpose(3, 4), self.bone_matrix).transpose(3, 4)
        if self.motion:
            h = torch.cat([ctx.inputs[self.prev_slot], x], 2)
            ctx.outputs[self.prev_slot] = h[:, :, h.shape[2] - 1:]
            x = h[:, :, 1:] - h[:, :, :-1]
            # frame t (index c*S - 1 + i) is x[t+1] - x[t]; zero from the last frame E - 1 on
            last = beyond_end(ctx, self.input_timeline, self.frame_index.reshape(1, 1, -1, 1, 1), self.end_table, "frame")
            x = torch.where(last, torch.zeros_like(x), x)
        return x

    def _upsample(self, x: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
        """r frames per raw frame, linear from the person's previous present frame (kept in the state)."""
        ctx = self.ctx
        prev, have = ctx.inputs[self.prev_slot_up], ctx.inputs[self.have_slot_up]
        out = []
        for s in range(self.stride):  # unrolled: S is small
            cur, pres = x[:, :, s:s + 1], present[:, :, s:s + 1]  # (N, C, 1, V, M), (N, 1, 1, 1, M)
            start = torch.where(have > 0, prev, cur)
            frames = start + self.up_steps * (cur - start)
            out.append(torch.where(pres, frames, torch.zeros_like(frames)))
            prev = torch.where(pres, cur, prev)
            have = torch.maximum(have, pres.to(have.dtype))
        ctx.outputs[self.prev_slot_up], ctx.outputs[self.have_slot_up] = prev, have
        return out[0] if len(out) == 1 else torch.cat(out, 2)


def empty_chunk(x: torch.Tensor) -> torch.Tensor:
    """(N,) bool: no joint of any person in any frame of stream n's chunk is non-zero."""
    return ~(x != 0).flatten(1).any(1)

