"""Runners: one file per backend, one interface (`edgeskel.runtime.base.Runner`).

Importing this package registers the built-in runners; `get_runner` lives here (not in `base`)
so the base module never imports the package that imports it."""

from pathlib import Path
from typing import Any

from edgeskel.errors import ConfigError
from edgeskel.runtime import openvino, ort, tensorrt, torch_runner  # noqa: F401 - register runners
from edgeskel.runtime.base import _RUNNERS, Runner, register_runner


def get_runner(backend: str, artifact: str | Path, **kwargs: Any) -> Runner:
    if backend not in _RUNNERS:
        raise ConfigError(f"unknown backend {backend!r}; available: {', '.join(sorted(_RUNNERS))}")
    return _RUNNERS[backend](artifact, **kwargs)


def available_runners() -> list[str]:
    return sorted(_RUNNERS)


__all__ = ["Runner", "available_runners", "get_runner", "register_runner"]
