"""Procedural skeleton actions for tests and demos, on any layout.

Why: the pipeline needs a dataset that is always available, tiny, deterministic and
learnable, on every layout a model may use. Each action animates a canonical 3-D body
(segment directions per frame, simple forward kinematics); layout joints are then mapped to
canonical joints by name (`left_elbow`, `LElbow`, `spine_base`, `nose`...), falling back to
body-part ids and the bone tree for layouts with unknown names. Each sample varies subject
size and proportions, speed, phase, amplitude, length, viewpoint and noise; 2-D layouts get
an orthographic image-style projection (x right, y down).
"""

from __future__ import annotations

import re
from collections.abc import Callable

import numpy as np

from edgeskel.layouts import SkeletonLayout

ACTIONS = (
    "waving", "clapping", "squatting", "kicking", "jumping", "punching", "bowing", "arm circles",
    "walking in place", "sitting down", "raising both hands", "side bending",
)
_SPLIT_ID = {"train": 0, "test": 1}

# ---- canonical body ----------------------------------------------------------------------
# Segment lengths (metres at scale 1).
_LEN = {
    "spine": 0.26, "chest": 0.24, "neck": 0.06, "head": 0.14, "shoulder": 0.18, "hip": 0.10,
    "upper": 0.28, "fore": 0.25, "hand": 0.08, "tip": 0.07, "thigh": 0.42, "shin": 0.40,
    "foot": 0.13, "ankle": 0.07,
}


def _rot(axis: str, a: np.ndarray) -> np.ndarray:
    """(T, 3, 3) rotations about x/y/z."""
    c, s = np.cos(a), np.sin(a)
    o, z = np.ones_like(a), np.zeros_like(a)
    if axis == "x":  # pitch: (0,1,0) -> (0, c, s) (bend forward, +z)
        m = [[o, z, z], [z, c, -s], [z, s, c]]
    elif axis == "y":  # yaw
        m = [[c, z, s], [z, o, z], [-s, z, c]]
    else:  # roll: (0,1,0) -> (-s, c, 0)
        m = [[c, -s, z], [s, c, z], [z, z, o]]
    return np.stack([np.stack(r, -1) for r in m], -2)


def _seg(f: np.ndarray, b: np.ndarray, side: float) -> np.ndarray:
    """Segment direction (T, 3) from flexion f (0 down, +pi/2 forward, pi up; negative =
    backward) and abduction b (sideways outward towards `side` = +1 left / -1 right)."""
    th = side * b
    return np.stack([np.cos(f) * np.sin(th), -np.cos(f) * np.cos(th), np.sin(f)], -1)


def _apply(r: np.ndarray, v: np.ndarray) -> np.ndarray:
    return np.einsum("tij,tj->ti", r, v)


def _neutral(t: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Relaxed standing pose with per-subject variation; every value is a (T,) array."""
    z = np.zeros(t)
    arm_b = rng.uniform(0.08, 0.25)
    arm_f = rng.uniform(-0.05, 0.15)
    p = {k: z.copy() for k in ("pitch", "roll", "twist", "lift")}
    for s in "lr":
        p[f"{s}_upper_f"], p[f"{s}_upper_b"] = z + arm_f, z + arm_b
        p[f"{s}_fore_f"], p[f"{s}_fore_b"] = z + arm_f + rng.uniform(0.1, 0.3), z + arm_b * 0.5
        p[f"{s}_thigh_f"], p[f"{s}_thigh_b"] = z.copy(), z + rng.uniform(0.0, 0.08)
        p[f"{s}_shin_f"], p[f"{s}_shin_b"] = z.copy(), z.copy()
    return p


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3 - 2 * x)


# Each action edits the neutral pose. w: cyclic phase (T,), u: progress 0..1 (T,), a: amplitude.
def _waving(p, w, u, a):
    p["r_upper_f"][:] = 0.2
    p["r_upper_b"][:] = 2.2
    p["r_fore_f"][:] = 0.25
    p["r_fore_b"][:] = 2.75 + 0.45 * a * np.sin(w)


def _clapping(p, w, u, a):
    open_ = 0.15 + 0.55 * a * (0.5 + 0.5 * np.sin(w))
    for s in "lr":
        p[f"{s}_upper_f"][:] = 1.05
        p[f"{s}_upper_b"][:] = 0.25 + open_
        p[f"{s}_fore_f"][:] = 1.45
        p[f"{s}_fore_b"][:] = -0.35 + open_ * 1.2


def _squatting(p, w, u, a):
    d = 1.25 * a * (0.5 - 0.5 * np.cos(w))
    for s in "lr":
        p[f"{s}_thigh_f"][:] = d
        p[f"{s}_shin_f"][:] = -0.85 * d
        p[f"{s}_upper_f"][:] = 1.3 * d
    p["pitch"][:] = 0.35 * d


def _kicking(p, w, u, a):
    k = np.maximum(0.0, np.sin(w)) ** 2
    p["r_thigh_f"][:] = 1.35 * a * k
    p["r_shin_f"][:] = p["r_thigh_f"] - 0.9 * (1 - k) * k * 2
    p["l_upper_b"][:] = 0.5 * k + 0.2
    p["r_upper_b"][:] = 0.5 * k + 0.2
    p["pitch"][:] = -0.15 * k


def _jumping(p, w, u, a):
    up, crouch = np.maximum(0.0, np.sin(w)), np.maximum(0.0, -np.sin(w))
    p["lift"][:] = 0.28 * a * up
    for s in "lr":
        p[f"{s}_thigh_f"][:] = 0.9 * crouch
        p[f"{s}_shin_f"][:] = -0.8 * crouch
        p[f"{s}_upper_f"][:] = 0.4 + 2.3 * up
        p[f"{s}_fore_f"][:] = 0.5 + 2.3 * up
    p["pitch"][:] = 0.3 * crouch


def _punching(p, w, u, a):
    for s, sign in (("l", 1.0), ("r", -1.0)):
        e = np.maximum(0.0, sign * np.sin(w)) * a
        p[f"{s}_upper_f"][:] = 0.7 + 0.85 * e
        p[f"{s}_upper_b"][:] = 0.3 - 0.3 * e
        p[f"{s}_fore_f"][:] = 2.5 - 0.95 * np.minimum(1.0, e * 1.2)
        p[f"{s}_fore_b"][:] = -0.3
    p["twist"][:] = 0.25 * np.sin(w)


def _bowing(p, w, u, a):
    p["pitch"][:] = 0.95 * a * (0.5 - 0.5 * np.cos(w))
    for s in "lr":
        p[f"{s}_upper_b"][:] = 0.05


def _arm_circles(p, w, u, a):
    for s in "lr":
        p[f"{s}_upper_b"][:] = np.pi / 2 + 0.45 * a * np.sin(w)
        p[f"{s}_upper_f"][:] = 0.45 * a * np.cos(w)
        p[f"{s}_fore_b"][:] = p[f"{s}_upper_b"]
        p[f"{s}_fore_f"][:] = p[f"{s}_upper_f"]


def _walking(p, w, u, a):
    for s, sign in (("l", 1.0), ("r", -1.0)):
        lift = np.maximum(0.0, sign * np.sin(w)) * a
        p[f"{s}_thigh_f"][:] = 0.75 * lift
        p[f"{s}_shin_f"][:] = -0.55 * lift
        p[f"{s}_upper_f"][:] = -0.45 * sign * np.sin(w) * a
        p[f"{s}_fore_f"][:] = p[f"{s}_upper_f"] + 0.35


def _sitting(p, w, u, a):
    s_ = _smoothstep((u - 0.15) / 0.6)
    for s in "lr":
        p[f"{s}_thigh_f"][:] = 1.45 * s_
        p[f"{s}_upper_f"][:] = 0.6 * s_
        p[f"{s}_fore_f"][:] = 0.9 * s_
    p["pitch"][:] = 0.35 * np.sin(np.pi * s_) + 0.1 * s_


def _raising(p, w, u, a):
    r = a * (0.5 - 0.5 * np.cos(w))
    for s in "lr":
        p[f"{s}_upper_f"][:] = 2.9 * r
        p[f"{s}_fore_f"][:] = 3.0 * r
        p[f"{s}_upper_b"][:] = 0.15


def _side_bending(p, w, u, a):
    p["roll"][:] = 0.45 * a * np.sin(w)
    for s in "lr":
        p[f"{s}_upper_b"][:] = 1.4
        p[f"{s}_fore_b"][:] = 1.6


_ACTION_FNS: tuple[tuple[Callable, float], ...] = (  # (pose editor, cycles per sequence)
    (_waving, 3.0), (_clapping, 4.0), (_squatting, 1.5), (_kicking, 1.5), (_jumping, 2.0),
    (_punching, 2.5), (_bowing, 1.0), (_arm_circles, 2.0), (_walking, 2.5), (_sitting, 1.0),
    (_raising, 1.0), (_side_bending, 1.5),
)


def _body(p: dict[str, np.ndarray], scale: float, prop: dict[str, float]) -> dict[str, np.ndarray]:
    """Forward kinematics: pose parameters -> canonical joint positions (T, 3)."""
    t = len(p["pitch"])
    L = {k: v * scale * prop.get(k, 1.0) for k, v in _LEN.items()}
    zero = np.zeros(t)
    torso = _rot("y", p["twist"]) @ _rot("x", p["pitch"]) @ _rot("z", p["roll"])
    up, right = _apply(torso, np.tile([0.0, 1.0, 0.0], (t, 1))), _apply(torso, np.tile([1.0, 0.0, 0.0], (t, 1)))
    fwd = _apply(torso, np.tile([0.0, 0.0, 1.0], (t, 1)))
    j: dict[str, np.ndarray] = {}
    # Legs hang from the pelvis frame (no torso pitch); pelvis height keeps the lowest ankle on the floor.
    legs = {}
    for s, side in (("l", 1.0), ("r", -1.0)):
        hip = np.stack([zero + side * L["hip"], zero - 0.05 * scale, zero], -1)
        knee = hip + L["thigh"] * _seg(p[f"{s}_thigh_f"], p[f"{s}_thigh_b"], side)
        ankle = knee + L["shin"] * _seg(p[f"{s}_shin_f"], p[f"{s}_shin_b"], side)
        legs[s] = (hip, knee, ankle)
    lowest = np.minimum(legs["l"][2][:, 1], legs["r"][2][:, 1])
    pelvis = np.stack([zero, L["ankle"] - lowest + p["lift"], zero], -1)
    j["pelvis"] = pelvis
    for s, (hip, knee, ankle) in legs.items():
        j[f"{s}_hip"], j[f"{s}_knee"], j[f"{s}_ankle"] = pelvis + hip, pelvis + knee, pelvis + ankle
        j[f"{s}_foot"] = j[f"{s}_ankle"] + np.array([0.0, -L["ankle"] * 0.8, L["foot"]])
    j["spine_mid"] = pelvis + up * L["spine"]
    j["chest"] = j["spine_mid"] + up * L["chest"]
    j["neck"] = j["chest"] + up * L["neck"]
    j["head"] = j["neck"] + up * L["head"]
    j["head_top"] = j["head"] + up * L["head"] * 0.6
    j["nose"] = j["head"] + fwd * 0.09 * scale
    for s, side in (("l", 1.0), ("r", -1.0)):
        j[f"{s}_eye"] = j["head"] + fwd * 0.07 * scale + up * 0.035 * scale + right * side * 0.035 * scale
        j[f"{s}_ear"] = j["head"] + right * side * 0.08 * scale
        sh = j["chest"] - up * 0.02 * scale + right * side * L["shoulder"]
        j[f"{s}_shoulder"] = sh
        j[f"{s}_elbow"] = sh + L["upper"] * _apply(torso, _seg(p[f"{s}_upper_f"], p[f"{s}_upper_b"], side))
        fore = _apply(torso, _seg(p[f"{s}_fore_f"], p[f"{s}_fore_b"], side))
        j[f"{s}_wrist"] = j[f"{s}_elbow"] + L["fore"] * fore
        j[f"{s}_hand"] = j[f"{s}_wrist"] + L["hand"] * fore
        j[f"{s}_hand_tip"] = j[f"{s}_hand"] + L["tip"] * fore
        j[f"{s}_thumb"] = j[f"{s}_hand"] + 0.05 * scale * fwd - side * 0.03 * scale * right
    return j


# ---- layout mapping ------------------------------------------------------------------------
_PARTS = (  # (keyword, canonical name or "*" for sided), checked in order on a normalised name
    ("hand_tip", "*hand_tip"), ("handtip", "*hand_tip"), ("fingertip", "*hand_tip"), ("tip", "*hand_tip"),
    ("thumb", "*thumb"), ("hand", "*hand"), ("palm", "*hand"), ("wrist", "*wrist"), ("elbow", "*elbow"),
    ("knee", "*knee"), ("ankle", "*ankle"), ("foot", "*foot"), ("toe", "*foot"), ("heel", "*ankle"),
    ("eye", "*eye"), ("ear", "*ear"), ("nose", "nose"), ("head", "head"), ("neck", "neck"),
    ("spine_base", "pelvis"), ("pelvis", "pelvis"), ("root", "pelvis"), ("waist", "pelvis"),
    ("shoulder", "*shoulder|chest"), ("hip", "*hip|pelvis"), ("chest", "chest"), ("thorax", "chest"),
    ("spine", "spine_mid"), ("torso", "spine_mid"), ("belly", "spine_mid"),
)


def _normalise(name: str) -> tuple[str, str | None]:
    """'LShoulder' / 'left-shoulder' -> ('l_shoulder'-like text, side 'l'|'r'|None)."""
    s = re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", name)
    s = re.sub(r"[^a-z0-9]+", "_", s.lower()).strip("_")
    toks = s.split("_")
    side = None
    if "left" in toks or (toks and toks[0] == "l"):
        side = "l"
    elif "right" in toks or (toks and toks[0] == "r"):
        side = "r"
    rest = "_".join(t for t in toks if t not in ("left", "right", "l", "r"))
    return rest, side


def _match(name: str) -> str | None:
    rest, side = _normalise(name)
    for key, target in _PARTS:
        if key in rest:
            if not target.startswith("*"):
                return target
            sided, _, unsided = target[1:].partition("|")
            if side is not None:
                return f"{side}_{sided}"
            return unsided or None
    return None


_CHAINS = {  # fallback by body part (0 torso/head, 1 left arm, 2 right arm, 3 left leg, 4 right leg)
    0: ("spine_mid", "chest", "neck", "head", "head_top"),
    1: ("l_shoulder", "l_elbow", "l_wrist", "l_hand", "l_hand_tip"),
    2: ("r_shoulder", "r_elbow", "r_wrist", "r_hand", "r_hand_tip"),
    3: ("l_hip", "l_knee", "l_ankle", "l_foot"),
    4: ("r_hip", "r_knee", "r_ankle", "r_foot"),
}


def joint_map(layout: SkeletonLayout) -> list[str]:
    """Canonical joint each layout joint follows: by name, else by part id, else by bone tree."""
    v = layout.num_joints
    names: list[str | None] = [_match(n) for n in layout.joints]
    if sum(n is not None for n in names) >= max(3, v // 2):
        hop = layout.hop_distance()
        for i in range(v):  # unknown joints ride on the nearest named joint
            if names[i] is None:
                known = [k for k in range(v) if _match(layout.joints[k]) is not None]
                names[i] = _match(layout.joints[min(known, key=lambda k: (hop[i, k], k))])
        return [str(n) for n in names]
    hop = layout.hop_distance()
    c = layout.center
    parts = list(layout.parts) if layout.parts is not None and len(set(layout.parts)) > 1 else _tree_parts(layout)
    out = []
    for i in range(v):
        chain = _CHAINS.get(parts[i] % 5, _CHAINS[0])
        same = [k for k in range(v) if parts[k] == parts[i]]
        base = min(hop[c, k] for k in same)
        depth = int(min(hop[c, i] - base, len(chain) - 1)) if np.isfinite(hop[c, i]) else 0
        out.append("pelvis" if i == c and parts[i] % 5 == 0 else chain[depth])
    return out


def _tree_parts(layout: SkeletonLayout) -> list[int]:
    """Part ids from the bone tree: the four largest branches off the centre become limbs."""
    hop = layout.hop_distance()
    c, v = layout.center, layout.num_joints
    nbrs = [k for k in range(v) if hop[c, k] == 1]
    branch = {}
    for i in range(v):
        if i == c or not np.isfinite(hop[c, i]):
            continue
        branch[i] = min((n for n in nbrs if hop[n, i] == hop[c, i] - 1), default=-1)
    sizes = {n: sum(1 for b in branch.values() if b == n) for n in nbrs}
    limbs = sorted(nbrs, key=lambda n: (-sizes[n], n))[:4]
    part_of = {n: idx + 1 for idx, n in enumerate(limbs)}
    return [part_of.get(branch.get(i, -1), 0) for i in range(v)]


# ---- generation ----------------------------------------------------------------------------
def generate_sample(
    layout: SkeletonLayout, action: int, seed: int | np.random.SeedSequence, frames: int = 48,
    noise: float = 0.01, view_deg: float = 45.0,
) -> np.ndarray:
    """One (C, T_i, V, 1) float32 sample of `ACTIONS[action]`, deterministic in `seed`."""
    rng = np.random.default_rng(seed)
    fn, cycles = _ACTION_FNS[action]
    t = max(8, int(round(frames * rng.uniform(0.75, 1.25))))
    p = _neutral(t, rng)
    phase = rng.uniform(0, 2 * np.pi) if cycles > 1.2 else rng.uniform(-0.3, 0.3)
    speed = cycles * rng.uniform(0.75, 1.3) if cycles > 1.2 else 1.0
    u = np.linspace(0.0, 1.0, t)
    w = 2 * np.pi * speed * u + phase + (0 if cycles > 1.2 else 0.0)
    fn(p, w, u, rng.uniform(0.8, 1.1))
    scale = rng.uniform(0.85, 1.15)
    prop = {k: rng.uniform(0.93, 1.07) for k in _LEN}
    body = _body(p, scale, prop)
    names = joint_map(layout)
    x = np.stack([body[n] for n in names], 1)  # (T, V, 3)
    yaw = np.deg2rad(rng.uniform(-view_deg, view_deg))
    tilt = np.deg2rad(rng.uniform(-5, 5))
    rot = _rot("y", np.array([yaw]))[0] @ _rot("x", np.array([tilt]))[0]
    x = x @ rot.T + np.array([rng.uniform(-0.3, 0.3), 0.0, rng.uniform(2.5, 3.5)])
    x = x + rng.normal(0.0, noise * scale, x.shape)
    if layout.channels == 2:
        x = np.stack([x[..., 0], -x[..., 1]], -1)
    return np.ascontiguousarray(x.transpose(2, 0, 1)[..., None], dtype=np.float32)


def generate_split(
    layout: SkeletonLayout, classes: int, per_class: int, seed: int, split: str, frames: int = 48,
    noise: float = 0.01, view_deg: float = 45.0,
) -> tuple[list[np.ndarray], np.ndarray, list[str]]:
    """Samples, labels, names for one split; train and test draw from disjoint seed streams."""
    if not 1 <= classes <= len(ACTIONS):
        raise ValueError(f"classes must be 1..{len(ACTIONS)}")
    samples, labels, names = [], [], []
    sid = _SPLIT_ID[split]
    for c in range(classes):
        for i in range(per_class):
            ss = np.random.SeedSequence([seed, sid, c, i])
            samples.append(generate_sample(layout, c, ss, frames, noise, view_deg))
            labels.append(c)
            names.append(f"{split}_{ACTIONS[c].replace(' ', '_')}_{i:04d}")
    return samples, np.array(labels, dtype=np.int64), names
