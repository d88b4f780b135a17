"""Shared runner helpers: artifact validation, input checks, batching for fixed-batch artifacts."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from edgeskel.errors import ExportError


def check_file(path: Path, what: str) -> Path:
    """Raise ExportError naming `path` unless it is a non-empty file."""
    path = Path(path)
    if not path.is_file():
        raise ExportError(f"{path}: {what} not found")
    if path.stat().st_size == 0:
        raise ExportError(f"{path}: {what} is empty")
    return path


def check_onnx(path: Path) -> Path:
    """onnx.checker on the file (path-based, so large models with external data work too)."""
    import onnx

    check_file(path, "ONNX model")
    try:
        onnx.checker.check_model(str(path))
    except Exception as exc:  # noqa: BLE001 - ValidationError, DecodeError, ...
        raise ExportError(f"{path}: invalid ONNX model: {str(exc).splitlines()[0]}") from None
    return path


def as_batch(batch: np.ndarray, artifact: Path) -> np.ndarray:
    """Validate an (N, C, T, V, M) input and return it as contiguous float32."""
    arr = np.asarray(batch)
    if arr.ndim != 5:
        raise ExportError(f"{artifact}: input must be (N, C, T, V, M), got shape {arr.shape}")
    return np.ascontiguousarray(arr, dtype=np.float32)


def run_chunked(fn: Callable[[np.ndarray], np.ndarray], x: np.ndarray, fixed_batch: int | None) -> np.ndarray:
    """Run `fn` on `x`; for a fixed-batch artifact split/pad `x` into chunks of that size."""
    if not fixed_batch or x.shape[0] == fixed_batch:
        return np.asarray(fn(x), dtype=np.float32)
    outs = []
    for start in range(0, x.shape[0], fixed_batch):
        chunk = x[start : start + fixed_batch]
        n = chunk.shape[0]
        if n < fixed_batch:
            pad = np.zeros((fixed_batch - n, *chunk.shape[1:]), dtype=chunk.dtype)
            chunk = np.concatenate([chunk, pad])
        outs.append(np.asarray(fn(chunk), dtype=np.float32)[:n])
    return np.concatenate(outs) if outs else np.zeros((0, 0), np.float32)
