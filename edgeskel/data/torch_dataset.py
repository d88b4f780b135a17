"""`torch.utils.data.Dataset` over a `SkeletonSet` for training and evaluation."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from edgeskel.checkpoint import Preprocess
from edgeskel.data.preprocess import check_config, preprocess_sample, preprocess_set
from edgeskel.data.types import SkeletonSet
from edgeskel.layouts import SkeletonLayout


class SkeletonTorchDataset(torch.utils.data.Dataset):
    """Yields (float32 tensor (C, T, V, M), int label).

    Eval mode preprocesses every sample once (deterministic). Train mode augments on the fly
    with a generator seeded from (seed, epoch, index), so results do not depend on the number
    of DataLoader workers; call `set_epoch` each epoch for fresh augmentation.
    """

    def __init__(self, sset: SkeletonSet, layout: SkeletonLayout, cfg: Preprocess, train: bool = False,
                 seed: int = 0, rotate_deg: float = 0.0, scale_jitter: float = 0.0) -> None:
        check_config(cfg)
        self.set, self.layout, self.cfg, self.train, self.seed = sset, layout, cfg, train, seed
        self.rotate_deg, self.scale_jitter = rotate_deg, scale_jitter
        self.epoch = 0
        self._cache: np.ndarray | None = None

    @classmethod
    def for_training(cls, sset: SkeletonSet, layout: SkeletonLayout, cfg: Preprocess, train_cfg: Any) -> SkeletonTorchDataset:
        """The training set of a schedule (TrainConfig): its seed and augmentation."""
        return cls(sset, layout, cfg, train=True, seed=train_cfg.seed, rotate_deg=train_cfg.rotate_deg,
                   scale_jitter=train_cfg.scale_jitter)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.set)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        label = int(self.set.labels[i])
        if not self.train:
            if self._cache is None:
                self._cache = preprocess_set(self.set, self.layout, self.cfg)
            return torch.from_numpy(self._cache[i]), label
        rng = np.random.default_rng([self.seed, self.epoch, int(i)])
        x = preprocess_sample(self.set.samples[i], self.layout, self.cfg, train=True, rng=rng,
                              rotate_deg=self.rotate_deg, scale_jitter=self.scale_jitter, name=self.set.names[i])
        return torch.from_numpy(x), label
