"""Training / fine-tuning schedule, validated with pydantic (recipes embed it)."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import ConfigDict, Field

from edgeskel.keyed_model import KeyedModel


class TrainConfig(KeyedModel):
    """Optimiser and schedule. Defaults follow CTR-GCN's recipe (SGD+Nesterov, warm-up) scaled
    down for CPU; distillation is off unless `kd_weight > 0` (fine-tuning after compression)."""

    model_config = ConfigDict(extra="forbid")
    ADDED_FIELDS: ClassVar[frozenset[str]] = frozenset({"rotate_deg", "scale_jitter"})  # keys of older runs stay valid

    epochs: int = Field(30, ge=0, le=10_000)
    batch_size: int = Field(16, ge=1, le=4096)
    optimizer: Literal["sgd", "adamw"] = "sgd"
    lr: float = Field(0.1, gt=0, le=10)
    momentum: float = Field(0.9, ge=0, lt=1)
    weight_decay: float = Field(4e-4, ge=0, le=1)
    warmup_epochs: float = Field(2, ge=0)
    min_lr_ratio: float = Field(0.0, ge=0, le=1)
    label_smoothing: float = Field(0.1, ge=0, lt=1)
    kd_weight: float = Field(0.0, ge=0, le=1, description="weight of the distillation loss (0 = off)")
    kd_temperature: float = Field(4.0, gt=0)
    seed: int = 0
    eval_batch_size: int = Field(64, ge=1)
    threads: int | None = Field(None, ge=1, description="torch intra-op threads (default: all cores)")
    # training-time augmentation of each clip (fresh per epoch, seeded): small datasets such as SBU
    # (227 clips) overfit their few subjects without it
    rotate_deg: float = Field(0.0, ge=0, le=180, description="random rotation about each axis, +/- degrees (0 = off)")
    scale_jitter: float = Field(0.0, ge=0, lt=1, description="random uniform scale 1 +/- this (0 = off)")
