"""Honest splits: a stratified, seeded validation slice of train (or the data's own), apart
from train and test; only the splits a command needs must exist."""

from __future__ import annotations

import numpy as np
import pytest

from edgeskel.data import load_dataset
from edgeskel.data.splits import holdout, stratified_indices
from edgeskel.errors import ConfigError

SYN = "synthetic?classes=4&per_class=10&test_per_class=3&frames=16"


def test_stratified_slice_is_seeded_disjoint_and_per_class() -> None:
    ds = load_dataset(SYN)
    a, b = holdout(ds), holdout(ds)
    assert a.val.names == b.val.names  # fixed seed
    assert not set(a.val.names) & set(a.train.names) and not set(a.val.names) & set(ds.test.names)
    assert len(a.val) + len(a.train) == len(ds.train)
    assert np.bincount(a.val.labels).tolist() == [1, 1, 1, 1]
    assert a.info == {"source": "stratified slice of train", "fraction": 0.1, "seed": 0, "samples": 4,
                      "train_samples": 36}
    assert holdout(ds, seed=1).val.names != a.val.names


def test_never_a_whole_class_and_clear_error_when_impossible() -> None:
    assert stratified_indices(np.array([0, 1, 1]), 0.9, 0).tolist() in ([1], [2])
    ds = load_dataset("synthetic?classes=2&per_class=1&test_per_class=1&frames=16")
    with pytest.raises(ConfigError, match="too few training samples"):
        holdout(ds)
