"""Preprocessing properties: shapes, centring, streams, resampling, zero frames, persons."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from edgeskel.checkpoint import Preprocess
from edgeskel.data import SkeletonSet, SkeletonTorchDataset, preprocess_sample, preprocess_set
from edgeskel.data.preprocess import bones, motion, person_energy, resample, select_persons
from edgeskel.errors import ConfigError, DataError
from edgeskel.layouts import BUILTIN_LAYOUTS, SkeletonLayout, get_layout

K20 = get_layout("kinect20")


def _rand(c=3, t=10, v=20, m=1, seed=0) -> np.ndarray:  # noqa: ANN001
    return np.random.default_rng(seed).normal(size=(c, t, v, m)).astype(np.float32)


@settings(max_examples=25, deadline=None)
@given(
    t=st.integers(1, 40), m_in=st.integers(1, 4), m_out=st.integers(1, 3), frames=st.integers(1, 16),
    stream=st.sampled_from(["joint", "bone", "motion", "bone_motion"]), train=st.booleans(),
    layout=st.sampled_from(sorted(BUILTIN_LAYOUTS)), seed=st.integers(0, 1000),
)
def test_output_shape_and_finite(t, m_in, m_out, frames, stream, train, layout, seed) -> None:  # noqa: ANN001
    lay = get_layout(layout)
    x = _rand(lay.channels, t, lay.num_joints, m_in, seed)
    cfg = Preprocess(num_frames=frames, num_person=m_out, streams=stream, center=True)
    y = preprocess_sample(x, lay, cfg, train=train, rng=np.random.default_rng(seed), rotate_deg=10, scale_jitter=0.1)
    assert y.shape == (lay.channels, frames, lay.num_joints, m_out) and y.dtype == np.float32
    assert np.isfinite(y).all()


def test_centering_on_origin_joint_first_valid_frame() -> None:
    x = _rand(t=6, m=2)
    x[:, 0] = 0  # first frame all zero: dropped, origin comes from the next frame
    x[:, :, :, 1] *= 0.01  # person 1 nearly static -> person 0 stays first
    y = preprocess_sample(x, K20, Preprocess(5, 2, "joint", True))
    assert np.allclose(y[:, 0, K20.origin_joint, 0], 0, atol=1e-6)
    np.testing.assert_allclose(y[:, 0, :, 0], x[:, 1, :, 0] - x[:, 1, K20.origin_joint:K20.origin_joint + 1, 0], atol=1e-5)
    # the same offset applies to the second person
    np.testing.assert_allclose(y[:, 0, 3, 1], x[:, 1, 3, 1] - x[:, 1, K20.origin_joint, 0], atol=1e-5)
    no_c = preprocess_sample(x, K20, Preprocess(5, 2, "joint", False))
    np.testing.assert_allclose(no_c[:, 0], x[:, 1], atol=1e-6)


def test_absent_person_frames_stay_zero_after_centering() -> None:
    x = _rand(t=8, m=2)
    x[:, :3, :, 1] = 0
    y = preprocess_sample(x, K20, Preprocess(8, 2, "joint", True))
    assert np.all(y[:, :3, :, 1] == 0) and np.all(y[:, 3:, :, 1] != 0)


def test_bone_stream_of_straight_chain() -> None:
    lay = SkeletonLayout("chain", tuple(f"j{i}" for i in range(5)), tuple((i, i - 1) for i in range(1, 5)), center=0)
    x = np.zeros((3, 4, 5, 1), np.float32)
    x[0, :, :, 0] = np.arange(5) * 2.0 + 1.0  # joints along x, spacing 2
    x[1] = 0.5
    b = bones(x, lay)
    assert np.all(b[0, :, 0] == 0)  # root has no parent
    assert np.allclose(b[0, :, 1:], 2.0) and np.allclose(b[1:], 0.0)
    y = preprocess_sample(x, lay, Preprocess(4, 1, "bone", True))
    assert np.allclose(y[0, :, 1:, 0], 2.0)


def test_motion_stream() -> None:
    x = np.zeros((3, 5, 20, 1), np.float32)
    x[0, :, :, 0] = np.arange(5)[:, None] * 0.5 + 1
    mo = motion(x)
    assert np.allclose(mo[0, :-1], 0.5) and np.all(mo[:, -1] == 0)
    y = preprocess_sample(x, K20, Preprocess(5, 1, "bone_motion", True))
    assert np.allclose(y, 0)  # rigid translation: bones do not move


@pytest.mark.parametrize("length", [1, 3, 17, 100])
@pytest.mark.parametrize("train", [False, True])
def test_resample_constant_sequence_is_constant(length: int, train: bool) -> None:
    x = np.broadcast_to(_rand(t=1), (3, length, 20, 1)).copy()
    y = resample(x, 16, train=train, rng=np.random.default_rng(1))
    assert y.shape == (3, 16, 20, 1)
    np.testing.assert_allclose(y, np.broadcast_to(x[:, :1], y.shape), rtol=1e-6)


def test_resample_eval_keeps_endpoints_and_is_linear() -> None:
    x = np.zeros((3, 11, 20, 1), np.float32)
    x[0] = np.arange(11, dtype=np.float32)[:, None, None]
    y = resample(x, 21)
    np.testing.assert_allclose(y[0, :, 0, 0], np.linspace(0, 10, 21), atol=1e-5)


def test_train_crop_is_random_but_seeded() -> None:
    x = np.zeros((3, 40, 20, 1), np.float32)
    x[0] = np.arange(40, dtype=np.float32)[:, None, None] + 1
    cfg = Preprocess(8, 1, "joint", False)
    a = preprocess_sample(x, K20, cfg, train=True, rng=np.random.default_rng(3))
    b = preprocess_sample(x, K20, cfg, train=True, rng=np.random.default_rng(3))
    c = [preprocess_sample(x, K20, cfg, train=True, rng=np.random.default_rng(s))[0, 0, 0, 0] for s in range(20)]
    np.testing.assert_array_equal(a, b)
    assert len(set(np.round(c, 3))) > 5
    span = a[0, -1, 0, 0] - a[0, 0, 0, 0]
    assert 0.5 * 39 - 1 <= span <= 39 + 1e-4


def test_zero_frames_dropped_and_all_zero_is_error() -> None:
    x = np.zeros((3, 6, 20, 1), np.float32)
    x[:, 2] = 1.0
    x[:, 4] = 3.0
    y = preprocess_sample(x, K20, Preprocess(3, 1, "joint", False))
    np.testing.assert_allclose(y[0, :, 0, 0], [1.0, 2.0, 3.0])
    with pytest.raises(DataError, match="zero-length"):
        preprocess_sample(np.zeros((3, 4, 20, 1), np.float32), K20, Preprocess(4, 1), name="clip7")
    with pytest.raises(DataError, match="zero-length"):
        preprocess_sample(np.zeros((3, 0, 20, 1), np.float32), K20, Preprocess(4, 1))
    with pytest.raises(DataError, match="does not fit layout"):
        preprocess_sample(np.ones((3, 4, 25, 1), np.float32), K20, Preprocess(4, 1))


def test_select_persons_keeps_most_active_and_pads() -> None:
    x = _rand(t=12, m=3)
    x[..., 0] *= 0.01
    x[..., 2] *= 5
    e = person_energy(x)
    assert e[2] > e[1] > e[0]
    y = select_persons(x, 2)
    np.testing.assert_array_equal(y[..., 0], x[..., 2])
    np.testing.assert_array_equal(y[..., 1], x[..., 1])
    z = select_persons(x[..., :1], 3)
    assert z.shape[3] == 3 and np.all(z[..., 1:] == 0)


def test_bad_stream_is_config_error() -> None:
    with pytest.raises(ConfigError, match="streams"):
        preprocess_sample(_rand(), K20, Preprocess(4, 1, "velocity"))


def test_preprocess_set_and_torch_dataset() -> None:
    samples = [_rand(t=5 + i, seed=i) for i in range(4)]
    sset = SkeletonSet(samples, np.array([0, 1, 0, 1]), [f"s{i}" for i in range(4)])
    cfg = Preprocess(8, 2, "joint", True)
    arr = preprocess_set(sset, K20, cfg)
    assert arr.shape == (4, 3, 8, 20, 2)
    ev = SkeletonTorchDataset(sset, K20, cfg, train=False)
    x, y = ev[2]
    assert isinstance(x, torch.Tensor) and x.dtype == torch.float32 and y == 0
    np.testing.assert_array_equal(x.numpy(), arr[2])
    tr = SkeletonTorchDataset(sset, K20, cfg, train=True, seed=5, rotate_deg=10, scale_jitter=0.1)
    a1, _ = tr[1]
    a2, _ = tr[1]
    torch.testing.assert_close(a1, a2)  # same (seed, epoch, index) -> same augmentation
    tr.set_epoch(1)
    assert not torch.equal(a1, tr[1][0])
    loader = torch.utils.data.DataLoader(tr, batch_size=2)
    xb, yb = next(iter(loader))
    assert xb.shape == (2, 3, 8, 20, 2) and yb.tolist() == [0, 1]
