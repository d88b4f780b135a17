"""Raw (C, T_i, V, M_i) samples -> fixed model input (C, T, V, M), driven by `Preprocess`.

Steps, all numpy-vectorised per sample:
1. drop all-zero frames (Kinect dropouts, padding); a sequence with none left is an error;
2. keep the `num_person` most active persons (largest motion variance), pad with zeros;
3. centre on `layout.origin_joint` of the first person's first valid frame (as CTR-GCN's
   data_gen), leaving absent persons/frames at zero;
4. (train only) optional random rotation / scaling;
5. resample to `num_frames`: uniform linear interpolation for eval, random crop of 50-100 %
   then resize for training (CTR-GCN's valid_crop_resize idea);
6. the requested stream: joint | bone (x - x[parent]) | motion (x[t+1] - x[t]) | bone_motion.
"""

from __future__ import annotations

import numpy as np

from edgeskel.checkpoint import Preprocess
from edgeskel.data.types import SkeletonSet
from edgeskel.errors import ConfigError, DataError
from edgeskel.layouts import SkeletonLayout

STREAMS = ("joint", "bone", "motion", "bone_motion")


def drop_zero_frames(x: np.ndarray, name: str | None = None) -> np.ndarray:
    """Remove frames where every person/joint is exactly zero."""
    keep = np.any(x != 0, axis=(0, 2, 3))
    if not keep.any():
        raise DataError(None, "zero-length sequence: no frame has a non-zero joint", name)
    return x if keep.all() else x[:, keep]


def _present(x: np.ndarray) -> np.ndarray:
    """(T, M) mask: person m has a non-zero joint at frame t."""
    return np.any(x != 0, axis=(0, 2))


def person_energy(x: np.ndarray) -> np.ndarray:
    """(M,) motion energy: summed per-coordinate variance over the frames a person is present."""
    mask = _present(x).astype(np.float64)  # (T, M)
    cnt = mask.sum(0)
    safe = np.maximum(cnt, 1.0)
    w = mask[None, :, None, :]
    mean = (x * w).sum(1, keepdims=True) / safe[None, None, None, :]
    var = (((x - mean) * w) ** 2).sum(1) / safe[None, None, :]
    energy = var.sum(axis=(0, 1))
    return np.where(cnt > 1, energy, 0.0)


def select_persons(x: np.ndarray, num_person: int) -> np.ndarray:
    """Keep the `num_person` most active persons (most active first); pad with zero persons."""
    c, t, v, m = x.shape
    if m > 1:
        cnt = _present(x).sum(0)
        order = np.lexsort((np.arange(m), -cnt, -person_energy(x)))
        x = x[..., order[:num_person]]
    if x.shape[3] < num_person:
        x = np.concatenate([x, np.zeros((c, t, v, num_person - x.shape[3]), x.dtype)], axis=3)
    return x


def center(x: np.ndarray, layout: SkeletonLayout) -> np.ndarray:
    """Subtract the origin joint of person 0 at its first valid frame from every present joint."""
    present = _present(x)
    frames = np.flatnonzero(present[:, 0])
    if frames.size == 0:
        return x
    origin = x[:, frames[0], layout.origin_joint, 0]
    return np.where(present[None, :, None, :], x - origin[:, None, None, None], 0.0).astype(x.dtype)


def resample(x: np.ndarray, num_frames: int, train: bool = False, rng: np.random.Generator | None = None,
             crop: tuple[float, float] = (0.5, 1.0)) -> np.ndarray:
    """Linear-interpolate to `num_frames`; for training, first take a random crop of the sequence."""
    length = x.shape[1]
    if train:
        rng = rng if rng is not None else np.random.default_rng()
        ratio = rng.uniform(*crop)
        cl = int(np.clip(round(length * ratio), 1, length))
        start = int(rng.integers(0, length - cl + 1))
    else:
        cl, start = length, 0
    pos = start + np.linspace(0.0, cl - 1, num_frames)
    i0 = np.floor(pos).astype(np.int64)
    i1 = np.minimum(i0 + 1, length - 1)
    w = (pos - i0).astype(x.dtype)[None, :, None, None]
    return x[:, i0] * (1 - w) + x[:, i1] * w


def native_window(x: np.ndarray, num_frames: int, train: bool = False,
                  rng: np.random.Generator | None = None) -> np.ndarray:
    """At most `num_frames` consecutive frames at the source's rate: for training a random
    window, for evaluation the last one (what a stream's final decision covers)."""
    length = x.shape[1]
    if length <= num_frames:
        return x
    if train:
        rng = rng if rng is not None else np.random.default_rng()
        start = int(rng.integers(0, length - num_frames + 1))
    else:
        start = length - num_frames
    return x[:, start:start + num_frames]


def upsample_frames(x: np.ndarray, factor: int) -> np.ndarray:
    """(C, T, V, M) -> (C, factor*T, V, M): each source frame becomes `factor` frames, linear from
    the person's previous present frame to it (k/factor of the way, k = 1..factor): causal, so a
    stream computes the same frames as they arrive (edgeskel/stream/preprocess.py). A person's
    first present frame is repeated; an absent person (all zero) stays zero and does not move
    the previous frame."""
    if factor == 1:
        return x
    c, t, v, m = x.shape
    out = np.zeros((c, t * factor, v, m), dtype=x.dtype)
    steps = (np.arange(1, factor + 1, dtype=np.float32) / factor)[None, :, None]
    present = _present(x)
    for p in range(m):
        prev = None
        for j in np.flatnonzero(present[:, p]):
            cur = x[:, j, :, p]
            start = cur if prev is None else prev
            out[:, j * factor:(j + 1) * factor, :, p] = start[:, None] + steps * (cur - start)[:, None]
            prev = cur
    return out


def bones(x: np.ndarray, layout: SkeletonLayout) -> np.ndarray:
    """Bone vectors x[child] - x[parent]; joints without a parent (roots) are zero."""
    out = np.zeros_like(x)
    if layout.bones:
        child = np.array([b[0] for b in layout.bones])
        parent = np.array([b[1] for b in layout.bones])
        out[:, :, child] = x[:, :, child] - x[:, :, parent]
    return out


def motion(x: np.ndarray) -> np.ndarray:
    """Frame differences x[t+1] - x[t]; the last frame is zero."""
    out = np.zeros_like(x)
    out[:, :-1] = x[:, 1:] - x[:, :-1]
    return out


def to_stream(x: np.ndarray, layout: SkeletonLayout, stream: str) -> np.ndarray:
    if stream == "joint":
        return x
    if stream == "bone":
        return bones(x, layout)
    if stream == "motion":
        return motion(x)
    if stream == "bone_motion":
        return motion(bones(x, layout))
    raise ConfigError(f"unknown stream {stream!r}; choose one of {list(STREAMS)}")


def _augment(x: np.ndarray, rng: np.random.Generator, rotate_deg: float, scale_jitter: float) -> np.ndarray:
    if rotate_deg > 0:
        a = np.deg2rad(rng.uniform(-rotate_deg, rotate_deg, size=3))
        if x.shape[0] == 3:
            cx, sx, cy, sy, cz, sz = np.cos(a[0]), np.sin(a[0]), np.cos(a[1]), np.sin(a[1]), np.cos(a[2]), np.sin(a[2])
            rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
            ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
            rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
            r = rz @ ry @ rx
        else:
            r = np.array([[np.cos(a[2]), -np.sin(a[2])], [np.sin(a[2]), np.cos(a[2])]])
        x = np.einsum("ij,jtvm->itvm", r.astype(x.dtype), x)
    if scale_jitter > 0:
        x = x * np.float32(rng.uniform(1 - scale_jitter, 1 + scale_jitter))
    return x


def check_config(cfg: Preprocess) -> None:
    if cfg.streams not in STREAMS:
        raise ConfigError(f"preprocess.streams={cfg.streams!r}; choose one of {list(STREAMS)}")
    if cfg.num_frames < 1 or cfg.num_person < 1:
        raise ConfigError(f"preprocess needs num_frames >= 1 and num_person >= 1, got {cfg.num_frames}, {cfg.num_person}")
    if not isinstance(cfg.upsample, int) or isinstance(cfg.upsample, bool) or cfg.upsample < 1:
        raise ConfigError(f"preprocess.upsample={cfg.upsample!r}; give a whole number of frames per source frame, >= 1")
    if cfg.upsample > 1 and not cfg.native_rate:
        raise ConfigError(f"preprocess.upsample={cfg.upsample} needs native-rate clips (a resampled clip already has "
                          "num_frames frames)")


def preprocess_sample(
    x: np.ndarray, layout: SkeletonLayout, cfg: Preprocess, train: bool = False,
    rng: np.random.Generator | None = None, *, rotate_deg: float = 0.0, scale_jitter: float = 0.0,
    name: str | None = None,
) -> np.ndarray:
    """One raw sample (C, T_i, V, M_i) -> (C, num_frames, V, num_person) float32."""
    check_config(cfg)
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 4 or x.shape[0] != layout.channels or x.shape[2] != layout.num_joints:
        raise DataError(None, f"sample shape {x.shape} does not fit layout {layout.name!r} "
                        f"(C={layout.channels}, V={layout.num_joints})", name)
    if x.shape[1] == 0 or x.shape[3] == 0:
        raise DataError(None, f"zero-length sequence (shape {x.shape})", name)
    x = drop_zero_frames(x, name)
    x = select_persons(x, cfg.num_person)
    if cfg.center:
        x = center(x, layout)
    if train and (rotate_deg > 0 or scale_jitter > 0):
        x = _augment(x, rng if rng is not None else np.random.default_rng(), rotate_deg, scale_jitter)
    if cfg.native_rate:  # variable length (<= num_frames); preprocess_set pads, preprocess_list does not
        x = native_window(upsample_frames(x, cfg.upsample), cfg.num_frames, train=train, rng=rng)
    else:
        x = resample(x, cfg.num_frames, train=train, rng=rng)
    return np.ascontiguousarray(to_stream(x, layout, cfg.streams), dtype=np.float32)


def preprocess_set(sset: SkeletonSet, layout: SkeletonLayout, cfg: Preprocess) -> np.ndarray:
    """Deterministic (eval) preprocessing of a whole split -> (N, C, T, V, M) float32."""
    check_config(cfg)
    out = np.zeros((len(sset), layout.channels, cfg.num_frames, layout.num_joints, cfg.num_person), np.float32)
    for i, (x, name) in enumerate(zip(sset.samples, sset.names, strict=True)):
        clip = preprocess_sample(x, layout, cfg, train=False, name=name)
        out[i, :, : clip.shape[1]] = clip  # native rate: a shorter clip is followed by zero frames
    return out


def preprocess_list(sset: SkeletonSet, layout: SkeletonLayout, cfg: Preprocess) -> list[np.ndarray]:
    """Eval preprocessing that keeps each clip's own length (native rate: the exact input a
    stream's final decision sees; resampled clips all have num_frames)."""
    check_config(cfg)
    return [preprocess_sample(x, layout, cfg, train=False, name=name)
            for x, name in zip(sset.samples, sset.names, strict=True)]
