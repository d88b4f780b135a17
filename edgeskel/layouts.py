"""Skeleton layouts: joint names, bones, centre joint and body parts.

A `SkeletonLayout` travels with the data and builds the graph the models use, so no model
hard-codes a joint count. Built-in layouts are selectable by name (`--layout ntu25`); users
add their own from a small YAML file (`--layout path/to/layout.yaml`, see `load_layout`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgeskel.errors import ConfigError


@dataclass(frozen=True)
class SkeletonLayout:
    """A skeleton definition.

    `bones` are 0-based (child, parent) pairs pointing towards the root (CTR-GCN's "inward"
    direction). `center` is the graph centre used for ST-GCN spatial partitioning; `origin`
    is the joint the data is translated to (defaults to `center`). `parts` gives a body-part
    id per joint (Hyperformer hyperedges).
    """

    name: str
    joints: tuple[str, ...]
    bones: tuple[tuple[int, int], ...]
    center: int
    origin: int | None = None
    parts: tuple[int, ...] | None = None
    channels: int = 3
    description: str = ""
    extra: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self) -> None:
        v = len(self.joints)
        if v == 0:
            raise ConfigError(f"layout {self.name!r}: no joints")
        for a, b in self.bones:
            if not (0 <= a < v and 0 <= b < v) or a == b:
                raise ConfigError(f"layout {self.name!r}: bone ({a}, {b}) out of range for {v} joints")
        if not 0 <= self.center < v:
            raise ConfigError(f"layout {self.name!r}: center {self.center} out of range for {v} joints")
        if self.origin is not None and not 0 <= self.origin < v:
            raise ConfigError(f"layout {self.name!r}: origin {self.origin} out of range for {v} joints")
        if self.parts is not None and len(self.parts) != v:
            raise ConfigError(f"layout {self.name!r}: parts has {len(self.parts)} entries, expected {v}")
        if self.channels not in (2, 3):
            raise ConfigError(f"layout {self.name!r}: channels must be 2 or 3, got {self.channels}")

    @property
    def num_joints(self) -> int:
        return len(self.joints)

    @property
    def origin_joint(self) -> int:
        return self.center if self.origin is None else self.origin

    @property
    def body_parts(self) -> tuple[int, ...]:
        """Part id per joint; falls back to one part per connected limb chain from the centre."""
        return self.parts if self.parts is not None else tuple(0 for _ in self.joints)

    # ---- graph -----------------------------------------------------------------
    def edge_matrix(self, edges: tuple[tuple[int, int], ...] | None = None) -> np.ndarray:
        """A[j, i] = 1 for every (i, j) edge, as CTR-GCN's `edge2mat`."""
        v = self.num_joints
        a = np.zeros((v, v), dtype=np.float64)
        for i, j in self.bones if edges is None else edges:
            a[j, i] = 1.0
        return a

    def spatial_adjacency(self) -> np.ndarray:
        """(3, V, V) float32: identity, normalised inward, normalised outward (CTR-GCN spatial)."""
        v = self.num_joints
        inward = self.bones
        outward = tuple((j, i) for i, j in inward)
        eye = np.eye(v)
        return np.stack(
            [eye, normalize_digraph(self.edge_matrix(inward)), normalize_digraph(self.edge_matrix(outward))]
        ).astype(np.float32)

    def hop_distance(self, max_hop: int | None = None, edges: tuple[tuple[int, int], ...] | None = None) -> np.ndarray:
        """Pairwise hop distances on the undirected bone graph (inf where unreachable/beyond)."""
        return hop_distance(self.num_joints, self.bones if edges is None else edges, max_hop)

    def fingerprint(self) -> str:
        """sha256 of the full definition: stage keys and manifests use it, so an edited layout
        file re-runs the stages that depend on it even when its name stays the same."""
        import hashlib
        import json

        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "joints": list(self.joints),
            "bones": [list(b) for b in self.bones],
            "center": self.center,
            "origin": self.origin,
            "parts": list(self.parts) if self.parts is not None else None,
            "channels": self.channels,
            "description": self.description,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any], source: str = "<dict>") -> SkeletonLayout:
        allowed = {"name", "joints", "bones", "center", "origin", "parts", "channels", "description"}
        unknown = set(d) - allowed
        if unknown:
            raise ConfigError(f"{source}: unknown layout keys {sorted(unknown)}; allowed: {sorted(allowed)}")
        missing = {"name", "joints", "bones", "center"} - set(d)
        if missing:
            raise ConfigError(f"{source}: layout is missing keys {sorted(missing)}")
        try:
            return cls(
                name=str(d["name"]),
                joints=tuple(str(j) for j in d["joints"]),
                bones=tuple((int(a), int(b)) for a, b in d["bones"]),
                center=int(d["center"]),
                origin=None if d.get("origin") is None else int(d["origin"]),
                parts=None if d.get("parts") is None else tuple(int(p) for p in d["parts"]),
                channels=int(d.get("channels", 3)),
                description=str(d.get("description", "")),
            )
        except ConfigError as exc:
            raise ConfigError(f"{source}: {exc}") from None
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{source}: malformed layout: {exc}") from None


def normalize_digraph(a: np.ndarray) -> np.ndarray:
    """Column-normalise (A @ D^-1), exactly CTR-GCN's / ST-GCN's `normalize_digraph`."""
    col = a.sum(0)
    dn = np.zeros_like(a)
    nz = col > 0
    dn[nz, nz] = 1.0 / col[nz]
    return a @ dn


def hop_distance(num_joints: int, edges: tuple[tuple[int, int], ...], max_hop: int | None = None) -> np.ndarray:
    adj = np.eye(num_joints, dtype=bool)
    for i, j in edges:
        adj[i, j] = adj[j, i] = True
    dist = np.full((num_joints, num_joints), np.inf)
    limit = num_joints if max_hop is None else max_hop
    reach = np.eye(num_joints, dtype=bool)
    dist[reach] = 0
    step = adj.astype(np.int64)
    cur = np.eye(num_joints, dtype=np.int64)
    for d in range(1, limit + 1):
        cur = np.minimum(cur @ step, 1)
        new = (cur > 0) & ~reach
        if not new.any():
            break
        dist[new] = d
        reach |= new
    return dist


def _one_based(pairs: list[tuple[int, int]]) -> tuple[tuple[int, int], ...]:
    return tuple((a - 1, b - 1) for a, b in pairs)


NTU25 = SkeletonLayout(
    name="ntu25",
    joints=(
        "spine_base", "spine_mid", "neck", "head", "left_shoulder", "left_elbow", "left_wrist",
        "left_hand", "right_shoulder", "right_elbow", "right_wrist", "right_hand", "left_hip",
        "left_knee", "left_ankle", "left_foot", "right_hip", "right_knee", "right_ankle",
        "right_foot", "spine_shoulder", "left_hand_tip", "left_thumb", "right_hand_tip", "right_thumb",
    ),
    # CTR-GCN graph/ntu_rgb_d.py inward_ori_index
    bones=_one_based([
        (1, 2), (2, 21), (3, 21), (4, 3), (5, 21), (6, 5), (7, 6), (8, 7), (9, 21), (10, 9),
        (11, 10), (12, 11), (13, 1), (14, 13), (15, 14), (16, 15), (17, 1), (18, 17), (19, 18),
        (20, 19), (22, 23), (23, 8), (24, 25), (25, 12),
    ]),
    center=20,
    origin=1,
    # Hyperformer config/nturgbd-cross-subject/joint.yaml joint_label
    parts=(0, 4, 2, 2, 2, 2, 1, 1, 2, 2, 1, 1, 2, 3, 3, 3, 2, 3, 3, 3, 1, 0, 1, 0, 1),
    description="NTU RGB+D 60/120, Kinect v2 (25 joints)",
)

KINECT20 = SkeletonLayout(
    name="kinect20",
    joints=(
        "hip_center", "spine", "shoulder_center", "head", "left_shoulder", "left_elbow",
        "left_wrist", "left_hand", "right_shoulder", "right_elbow", "right_wrist", "right_hand",
        "left_hip", "left_knee", "left_ankle", "left_foot", "right_hip", "right_knee",
        "right_ankle", "right_foot",
    ),
    # CTR-GCN graph/ucla.py inward_ori_index
    bones=_one_based([
        (1, 2), (2, 3), (4, 3), (5, 3), (6, 5), (7, 6), (8, 7), (9, 3), (10, 9), (11, 10),
        (12, 11), (13, 1), (14, 13), (15, 14), (16, 15), (17, 1), (18, 17), (19, 18), (20, 19),
    ]),
    center=2,
    origin=1,
    # torso/head 0, left arm 1, right arm 2, left leg 3, right leg 4
    parts=(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4),
    description="Kinect v1 SDK order (NW-UCLA, UTKinect, MSR Action3D): 20 joints",
)

# UTD-MHAD's skeleton .mat files: Kinect v1 joints with the spine listed head-first (its readme's
# joint figure): head, shoulder_center, spine, hip_center, then the limbs as in kinect20.
_UTD_ORDER = (3, 2, 1, 0, *range(4, 20))  # utd20 joint i is kinect20 joint _UTD_ORDER[i]
_TO_UTD = {k: i for i, k in enumerate(_UTD_ORDER)}
UTD20 = SkeletonLayout(
    name="utd20",
    joints=tuple(KINECT20.joints[k] for k in _UTD_ORDER),
    bones=tuple((_TO_UTD[a], _TO_UTD[b]) for a, b in KINECT20.bones),
    center=_TO_UTD[KINECT20.center],
    origin=_TO_UTD[KINECT20.origin_joint],
    parts=tuple(KINECT20.parts[k] for k in _UTD_ORDER) if KINECT20.parts else None,
    description="UTD-MHAD skeleton .mat order (Kinect v1, 20 joints, spine head-first)",
)

OPENNI15 = SkeletonLayout(
    name="openni15",
    joints=(
        "head", "neck", "torso", "left_shoulder", "left_elbow", "left_hand", "right_shoulder",
        "right_elbow", "right_hand", "left_hip", "left_knee", "left_foot", "right_hip",
        "right_knee", "right_foot",
    ),
    bones=_one_based([
        (1, 2), (2, 3), (4, 2), (5, 4), (6, 5), (7, 2), (8, 7), (9, 8), (10, 3), (11, 10),
        (12, 11), (13, 3), (14, 13), (15, 14),
    ]),
    center=2,
    parts=(0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3, 4, 4, 4),
    description="OpenNI / NiTE 15 joints (SBU Kinect Interaction)",
)

COCO17 = SkeletonLayout(
    name="coco17",
    joints=(
        "nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder",
        "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip",
        "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle",
    ),
    # PYSKL graph 'coco' inward (0-based)
    bones=(
        (15, 13), (13, 11), (16, 14), (14, 12), (11, 5), (12, 6), (9, 7), (7, 5), (10, 8),
        (8, 6), (5, 0), (6, 0), (1, 0), (3, 1), (2, 0), (4, 2),
    ),
    center=0,
    parts=(0, 0, 0, 0, 0, 1, 2, 1, 2, 1, 2, 3, 4, 3, 4, 3, 4),
    channels=2,
    description="COCO 17 keypoints (2D pose estimators: HRNet, RTMPose, YOLO-pose)",
)

# Order matters where joint counts repeat: the last layout of a joint count is the one data of
# that count gets by default (kinect20 for 20 joints; the layout fit check names utd20 if it fits better).
BUILTIN_LAYOUTS: dict[str, SkeletonLayout] = {lay.name: lay for lay in (NTU25, UTD20, KINECT20, OPENNI15, COCO17)}


def load_layout(path: str | Path) -> SkeletonLayout:
    """Read a user layout from YAML: keys name, joints, bones (0-based pairs), center,
    optional origin, parts, channels."""
    from edgeskel.config_errors import read_yaml_mapping

    data = read_yaml_mapping(path, "layout file")
    return SkeletonLayout.from_dict(data, source=str(path))


def get_layout(spec: str | SkeletonLayout | dict[str, Any]) -> SkeletonLayout:
    """Resolve a built-in name, a YAML path, a layout dict (from a checkpoint) or a layout."""
    if isinstance(spec, SkeletonLayout):
        return spec
    if isinstance(spec, dict):
        return SkeletonLayout.from_dict(spec)
    if spec in BUILTIN_LAYOUTS:
        return BUILTIN_LAYOUTS[spec]
    if spec.endswith((".yaml", ".yml")):
        return load_layout(spec)
    raise ConfigError(f"unknown layout {spec!r}; built-in: {sorted(BUILTIN_LAYOUTS)} or a path to a .yaml file")
