"""Small parsing helpers shared by the readers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from edgeskel.errors import DataError


def numeric_array(obj: Any, path: str | Path, sample: str | None, what: str) -> np.ndarray:
    """A nested list -> float32 array; refuses ragged nesting and non-numbers (strings, bools, null)."""
    try:
        arr = np.asarray(obj)
    except (ValueError, TypeError) as exc:
        raise DataError(path, f"{what} is ragged or malformed: {str(exc).splitlines()[0]}", sample) from None
    if arr.dtype.kind not in "iuf":
        kind = "ragged or mixed" if arr.dtype.kind == "O" else f"non-numeric ({arr.dtype})"
        raise DataError(path, f"{what} is {kind}", sample)
    return arr.astype(np.float32, copy=False)


def read_json(path: Path) -> Any:
    try:
        with open(path, "rb") as fh:
            return json.load(fh)
    except OSError as exc:
        raise DataError(path, f"cannot read file: {exc.strerror}") from None
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, UnicodeDecodeError
        raise DataError(path, f"invalid JSON: {str(exc).splitlines()[0][:200]}") from None


def read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise DataError(path, f"cannot read file: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise DataError(path, f"not a text file: {exc.reason} at byte {exc.start}") from None


def drop_empty_persons(x: np.ndarray) -> np.ndarray:
    """(C, T, V, M): drop person slots that are all zeros (padding), keeping at least one."""
    if x.ndim != 4 or x.shape[3] <= 1:
        return x
    keep = np.abs(x).reshape(-1, x.shape[3]).sum(0) > 0
    if not keep.any():
        return x[..., :1]
    return x[..., keep]


def trim_trailing_zero_frames(x: np.ndarray) -> np.ndarray:
    """(C, T, V, M): drop all-zero frames at the end (fixed-length padding), keeping >= 1 frame."""
    if x.ndim != 4 or x.shape[1] == 0:
        return x
    nz = np.flatnonzero(np.abs(x).sum(axis=(0, 2, 3)) > 0)
    return x[:, : (nz[-1] + 1 if nz.size else 1)]
