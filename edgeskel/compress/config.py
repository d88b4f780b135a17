"""Compression settings: the rank policy is data, validated here and recorded in every report."""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import ConfigDict, Field, field_validator

from edgeskel.keyed_model import KeyedModel

Fraction = Annotated[float, Field(gt=0.0, le=1.0)]

# Classifier heads (CTR-GCN/Hyperformer `fc`, ST-GCN `fcn`, PYSKL `cls_head.fc_cls`) and the
# input normalisation stay dense: they are small and accuracy-critical.
DEFAULT_EXCLUDE = ["fc", "*.fc", "fcn", "*.fcn", "*fc_cls", "head", "*.head", "data_bn", "*.data_bn"]


class CompressionConfig(KeyedModel):
    """How to pick ranks and which layers to factorize.

    policy:   'fixed' keeps `ratio` of each layer's full rank; 'energy' keeps the smallest rank
              holding `energy` of sum(sigma^2); 'budget' keeps `budget` of the whole model's
              `target` (params or FLOPs), allocating ranks across layers by sensitivity;
              'latency' picks, per layer, the admissible form (dense, or a rank keeping at least
              `energy`) with the lowest latency MEASURED on `latency_backend` (latency_table.py);
              a factorized form must beat dense by `latency_min_gain` or the layer stays dense.
    temporal_method: how k x 1 convs are factorized; 'auto' decomposes both ways and keeps
              the lower error at equal (or lower) FLOPs.
    data_aware: whiten the SVD with calibration input statistics (needs `calib` batches).
    min_params / min_saving: layers smaller than min_params weights, or whose factorization
              would not cut at least min_saving of their FLOPs, are left dense (reason recorded).
    """

    model_config = ConfigDict(extra="forbid")
    ADDED_FIELDS: ClassVar[frozenset[str]] = frozenset({"latency_on"})  # keys of older runs stay valid

    policy: Literal["fixed", "energy", "budget", "latency"] = "fixed"
    ratio: Fraction = 0.5
    energy: Fraction = 0.9
    target: Literal["params", "flops"] = "params"
    budget: Fraction = 0.5
    data_aware: bool = False
    calib_batches: Annotated[int, Field(ge=1)] = 8
    rank_multiple: Annotated[int, Field(ge=1)] = 8
    temporal_method: Literal["tucker2", "svd", "auto"] = "auto"
    include: list[str] = Field(default_factory=lambda: ["*"])
    exclude: list[str] = Field(default_factory=lambda: list(DEFAULT_EXCLUDE))
    min_params: Annotated[int, Field(ge=0)] = 1024
    min_saving: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.1
    damping: Annotated[float, Field(gt=0.0, le=1.0)] = 1e-5  # relative Cholesky damping (data-aware)
    max_positions: Annotated[int, Field(ge=16)] = 4096  # im2col rows sampled per calibration call
    seed: int = 0
    # policy 'latency' only (edgeskel tune writes these from the device profile):
    latency_backend: str = "ort"  # a backend with `layer_timing` (edgeskel/backends/)
    latency_threads: Annotated[int, Field(ge=1)] | None = None
    latency_batch_sizes: list[Annotated[int, Field(ge=1)]] = Field(default_factory=lambda: [1])
    latency_profile: str = "local"  # device profile name: part of the cache key
    # where the table is timed: 'host' = this machine; 'device' = on `latency_profile`'s SSH device by
    # the device runner (that profile must be the run's device: `make export DEVICE=...`, `edgeskel tune`)
    latency_on: Literal["host", "device"] = "host"
    latency_cache: str | None = None  # JSON cache of measured layer latencies (reused); None = not kept
    latency_min_gain: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.05
    latency_candidates: Annotated[int, Field(ge=1)] = 4  # ranks timed per layer (plus dense)

    @field_validator("latency_backend", mode="before")
    @classmethod
    def _timed_backend(cls, v: object) -> object:
        from edgeskel.backends import check_choice

        return check_choice(v, layer_timing=True)
