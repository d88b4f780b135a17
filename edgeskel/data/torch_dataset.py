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
                 seed: int = 0, rotate_deg: float = 0.0, scale_jitter: float = 0.0,
                 teacher_cfg: Preprocess | None = None) -> None:
        check_config(cfg)
        self.set, self.layout, self.cfg, self.train, self.seed = sset, layout, cfg, train, seed
        # teacher_cfg (training only): each item also carries the same clip as a distillation
        # teacher was trained to see it (e.g. the whole clip resampled to its T, for a student
        # learning native-rate windows), augmented identically: (x, label, x_teacher)
        self.teacher_cfg = teacher_cfg
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

    # -- native-rate clips have their own lengths: batches of similar length, cropped to the shortest
    def batch_sampler(self, generator: torch.Generator, batch: int, drop_last: bool, rank: int,
                      world: int) -> torch.utils.data.Sampler[list[int]] | None:
        """None for fixed-length clips (the trainer's default sampler applies)."""
        if not (self.train and self.cfg.native_rate):
            return None
        lengths = np.minimum(self.set.lengths() * self.cfg.upsample, self.cfg.num_frames)
        return LengthBatchSampler(lengths, batch, drop_last, rank, world, generator)

    def collate(self, items: list[tuple[Any, ...]]) -> tuple[torch.Tensor, ...]:
        """Stack a batch; clips of different lengths are cut to the shortest (their first frames:
        each clip already is a random window of the sequence). Teacher views have a fixed T."""
        short = min(it[0].shape[1] for it in items)
        batch = (torch.stack([it[0][:, :short] for it in items]), torch.tensor([it[1] for it in items]))
        return batch + ((torch.stack([it[2] for it in items]),) if len(items[0]) > 2 else ())

    def __getitem__(self, i: int) -> tuple[Any, ...]:
        label = int(self.set.labels[i])
        if not self.train:
            if self._cache is None:
                self._cache = preprocess_set(self.set, self.layout, self.cfg)
            return torch.from_numpy(self._cache[i]), label
        views = []
        for cfg in (self.cfg, self.teacher_cfg) if self.teacher_cfg is not None else (self.cfg,):
            # the same seed for both views: augmentation draws first, so the rotation/scale match
            rng = np.random.default_rng([self.seed, self.epoch, int(i)])
            views.append(torch.from_numpy(preprocess_sample(self.set.samples[i], self.layout, cfg, train=True, rng=rng,
                                                            rotate_deg=self.rotate_deg, scale_jitter=self.scale_jitter,
                                                            name=self.set.names[i])))
        return (views[0], label, *views[1:])


class LengthBatchSampler(torch.utils.data.Sampler[list[int]]):
    """Global batches of clips of similar length, in random order; rank r of `world` takes
    slice r of each (as the trainer's GlobalBatchSampler). Sorting a random permutation by
    length breaks ties at random, so batches differ from epoch to epoch."""

    def __init__(self, lengths: np.ndarray, batch: int, drop_last: bool, rank: int, world: int,
                 generator: torch.Generator) -> None:
        self.lengths, self.batch, self.drop_last = np.asarray(lengths), int(batch), drop_last
        self.rank, self.world, self.generator = rank, world, generator

    def _batches(self) -> list[list[int]]:
        perm = torch.randperm(len(self.lengths), generator=self.generator).tolist()
        order = sorted(perm, key=lambda i: int(self.lengths[i]))
        out = [order[i:i + self.batch] for i in range(0, len(order), self.batch)]
        if out and self.drop_last and len(out[-1]) < self.batch:
            out.pop()
        return [out[int(j)] for j in torch.randperm(len(out), generator=self.generator)]

    def __iter__(self):
        step = self.batch // self.world
        for b in self._batches():
            if len(b) == self.batch:
                yield b[self.rank * step:(self.rank + 1) * step]
            else:
                yield np.array_split(np.asarray(b), self.world)[self.rank].tolist()

    def __len__(self) -> int:
        n = len(self.lengths)
        return n // self.batch if self.drop_last else -(-n // self.batch)
