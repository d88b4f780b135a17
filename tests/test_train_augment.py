"""Training augmentation is a recipe setting (train/finetune `rotate_deg`, `scale_jitter`):
every training set is built from the schedule, so the setting reaches the clips, and it is
seeded per (seed, epoch, clip)."""

from __future__ import annotations

import pytest
import torch
from pydantic import ValidationError

from edgeskel.checkpoint import Preprocess
from edgeskel.data import load_dataset
from edgeskel.data.torch_dataset import SkeletonTorchDataset
from edgeskel.train.config import TrainConfig

SYN = "synthetic?classes=2&per_class=3&test_per_class=1&frames=16"


def _clip(cfg: TrainConfig, epoch: int = 0) -> torch.Tensor:
    ds = load_dataset(SYN)
    pre = Preprocess(num_frames=16, num_person=1)
    tset = SkeletonTorchDataset.for_training(ds.train, ds.layout, pre, cfg)
    tset.set_epoch(epoch)
    return tset[0][0]


def test_augmentation_reaches_the_training_clips_and_is_seeded():
    plain = _clip(TrainConfig())
    rotated = _clip(TrainConfig(rotate_deg=30))
    assert not torch.allclose(plain, rotated)
    assert torch.equal(rotated, _clip(TrainConfig(rotate_deg=30)))  # same seed, epoch, clip: same clip
    assert not torch.equal(rotated, _clip(TrainConfig(rotate_deg=30), epoch=1))  # fresh each epoch
    scaled = _clip(TrainConfig(scale_jitter=0.2))
    assert not torch.allclose(plain, scaled)
    assert 0.7 < float(scaled.abs().mean() / plain.abs().mean()) < 1.3  # a jitter, not a different clip scale


def test_augmentation_is_validated_and_keyed_only_when_set():
    with pytest.raises(ValidationError):
        TrainConfig(scale_jitter=1.5)
    assert "rotate_deg" not in TrainConfig().model_dump()  # finished runs' stage keys stay valid
    assert TrainConfig(rotate_deg=15).model_dump()["rotate_deg"] == 15
