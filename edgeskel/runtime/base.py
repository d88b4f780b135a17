"""The one interface every backend implements (as Polygraphy's runners do).

Validation, parity checks and benchmarks only talk to `Runner`s, so a new backend is one new
file in `edgeskel/runtime/` plus a registry entry.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np


class Runner(ABC):
    """Runs one artifact. `infer` takes a float32 (N, C, T, V, M) batch and returns (N, K) logits."""

    backend: str = ""

    def __init__(self, artifact: str | Path, precision: str = "fp32", threads: int | None = None, **options: Any):
        self.artifact = Path(artifact)
        self.precision = precision
        self.threads = threads
        self.options = options

    @abstractmethod
    def load(self) -> Runner:
        """Load the artifact (compile, allocate); returns self for chaining."""

    @abstractmethod
    def infer(self, batch: np.ndarray) -> np.ndarray:
        """Run one batch; returns float32 logits."""

    def raw(self) -> Callable[[np.ndarray], np.ndarray]:
        """The loaded backend's call without the (N, C, T, V, M) checks and batching: what the
        layer latency table times (a layer's input is (N*M, C, T, V) or (N, L, C))."""
        raise NotImplementedError(f"{type(self).__name__} has no raw timing path")

    def close(self) -> None:  # noqa: B027 - optional hook
        """Free resources."""

    def __enter__(self) -> Runner:
        return self.load()

    def __exit__(self, *exc: object) -> None:
        self.close()


_RUNNERS: dict[str, Callable[..., Runner]] = {}


def register_runner(name: str) -> Callable[[type[Runner]], type[Runner]]:
    def deco(cls: type[Runner]) -> type[Runner]:
        cls.backend = name
        _RUNNERS[name] = cls
        return cls

    return deco
