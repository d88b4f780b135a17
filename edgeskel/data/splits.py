"""Honest splits: train / validation / test kept apart.

Every choice made while building a model (best epoch, factorized vs fine-tuned, rank search,
calibration, INT8 gates) is made on the validation split; the test split is only ever used
for the accuracy a report states, so that number is not chosen on the data it is measured on.
The validation split is the one the data gives (`Dataset.val`), or a stratified slice of the
training split with a fixed seed; `Holdout.info` says which, and goes into manifests.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgeskel.data.types import Dataset, SkeletonSet
from edgeskel.errors import ConfigError

DEFAULT_FRACTION = 0.1
DEFAULT_SEED = 0


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
        return Holdout(ds.train, ds.val, {"source": "given by the data", "samples": len(ds.val),
                                          "train_samples": len(ds.train)})
    if not 0.0 < fraction < 1.0:
        raise ConfigError(f"validation fraction must be in (0, 1), got {fraction}")
    idx = stratified_indices(ds.train.labels, fraction, seed)
    if len(idx) == 0:
        raise ConfigError(f"{ds.spec}: too few training samples to hold out a validation split "
                          "(every class has < 2); give a validation split with the data")
    rest = np.setdiff1d(np.arange(len(ds.train)), idx)
    return Holdout(ds.train.subset(rest), ds.train.subset(idx),
                   {"source": "stratified slice of train", "fraction": fraction, "seed": seed,
                    "samples": int(len(idx)), "train_samples": int(len(rest))})
