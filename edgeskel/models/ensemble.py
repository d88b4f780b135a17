"""Multi-stream ensembles as one module (issue 31; docs/ENSEMBLES.md).

Every headline skeleton number is an ensemble of the same architecture trained on different
*input views* of one clip: joint, bone (x - x[parent]), joint motion (x[t+1] - x[t]) and bone
motion, fused by a weighted sum of the streams' scores. `Ensemble` holds the stream models as
submodules and computes the views inside the graph, so the deployed model takes the raw joints
(N, C, T, V, M) like every other model, compression sees every layer of every stream, and
export gives one graph (one TensorRT engine).

Word choice: a *view* is the input transform of a stream (`VIEWS`, the names of
`Preprocess.streams`); "stream" alone is the ensemble member (recipe `model.streams`), not
streaming inference (`edgeskel/stream/`).

The transforms are the official ones, on the window the graph receives:
- bone: CTR-GCN `feeders/feeder_ntu.py` (`bone[v1 - 1] = x[v1 - 1] - x[v2 - 1]` for its
  1-based `feeders/bone_pairs.py` pairs; the root pair (21, 21) gives 0) and PYSKL
  `JointToBone` (0-based pairs, (20, 20) the root): one (child, parent) pair per joint, a joint
  without a pair is 0. Our layouts' bones are the same pairs for NTU; `bone_pairs` overrides
  them where a code base used others (PYSKL's COCO bones hang the hips from the nose).
- motion: `x[t + 1] - x[t]`, the last frame 0 (CTR-GCN feeder, PYSKL `ToMotion`); bone motion
  is the motion of the bones (both code bases).
- fusion: `logits` = weighted sum of the raw scores (CTR-GCN `ensemble.py`), `softmax` =
  weighted sum of per-stream softmax probabilities (PYSKL: `tools/test.py` stores the
  recognizer's test output, softmax averaged over clips, and `pyskl/smp.py comb` sums them
  with the weights).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from edgeskel.errors import ConfigError
from edgeskel.layouts import SkeletonLayout
from edgeskel.models.registry import build, register_model

VIEWS = ("joint", "bone", "motion", "bone_motion")
# other spellings of the same views: PYSKL's feats names and the "joint motion"
VIEW_ALIASES = {"j": "joint", "b": "bone", "jm": "motion", "joint_motion": "motion", "bm": "bone_motion",
                "vel": "motion", "bone_vel": "bone_motion"}
FUSIONS = ("logits", "softmax")
# default fusion and weights per code base convention (docs/ENSEMBLES.md "Fusion")
CONVENTIONS = {
    # CTR-GCN ensemble.py: joint/bone 0.6, motion 0.4 when motion streams take part; else r1 + r2 * alpha (1)
    "ctrgcn": {"fusion": "logits", "still": 0.6, "moving": 0.4},
    # PYSKL README / smp.comb: 2:2:1:1 for j, b, jm, bm; 1:1 for two streams of one kind
    "pyskl": {"fusion": "softmax", "still": 2.0, "moving": 1.0},
}
# PYSKL JointToBone (pyskl/datasets/pipelines/pose_related.py) pairs that differ from our layout's
# bones: for COCO the hips hang from the nose (0), not from the shoulders
PYSKL_BONE_PAIRS: dict[str, tuple[tuple[int, int], ...]] = {
    "coco17": ((0, 0), (1, 0), (2, 0), (3, 1), (4, 2), (5, 0), (6, 0), (7, 5), (8, 6), (9, 7), (10, 8),
               (11, 0), (12, 0), (13, 11), (14, 12), (15, 13), (16, 14)),
}
_LABEL = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,39}$")


def canonical_view(view: str, where: str = "input") -> str:
    v = VIEW_ALIASES.get(str(view), str(view))
    if v not in VIEWS:
        raise ConfigError(f"{where}: unknown input view {view!r}; allowed: {', '.join(VIEWS)} "
                          f"(or {', '.join(sorted(VIEW_ALIASES))})")
    return v


def default_weights(views: Sequence[str], convention: str = "pyskl") -> list[float]:
    """The code base's fusion weights for these views: joint/bone streams 'still', motion streams
    'moving' when both kinds take part, else all 1 (two streams j + b: 1:1)."""
    conv = CONVENTIONS[convention]
    moving = [canonical_view(v) in ("motion", "bone_motion") for v in views]
    if all(moving) or not any(moving):
        return [1.0] * len(views)
    return [conv["moving"] if m else conv["still"] for m in moving]


def parent_index(layout: SkeletonLayout, pairs: Sequence[Sequence[int]] | None = None) -> list[int]:
    """parent[v] for the bone view; a joint without a pair (the root) is its own parent, so its bone
    is exactly 0, as CTR-GCN's (21, 21) and PYSKL's (20, 20) pairs. Later pairs win (the official loops)."""
    v = layout.num_joints
    parent = list(range(v))
    for pair in (layout.bones if pairs is None else pairs):
        child, par = int(pair[0]), int(pair[1])
        if not (0 <= child < v and 0 <= par < v):
            raise ConfigError(f"bone pair ({child}, {par}) out of range for {v} joints of layout {layout.name!r}")
        parent[child] = par
    return parent


class Views(nn.Module):
    """(N, C, T, V, M) joints -> the requested views, each computed once (bone motion reuses the bones).
    `score_channel`: channel 2 is a keypoint score (PYSKL 2D data, x, y, score): bones and motion
    carry the mean score of the two joints / frames there instead of a difference (PYSKL
    `JointToBone` and `ToMotion` for 'coco'/'openpose' with C == 3)."""

    def __init__(self, parent: Sequence[int], score_channel: bool = False) -> None:
        super().__init__()
        # not persistent: rebuilt from the layout / spec, the state_dict stays the streams' weights
        self.register_buffer("parent", torch.tensor(list(parent), dtype=torch.long), persistent=False)
        self.score_channel = bool(score_channel)

    def motion(self, x: torch.Tensor) -> torch.Tensor:
        """x[t+1] - x[t] along T, the last frame 0."""
        d = x[:, :, 1:] - x[:, :, :-1]
        if self.score_channel:
            d = torch.cat([d[:, :2], (x[:, 2:3, 1:] + x[:, 2:3, :-1]) / 2], dim=1)
        return F.pad(d, (0, 0, 0, 0, 0, 1))

    def bone(self, x: torch.Tensor) -> torch.Tensor:
        p = x.index_select(3, self.parent)
        if self.score_channel:
            return torch.cat([x[:, :2] - p[:, :2], (x[:, 2:3] + p[:, 2:3]) / 2], dim=1)
        return x - p

    def forward(self, x: torch.Tensor, views: Sequence[str]) -> dict[str, torch.Tensor]:
        out: dict[str, torch.Tensor] = {"joint": x}
        for v in views:
            if v in out:
                continue
            if v in ("bone", "bone_motion") and "bone" not in out:
                out["bone"] = self.bone(x)
            if v == "motion":
                out["motion"] = self.motion(x)
            elif v == "bone_motion":
                out["bone_motion"] = self.motion(out["bone"])
        return out


class Ensemble(nn.Module):
    """N stream models, each on its input view of the same raw joints, fused into one score."""

    def __init__(self, streams: dict[str, nn.Module], views: Sequence[str], weights: Sequence[float],
                 fusion: str, parent: Sequence[int], num_joints: int, in_channels: int, num_person: int,
                 score_channel: bool = False) -> None:
        super().__init__()
        self.streams = nn.ModuleDict(streams)
        self.views = tuple(views)
        self.weights = tuple(float(w) for w in weights)
        self.fusion = fusion
        self.transform = Views(parent, score_channel)
        self.num_joints, self.in_channels, self.num_person = num_joints, in_channels, num_person

    @property
    def names(self) -> list[str]:
        return list(self.streams.keys())

    def stream_scores(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Each stream's own logits, in stream order (per-stream accuracy in reports)."""
        inputs = self.transform(x, self.views)
        return [m(inputs[v]) for m, v in zip(self.streams.values(), self.views, strict=True)]

    def fuse(self, scores: Sequence[torch.Tensor]) -> torch.Tensor:
        if self.fusion == "softmax":
            scores = [s.softmax(dim=-1) for s in scores]
        out = scores[0] * self.weights[0]
        for s, w in zip(scores[1:], self.weights[1:], strict=True):
            out = out + s * w
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fuse(self.stream_scores(x))


def check_streams(streams: Any) -> list[dict[str, Any]]:
    """The `streams` build argument, checked: a non-empty list of {name, model, input, weight,
    kwargs?, compression?, strides_removed?} with unique identifier names."""
    if not isinstance(streams, (list, tuple)) or not streams:
        raise ConfigError("ensemble: 'streams' must be a non-empty list of {name, model, input, weight}")
    out, seen = [], set()
    for i, s in enumerate(streams):
        if not isinstance(s, dict):
            raise ConfigError(f"ensemble stream {i}: expected a mapping, got {type(s).__name__}")
        unknown = set(s) - {"name", "model", "input", "weight", "kwargs", "compression", "strides_removed"}
        if unknown:
            raise ConfigError(f"ensemble stream {i}: unknown fields {sorted(unknown)}")
        name = str(s.get("name", ""))
        if not _LABEL.match(name):
            raise ConfigError(f"ensemble stream {i}: name {name!r} must be a letter then letters, digits or _ "
                              "(at most 40)")
        if name in seen:
            raise ConfigError(f"ensemble: two streams are named {name!r}")
        seen.add(name)
        model = s.get("model")
        if not isinstance(model, str) or model == "ensemble":
            raise ConfigError(f"ensemble stream {name!r}: 'model' must name a registered model (not an ensemble)")
        weight = s.get("weight")
        if not isinstance(weight, (int, float)) or isinstance(weight, bool) or not weight > 0:
            raise ConfigError(f"ensemble stream {name!r}: weight must be a number > 0, got {weight!r}")
        out.append({**s, "input": canonical_view(s.get("input", ""), f"ensemble stream {name!r}"),
                    "weight": float(weight), "kwargs": dict(s.get("kwargs") or {})})
    return out


@register_model("ensemble", family="ensemble",
                description="several stream models on joint/bone/motion views of one input, fused (issue 31)")
def build_ensemble(num_classes: int, layout: SkeletonLayout, num_person: int = 2, *,
                   streams: Sequence[dict[str, Any]] = (), fusion: str = "softmax",
                   bone_pairs: Sequence[Sequence[int]] | None = None, score_channel: bool = False,
                   **unknown: Any) -> nn.Module:
    """Build every stream with the shared classes, layout and persons, then its own kwargs
    (and its compression plan / stride removal where it carries one)."""
    if unknown:
        raise ConfigError(f"ensemble: unknown model arguments {sorted(unknown)}")
    if score_channel and layout.channels != 3:
        raise ConfigError(f"ensemble: score_channel needs 3 channels (x, y, score), layout {layout.name!r} has "
                          f"{layout.channels}")
    if fusion not in FUSIONS:
        raise ConfigError(f"ensemble: fusion {fusion!r}; allowed: {', '.join(FUSIONS)}")
    checked = check_streams(list(streams))
    nets: dict[str, nn.Module] = {}
    for s in checked:
        kw = dict(s["kwargs"])
        if int(kw.pop("num_person", num_person)) != num_person:
            raise ConfigError(f"ensemble stream {s['name']!r}: built for {s['kwargs']['num_person']} persons, "
                              f"the ensemble for {num_person}")
        net = build(s["model"], num_classes, layout, num_person=num_person, **kw)
        if s.get("compression"):
            from edgeskel.models.lowrank import apply_plan

            apply_plan(net, s["compression"])
        if s.get("strides_removed"):
            from edgeskel.models.temporal import remove_strides

            net = remove_strides(net)
        nets[s["name"]] = net
    return Ensemble(nets, [s["input"] for s in checked], [s["weight"] for s in checked], fusion,
                    parent_index(layout, bone_pairs), layout.num_joints, layout.channels, num_person,
                    score_channel)
