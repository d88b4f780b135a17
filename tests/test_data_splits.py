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


def test_validation_carved_from_test_is_disjoint_and_recorded() -> None:
    from edgeskel.data.splits import carve_validation

    ds = load_dataset("synthetic?classes=4&per_class=10&test_per_class=10&frames=16")
    carved = carve_validation(ds, "test", 0.2)
    assert len(carved.val) == 8 and len(carved.test) == 32 and len(carved.train) == len(ds.train)
    assert not set(carved.val.names) & set(carved.test.names)
    assert set(carved.val.names) | set(carved.test.names) == set(ds.test.names)
    assert np.bincount(carved.val.labels).tolist() == [2, 2, 2, 2]
    h = holdout(carved)
    assert h.val.names == carved.val.names and h.train.names == ds.train.names  # all of train trains
    assert h.info["source"] == "stratified slice of test (deployment domain)"
    assert h.info["test_samples_left"] == 32 and h.info["fraction"] == 0.2
    assert len(ds.test) == 40 and ds.val is None  # the original is untouched


def test_validation_fraction_of_train_and_refusals() -> None:
    from edgeskel.data.splits import carve_validation

    ds = load_dataset(SYN)
    h = holdout(carve_validation(ds, "train", 0.25))
    assert len(h.val) == 8 and len(h.train) == 32 and h.info["source"] == "stratified slice of train"
    assert not set(h.val.names) & set(h.train.names)
    with pytest.raises(ConfigError, match="own validation split"):
        carve_validation(carve_validation(ds, "test"), "test")
    with pytest.raises(ConfigError, match="fraction"):
        carve_validation(ds, "test", 1.0)
    with pytest.raises(ConfigError, match="'train' or 'test'"):
        carve_validation(ds, "val")
    with pytest.raises(ConfigError, match="too few test samples"):
        carve_validation(load_dataset("synthetic?classes=2&per_class=4&test_per_class=1&frames=16"), "test")


def test_recipe_validation_from_test_reaches_the_pipeline_arrays() -> None:
    """`data.validation: test`: selection arrays come from the test pool, never from the samples
    the report's accuracy is measured on; the default recipe keeps holdout's slice of train."""
    from edgeskel.checkpoint import Preprocess
    from edgeskel.pipeline import steps
    from edgeskel.recipe import Recipe

    spec = "synthetic?classes=3&per_class=8&test_per_class=10&frames=16"
    rec = Recipe.model_validate({"name": "t", "model": {"name": "stgcn"}, "data": {"spec": spec, "validation": "test", "validation_fraction": 0.3}})
    ds = steps.load_data(rec)
    arrays = steps.split_arrays(ds, Preprocess(num_frames=16, num_person=1), 8, None)
    assert len(arrays["val_y"]) == 9 and len(arrays["test_y"]) == 21
    val_rows = {r.tobytes() for r in arrays["val_x"]}
    assert not val_rows & {r.tobytes() for r in arrays["test_x"]}
    assert not val_rows & {r.tobytes() for r in arrays["calib_x"]}
    plain = steps.load_data(Recipe.model_validate({"name": "t", "model": {"name": "stgcn"}, "data": {"spec": spec}}))
    assert plain.val is None and holdout(plain).info["source"] == "stratified slice of train"


def test_train_and_eval_with_validation_from_test(tmp_path, capsys) -> None:  # noqa: ANN001
    """`edgeskel train --validation test`: the epoch is chosen on a slice of test, the stated test
    top-1 is on the rest, and `eval` on that checkpoint scores the same rest (never the slice)."""
    import json

    from edgeskel.cli import main

    spec = "synthetic?classes=3&per_class=6&test_per_class=10&frames=16"
    rc = main(["train", "--model", "stgcn", "--data", spec, "--epochs", "1", "--batch-size", "8", "--width", "0.125",
               "--frames", "16", "--validation", "test", "--validation-fraction", "0.3", "--out", str(tmp_path / "run"),
               "--json"])
    out = capsys.readouterr()
    assert rc == 0, out.err
    res = json.loads(out.out[out.out.index("{"):])
    rc = main(["eval", "--checkpoint", str(tmp_path / "run" / "best.ckpt"), "--data", spec, "--json"])
    out = capsys.readouterr()
    assert rc == 0, out.err
    ev = json.loads(out.out[out.out.index("{"):])
    assert ev["num_samples"] == 21 and ev["excluded_validation_samples"] == 9
    assert ev["top1"] == pytest.approx(res["test_top1"])
    assert main(["train", "--model", "stgcn", "--data", spec, "--epochs", "1", "--validation", "val",
                 "--out", str(tmp_path / "bad")]) == 2
    assert "'train' or 'test'" in capsys.readouterr().err
