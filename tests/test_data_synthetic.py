"""Synthetic actions: every layout, deterministic by seed, and separable by a trivial classifier."""

from __future__ import annotations

import numpy as np
import pytest

from edgeskel.checkpoint import Preprocess
from edgeskel.data import SYNTHETIC_ACTIONS, load_dataset, preprocess_set
from edgeskel.data.synthetic import joint_map
from edgeskel.errors import DataError
from edgeskel.layouts import BUILTIN_LAYOUTS, SkeletonLayout, get_layout

K20 = get_layout("kinect20")
GENERIC = SkeletonLayout("generic20", tuple(f"p{i}" for i in range(20)), K20.bones, K20.center)
GENERIC_PARTS = SkeletonLayout("generic20p", tuple(f"p{i}" for i in range(20)), K20.bones, K20.center, parts=K20.parts)
SMALL = "synthetic?per_class=12&test_per_class=8&frames=32"


def _features(x: np.ndarray) -> np.ndarray:
    """Per joint-coordinate temporal mean and spread: phase-invariant pose statistics."""
    return np.concatenate([x.mean(2).reshape(len(x), -1), x.std(2).reshape(len(x), -1)], 1)


def _nearest_centroid_accuracy(ds) -> float:  # noqa: ANN001
    cfg = Preprocess(16, 1, "joint", True)
    tr, te = _features(preprocess_set(ds.train, ds.layout, cfg)), _features(preprocess_set(ds.test, ds.layout, cfg))
    mu, sd = tr.mean(0), tr.std(0) + 1e-6
    tr, te = (tr - mu) / sd, (te - mu) / sd
    cent = np.stack([tr[ds.train.labels == c].mean(0) for c in range(ds.num_classes)])
    pred = np.argmin(((te[:, None] - cent[None]) ** 2).sum(-1), 1)
    return float((pred == ds.test.labels).mean())


@pytest.mark.parametrize("layout", sorted(BUILTIN_LAYOUTS) + [GENERIC, GENERIC_PARTS], ids=lambda x: getattr(x, "name", x))
def test_classes_separable_on_every_layout(layout) -> None:  # noqa: ANN001
    ds = load_dataset(SMALL, layout=layout)
    lay = get_layout(layout)
    assert ds.layout == lay and ds.class_names == list(SYNTHETIC_ACTIONS[:10])
    assert (len(ds.train), len(ds.test)) == (120, 80)
    assert all(s.shape[0] == lay.channels and s.shape[2] == lay.num_joints and s.shape[3] == 1 for s in ds.train.samples)
    acc = _nearest_centroid_accuracy(ds)
    assert acc >= 0.6, f"{lay.name}: nearest-centroid accuracy {acc:.2f} (chance 0.10)"


def test_default_spec_sizes_and_names() -> None:
    ds = load_dataset("synthetic")
    assert ds.layout.name == "kinect20" and (len(ds.train), len(ds.test)) == (400, 160)
    lengths = ds.train.lengths()
    assert 30 <= lengths.min() and lengths.max() <= 62 and len(set(lengths)) > 5
    assert len(SYNTHETIC_ACTIONS) >= 10 and len(set(SYNTHETIC_ACTIONS)) == len(SYNTHETIC_ACTIONS)


def test_deterministic_by_seed_and_splits_differ() -> None:
    a = load_dataset("synthetic?layout=ntu25&classes=3&per_class=2&test_per_class=2&seed=7")
    b = load_dataset("synthetic?layout=ntu25&classes=3&per_class=2&test_per_class=2&seed=7")
    c = load_dataset("synthetic?layout=ntu25&classes=3&per_class=2&test_per_class=2&seed=8")
    for x, y in zip(a.train.samples + a.test.samples, b.train.samples + b.test.samples, strict=True):
        np.testing.assert_array_equal(x, y)
    assert not any(x.shape == y.shape and np.allclose(x, y) for x, y in zip(a.train.samples, c.train.samples, strict=True))
    assert not any(x.shape == y.shape and np.allclose(x, y) for x, y in zip(a.train.samples, a.test.samples, strict=True))


def test_all_actions_and_2d_projection() -> None:
    ds = load_dataset(f"synthetic?layout=coco17&classes={len(SYNTHETIC_ACTIONS)}&per_class=1&test_per_class=1")
    assert ds.num_classes == len(SYNTHETIC_ACTIONS) and ds.train.samples[0].shape[0] == 2
    # image-style y axis: the nose (0) is above (smaller y than) the ankles (15, 16)
    s = ds.train.samples[0]
    assert (s[1, :, 0, 0] < s[1, :, 15, 0]).all()


def test_name_mapping_builtin_layouts() -> None:
    m = dict(zip(get_layout("ntu25").joints, joint_map(get_layout("ntu25")), strict=True))
    assert m["spine_base"] == "pelvis" and m["spine_shoulder"] == "chest" and m["left_hand_tip"] == "l_hand_tip"
    c = dict(zip(get_layout("coco17").joints, joint_map(get_layout("coco17")), strict=True))
    assert c["nose"] == "nose" and c["right_ear"] == "r_ear" and c["left_ankle"] == "l_ankle"
    op = SkeletonLayout("op", ("Nose", "Neck", "RShoulder", "LElbow", "MidHip"), ((1, 0), (2, 1), (3, 1), (4, 1)), 1)
    assert joint_map(op) == ["nose", "neck", "r_shoulder", "l_elbow", "pelvis"]


def test_synthetic_option_errors() -> None:
    with pytest.raises(DataError, match="classes"):
        load_dataset("synthetic?classes=99")
    with pytest.raises(DataError, match="layout"):
        load_dataset("synthetic?layout=nope")
    with pytest.raises(DataError, match="integer"):
        load_dataset("synthetic?seed=x")
