"""Honest splits: train / validation / test kept apart.

Every choice made while building a model (best epoch, factorized vs fine-tuned, rank search,
calibration, INT8 gates) is made on the validation split; the test split is only ever used
for the accuracy a report states, so that number is not chosen on the data it is measured on.
The validation split is the one the data gives (`Dataset.val`), or a stratified slice of the
training split with a fixed seed; `Holdout.info` says which, and goes into manifests.

When the test split is the deployment domain and the training split is not (NW-UCLA cross-view:
test = an unseen camera view), a slice of train cannot see what a model loses under that shift
(docs/BENCHMARKS.md, tune on ST-GCN). `carve_validation(ds, 'test')` carves the validation split out of
the test split instead (a recipe's `data.validation: test`): selection then sees the deployment
domain, and the accuracy a report states is on the remaining test samples only.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from edgeskel.data.types import Dataset, SkeletonSet
from edgeskel.errors import ConfigError

DEFAULT_FRACTION = 0.1
DEFAULT_SEED = 0
FROM_TEST = "stratified slice of test (deployment domain)"  # Holdout.info["source"]; checkpoints record it


@dataclass
class Holdout:
    """Training samples (without the validation ones), validation samples, and how they were made."""

    train: SkeletonSet
    val: SkeletonSet
    info: dict[str, Any] = field(default_factory=dict)


def stratified_indices(labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Sorted indices of a per-class `fraction` of `labels` (at least one per class that has two
    or more samples, never a whole class), drawn with a fixed seed."""
    rng = np.random.default_rng(seed)
    picked: list[int] = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        if len(idx) < 2:
            continue
        n = min(len(idx) - 1, max(1, int(round(fraction * len(idx)))))
        picked.extend(rng.permutation(idx)[:n].tolist())
    return np.array(sorted(picked), dtype=np.int64)


def holdout(ds: Dataset, fraction: float = DEFAULT_FRACTION, seed: int = DEFAULT_SEED) -> Holdout:
    """The validation split for model selection: the data's own, else a stratified slice of train."""
    if ds.val is not None and len(ds.val):
        if "validation_from_test" in ds.info:
            info = {"source": FROM_TEST, **ds.info["validation_from_test"]}
        elif "validation_from_train" in ds.info:
            info = {"source": "stratified slice of train", **ds.info["validation_from_train"]}
        else:
            info = {"source": "given by the data"}
        return Holdout(ds.train, ds.val, {**info, "samples": len(ds.val), "train_samples": len(ds.train)})
    carved = carve_validation(ds, "train", fraction, seed)
    return holdout(carved)


def requested_validation(ds: Dataset, source: str = "train", fraction: float | None = None) -> Dataset:
    """What a recipe or `train --validation` asks for: the default (a 10% slice of train) is left
    to `holdout`, so existing run caches and checkpoints see the same dataset; anything else is carved."""
    if source == "train" and fraction in (None, DEFAULT_FRACTION):
        return ds
    return carve_validation(ds, source, DEFAULT_FRACTION if fraction is None else fraction)


def carve_validation(ds: Dataset, source: str = "test", fraction: float = DEFAULT_FRACTION,
                     seed: int = DEFAULT_SEED) -> Dataset:
    """`ds` with a stratified `fraction` of its `source` split ('train' or 'test') moved into the
    validation split; the source keeps the rest, so no sample is both chosen on and reported on
    (or trained on). `holdout` then uses it and says where it came from."""
    if source not in ("train", "test"):
        raise ConfigError(f"validation source must be 'train' or 'test', got {source!r}")
    if ds.val is not None and len(ds.val):
        raise ConfigError(f"{ds.spec}: the data gives its own validation split; drop data.validation / "
                          "data.validation_fraction (or the data's validation split)")
    if not 0.0 < fraction < 1.0:
        raise ConfigError(f"validation fraction must be in (0, 1), got {fraction}")
    part = ds.test if source == "test" else ds.train
    if not len(part):
        raise ConfigError(f"{ds.spec}: a validation split from {source} needs a {source} split, and this data has none")
    idx = stratified_indices(part.labels, fraction, seed)
    if len(idx) == 0:
        raise ConfigError(f"{ds.spec}: too few {'training' if source == 'train' else 'test'} samples to hold out "
                          "a validation split (every class has < 2); give a validation split with the data")
    rest = part.subset(np.setdiff1d(np.arange(len(part)), idx))
    note = {"fraction": fraction, "seed": seed, **({"test_samples_left": len(rest)} if source == "test" else {})}
    changed = {"test": rest} if source == "test" else {"train": rest}
    return replace(ds, val=part.subset(idx), **changed, info={**ds.info, f"validation_from_{source}": note})
