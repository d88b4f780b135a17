"""NTU-scale memory (issue 19): CTR-GCN .npz files are memory-mapped and samples copied out;
the pipeline preprocesses only the calibration subset of the training split."""

from __future__ import annotations

import numpy as np

from edgeskel.data import load_dataset


def _ctrgcn_arrays(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(N, 300, M*V*C) zero-padded like CTR-GCN's seq_transformation output, one-hot labels."""
    x = np.zeros((n, 300, 2 * 25 * 3), np.float32)
    for i in range(n):
        t, m = int(rng.integers(20, 120)), 1 + i % 2
        x[i, :t, : m * 75] = rng.standard_normal((t, m * 75))
    y = np.eye(5, dtype=np.float32)[rng.integers(0, 5, n)]
    return x, y


def test_uncompressed_npz_is_memory_mapped_and_matches_the_in_memory_read(tmp_path):
    rng = np.random.default_rng(0)
    xtr, ytr = _ctrgcn_arrays(rng, 12)
    xte, yte = _ctrgcn_arrays(rng, 6)
    np.savez(tmp_path / "plain.npz", x_train=xtr, y_train=ytr, x_test=xte, y_test=yte)
    np.savez_compressed(tmp_path / "packed.npz", x_train=xtr, y_train=ytr, x_test=xte, y_test=yte)

    from edgeskel.data.readers import ctrgcn

    mapped = ctrgcn._map_stored_members(tmp_path / "plain.npz")
    assert mapped is not None and isinstance(mapped["x_train"], np.memmap)
    np.testing.assert_array_equal(mapped["x_train"], xtr)
    assert ctrgcn._map_stored_members(tmp_path / "packed.npz") is None  # compressed: read whole

    a = load_dataset(f"ctrgcn:{tmp_path / 'plain.npz'}")
    b = load_dataset(f"ctrgcn:{tmp_path / 'packed.npz'}")
    for part in ("train", "test"):
        sa, sb = getattr(a, part), getattr(b, part)
        assert len(sa) == len(sb) > 0
        np.testing.assert_array_equal(sa.labels, sb.labels)
        for xa, xb in zip(sa.samples, sb.samples, strict=True):
            np.testing.assert_array_equal(xa, xb)
            assert xa.shape[1] < 300  # padding trimmed
            base = xa
            while base is not None:  # no sample keeps the mapped file alive
                assert not isinstance(base, np.memmap)
                base = base.base


def test_calibration_arrays_are_the_subset_of_the_whole_training_split():
    """split_arrays preprocesses only the calibration samples, with the same indices and values
    as preprocessing all of train and slicing (what it did before)."""
    from edgeskel.checkpoint import Preprocess
    from edgeskel.data.splits import holdout
    from edgeskel.pipeline.steps import split_arrays
    from edgeskel.train.api import prepare_arrays

    ds = load_dataset("synthetic?classes=4&per_class=10&test_per_class=2&frames=16")
    pre = Preprocess(num_frames=16, num_person=1)
    arrays = split_arrays(ds, pre, calib_samples=7, val_cap=None)
    whole, _ = prepare_arrays(holdout(ds).train, ds.layout, pre)
    idx = np.sort(np.random.default_rng(1).permutation(len(whole))[:7])
    np.testing.assert_array_equal(arrays["calib_x"], whole[idx])
