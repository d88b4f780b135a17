"""Containers every reader fills: one `SkeletonSet` per split, wrapped in a `Dataset`.

Samples stay variable-length (C, T_i, V, M_i) float32 so preprocessing (fixed T, M, streams)
is decided later by the model's `Preprocess`, not baked in at read time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgeskel.layouts import SkeletonLayout


@dataclass
class SkeletonSet:
    """One split: samples (C, T_i, V, M_i) float32, 0-based int64 labels, sample ids."""

    samples: list[np.ndarray]
    labels: np.ndarray
    names: list[str]

    def __post_init__(self) -> None:
        self.labels = np.asarray(self.labels, dtype=np.int64).reshape(-1)
        if not (len(self.samples) == len(self.labels) == len(self.names)):
            raise ValueError(
                f"SkeletonSet: {len(self.samples)} samples, {len(self.labels)} labels, {len(self.names)} names"
            )

    def __len__(self) -> int:
        return len(self.samples)

    def lengths(self) -> np.ndarray:
        """Frames per sample (T_i)."""
        return np.array([s.shape[1] for s in self.samples], dtype=np.int64)

    def persons(self) -> np.ndarray:
        """Person slots per sample (M_i)."""
        return np.array([s.shape[3] for s in self.samples], dtype=np.int64)

    def subset(self, idx: list[int] | np.ndarray) -> SkeletonSet:
        idx = [int(i) for i in idx]
        return SkeletonSet([self.samples[i] for i in idx], self.labels[idx], [self.names[i] for i in idx])


@dataclass
class Dataset:
    """A train/test pair (and a validation split if the data gives one) with its layout and
    class names, as read from one spec. A split the caller did not ask for may be empty."""

    spec: str
    layout: SkeletonLayout
    class_names: list[str]
    train: SkeletonSet
    test: SkeletonSet
    skipped: list[tuple[str, str]] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)
    val: SkeletonSet | None = None  # a user-given validation split (else one is sliced from train)
    warnings: list[str] = field(default_factory=list)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)
