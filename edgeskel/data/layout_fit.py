"""How well a layout fits data: a wrong joint order gives a wrong graph without any error.

Two physical facts hold for any real skeleton whatever the sensor: a bone keeps its length
over time (up to tracking noise), and a left bone is as long as its right partner. With the
joints in another order than the layout says, many "bones" join joints that are not adjacent,
so their lengths swing over time and left/right pairs differ. `layout_fit` measures both;
`check_layout` compares the chosen layout with every built-in layout of the same joint count
and returns a warning with the numbers when the chosen one is likely wrong.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from edgeskel.layouts import BUILTIN_LAYOUTS, SkeletonLayout

MAX_SAMPLES = 200  # a fixed, evenly spread subset keeps the check to milliseconds
# Thresholds from NW-UCLA (kinect20, measured by tests/test_data_layout_fit.py): in the right
# order bones are on average 0.42x the median joint-to-joint distance and left/right bones
# differ by 5%; shuffled orders give 1.0-1.2x and 29-89%; the spine listed head-first (UTD-MHAD's
# order read as kinect20) gives 0.56x. Kinect tracking noise makes the length variation over
# time (12% right vs 10-15% shuffled) a number to show, not to decide on.
BAD_RATIO = 0.75
BAD_ASYMMETRY = 0.25
BETTER_BY = 1.2  # a built-in layout this many times better fits clearly better


@dataclass(frozen=True)
class LayoutFit:
    """`ratio`: mean over bones of (bone length / median distance between any two joints), each
    bone's value the median over clips (bones join neighbours, so a right layout gives a small
    ratio; a few misplaced bones raise the mean); `variation`: median over bones of the
    relative spread (std/mean over frames) of a bone's length; `asymmetry`: median relative
    length difference of left/right bone pairs (None when the joint names give no pairs)."""

    layout: str
    ratio: float
    variation: float
    asymmetry: float | None
    pairs: int

    def score(self) -> float:
        return self.ratio + (self.asymmetry or 0.0)

    def to_dict(self) -> dict[str, Any]:
        return {"layout": self.layout, "bone_to_joint_distance": round(self.ratio, 4),
                "bone_length_variation": round(self.variation, 4),
                "left_right_asymmetry": None if self.asymmetry is None else round(self.asymmetry, 4),
                "left_right_pairs": self.pairs}


def _mirror(name: str) -> str | None:
    for a, b in (("left", "right"), ("right", "left")):
        if a in name:
            return name.replace(a, b)
    return None


def symmetric_pairs(layout: SkeletonLayout) -> list[tuple[int, int]]:
    """Index pairs of bones (into `layout.bones`) whose joint names mirror left <-> right."""
    names = layout.joints
    index = {(names[a], names[b]): i for i, (a, b) in enumerate(layout.bones)}
    pairs = []
    for (ca, pa), i in index.items():
        if "left" not in ca and "left" not in pa:
            continue
        mirrored = (_mirror(ca) or ca, _mirror(pa) or pa)
        j = index.get(mirrored)
        if j is not None and j != i:
            pairs.append((i, j))
    return pairs


def _first_person(samples: list[np.ndarray]) -> list[np.ndarray]:
    """(C, T', V) of the first person over the frames where it is present (>= 2 frames)."""
    out = []
    for x in samples:
        p = x[..., 0].astype(np.float64)
        present = np.abs(p).sum(axis=(0, 2)) > 0
        if present.sum() >= 2:
            out.append(p[:, present])
    return out


def layout_fit(samples: list[np.ndarray], layout: SkeletonLayout) -> LayoutFit | None:
    """Fit numbers of `layout` on (C, T, V, M) samples (None when nothing can be measured)."""
    if not layout.bones or not samples:
        return None
    if len(samples) > MAX_SAMPLES:
        samples = [samples[i] for i in np.linspace(0, len(samples) - 1, MAX_SAMPLES).astype(int)]
    samples = [s for s in samples if s.ndim == 4 and s.shape[2] == layout.num_joints]
    people = _first_person(samples)
    if not people:
        return None
    child = np.array([a for a, _ in layout.bones], dtype=np.int64)
    parent = np.array([b for _, b in layout.bones], dtype=np.int64)
    off = ~np.eye(layout.num_joints, dtype=bool)
    variation, asym, ratio = [], [], []
    pairs = symmetric_pairs(layout)
    for p in people:
        dist = np.linalg.norm(p[:, :, :, None] - p[:, :, None, :], axis=0).mean(0)  # (V, V) over time
        typical = np.median(dist[off])
        if typical > 1e-9:
            ratio.append(dist[child, parent] / typical)
        bl = np.linalg.norm(p[:, :, child] - p[:, :, parent], axis=0)  # (T', B)
        mean = bl.mean(0)
        ok = mean > 1e-6
        if ok.any():
            variation.append(float(np.median(bl.std(0)[ok] / mean[ok])))
        for i, j in pairs:
            m = (mean[i] + mean[j]) / 2
            if m > 1e-6:
                asym.append(abs(mean[i] - mean[j]) / m)
    if not variation or not ratio:
        return None
    return LayoutFit(layout.name, float(np.median(np.stack(ratio), axis=0).mean()), float(np.median(variation)),
                     float(np.median(asym)) if asym else None, len(pairs))


def check_layout(samples: list[np.ndarray], layout: SkeletonLayout) -> tuple[dict[str, Any], str | None]:
    """Fit of `layout` and of the same-sized built-ins; a warning text when the joint order is
    likely wrong (a built-in fits clearly better, or the fit is poor in absolute terms)."""
    own = layout_fit(samples, layout)
    if own is None:
        return {}, None
    others = [f for lay in BUILTIN_LAYOUTS.values()
              if lay.num_joints == layout.num_joints and lay.channels == layout.channels and lay != layout
              for f in [layout_fit(samples, lay)] if f is not None]
    best = min(others, key=LayoutFit.score, default=None)
    info: dict[str, Any] = {**own.to_dict(), "alternatives": [f.to_dict() for f in others]}
    poor = own.ratio > BAD_RATIO or (own.asymmetry is not None and own.asymmetry > BAD_ASYMMETRY)
    better = best is not None and best.score() * BETTER_BY < own.score()
    info["likely_wrong"] = bool(poor or better)
    if not (poor or better):
        return info, None
    msg = (f"the joint order may not match layout {layout.name!r}: its bones are {own.ratio:.2f}x the typical "
           f"joint-to-joint distance (a right layout: < {BAD_RATIO}), bone lengths vary by {own.variation:.0%} "
           "over time")
    if own.asymmetry is not None:
        msg += f", left/right bones differ by {own.asymmetry:.0%} (right: < {BAD_ASYMMETRY:.0%})"
    if better:
        msg += (f"; built-in layout {best.layout!r} fits better ({best.ratio:.2f}x, {best.variation:.0%}"
                + (f", {best.asymmetry:.0%} left/right" if best.asymmetry is not None else "") + f"): --layout {best.layout}")
    else:
        msg += "; no built-in layout fits better: pass your joint order as --layout FILE.yaml (see docs/DATA.md)"
    return info, msg
