"""What a step model computes, written down once, and the reference that tests hold it to.

Definitions (docs/STREAMING.md repeats them for users):

- The *network* is the trained model, unchanged (`stride_mode="keep"`), or with every
  temporal stride set to 1 (`"remove"`, CoST-GCN's second option; needs fine-tuning).
- `S` (`stride`): frames per call. keep: the product of the network's temporal strides (an
  output every S frames, CoST-GCN's first option); remove: 1.
- The *history* after k calls is the k*S raw frames fed so far, minus every call whose S
  frames were all zero (such a call changes nothing and repeats the last decision; with S=1
  this is the windowed pipeline's "drop all-zero frames").
- Causal preprocessing of the history: centring on person 0's origin joint at its first
  frame with person 0 present (edgeskel.data.preprocess.center), then the stream (joint,
  bone, motion). No person reordering, no resampling to a length. With
  `preprocess.upsample` r > 1 the centred history is upsampled r x first
  (edgeskel.data.preprocess.upsample_frames: causal, linear from each person's previous
  present frame); the network then sees S*r frames per call, and its output frames, `lag`
  and W count calls as below. `stride`, `window`, `delay` and `valid_from` stay in source
  frames.
- Run the network over the whole preprocessed history exactly as in training: its own
  temporal padding, i.e. zeros (-inf for max pools) before frame 0 at every layer. Let
  f_tau be its final feature map at output frame tau (before the average pool) and
  l_tau = head(mean over joints and persons of f_tau) the logits of that single frame.
- f_tau is *complete* after call c when no frame it depends on (through every layer's
  look-ahead, i.e. its right padding) is later than the history: tau <= c - lag, where
  `lag` is fixed by the architecture (plan.lag; plan.delay = lag*S frames).
- The decision after call c is the mean of l_tau over the last min(W, c - lag + 1) complete
  output frames (zeros while there is none), W = `window_outputs`: the number of output
  frames the windowed model averages for T = preprocess.num_frames input frames. Because the
  head is affine, that equals head(mean of the features), i.e. the windowed model's global
  average pool as a running mean over the last W outputs. A user's module whose head is not
  affine (an MLP after the pool; `family.pooled`) is defined by that second form: the head
  run on the mean of the last W frames of its pool input.
- `valid_from` = (W + lag) * S frames: from then on every decision averages a full window.
- *Ending a stream*: a call with `valid` = r < S real frames (its first r frames; r may be 0) is
  the end call; every later call is a flush call (valid 0, frames ignored). The history is then
  final: the kept whole calls plus those r frames (kept even if all zero), E frames in all.
  The network runs over it with its own padding at both ends (as the windowed model pads a
  clip), giving T_out(E) output frames; output frames from T_out(E) on do not exist and never
  enter the mean, and the count of complete ones stops there. After `flush_calls` calls
  (counted from the end call) the decision is the mean over the last min(W, T_out(E)) output
  frames: the network's decision for the stream's last `window` frames, up to its last frame.

So a decision is the windowed network's decision for a clip of `window` frames ending
`delay` frames ago, except that its temporal receptive field sees the real frames before the
clip instead of zero padding, and frames arrive at the source's rate without resampling.
The equality the tests check is with the full-history computation above (`reference_logits`),
to float error, after every call, for PyTorch, ONNX Runtime and OpenVINO.
"""

from __future__ import annotations

import numpy as np
import torch

from edgeskel.data.preprocess import center, to_stream, upsample_frames


def reference_logits(step, frames: np.ndarray, end_calls: int = 0) -> np.ndarray:
    """The decision the step model must give after being fed raw `frames` (C, L, V, M),
    computed from scratch by the definitions above: (K,). `end_calls` = 0: a running stream
    (L a multiple of plan.stride); >= 1: the stream then ended, and this many calls were made
    from the end call on (the end call with the L mod stride leftover frames, then flush calls)."""
    plan, spec = step.plan, step.spec
    s = plan.stride
    x = np.asarray(frames, dtype=np.float32)
    whole = x.shape[1] // s
    if not end_calls and x.shape[1] % s:
        raise ValueError(f"history of {x.shape[1]} frames is not a whole number of calls (stride {s})")
    kept = [ch for ch in (x[:, i * s:(i + 1) * s] for i in range(whole)) if np.any(ch != 0)]
    calls = len(kept)
    if end_calls:
        kept.append(x[:, whole * s:])  # the leftover frames, kept even if all zero
        calls += end_calls
    frames_in = sum(ch.shape[1] for ch in kept)
    if frames_in == 0:
        return np.zeros(plan.num_classes, np.float32)
    h = np.concatenate(kept, axis=1)
    if spec.preprocess.center:
        h = center(h, spec.layout)
    h = upsample_frames(h, plan.upsample)
    h = to_stream(h, spec.layout, spec.preprocess.streams)
    net, fam = step.reference_model, step.family
    with torch.no_grad():
        feats = fam.features(net, torch.from_numpy(np.ascontiguousarray(h))[None])
    last = calls - 1 - plan.lag  # newest complete output frame
    if end_calls:
        last = min(last, feats.shape[2] - 1)  # frames past the end do not exist
    valid = min(last + 1, plan.window_outputs)
    if valid <= 0:
        return np.zeros(plan.num_classes, np.float32)
    with torch.no_grad():
        if fam.pooled(net):  # a head that is not affine runs once, on the mean of the frames
            return fam.head(net, feats[:, :, last - valid + 1: last + 1].mean(2), 1, plan.persons)[0].numpy()
        per_tau = [fam.head(net, feats[:, :, tau], 1, plan.persons)[0] for tau in range(last - valid + 1, last + 1)]
    return torch.stack(per_tau).mean(0).numpy()
