"""Small parsing helpers shared by the readers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from edgeskel.errors import DataError
from edgeskel.io import InputRefused, max_input_bytes, read_regular_file

# Size caps per input file (MB; EDGESKEL_MAX_INPUT_MB overrides all). Far above any real file
# of the kind (an NW-UCLA json is ~100 KB, an NTU .skeleton ~1 MB), far below what would take
# the machine's memory.
TEXT_CAP_MB = 256


def read_input(path: Path, cap_mb: int = TEXT_CAP_MB) -> bytes:
    """The bytes of a regular input file under its cap; DataError for FIFOs, devices, folders,
    files over the cap, and unreadable files."""
    try:
        return read_regular_file(path, max_input_bytes(cap_mb))
    except InputRefused as exc:
        raise DataError(path, f"refused: the path {exc}") from None
    except OSError as exc:
        raise DataError(path, f"cannot read file: {exc.strerror or exc}") from None


def numeric_array(obj: Any, path: str | Path, sample: str | None, what: str) -> np.ndarray:
    """A nested list -> float32 array; refuses ragged nesting and non-numbers (strings, bools, null)."""
    try:
        arr = np.asarray(obj)
    except (ValueError, TypeError) as exc:
        raise DataError(path, f"{what} is ragged or malformed: {str(exc).splitlines()[0]}", sample) from None
    if arr.dtype.kind not in "iuf":
        kind = "ragged or mixed" if arr.dtype.kind == "O" else f"non-numeric ({arr.dtype})"
        raise DataError(path, f"{what} is {kind}", sample)
    return to_float32(arr)


def to_float32(arr: np.ndarray) -> np.ndarray:
    """Cast to float32; values beyond float32 become inf and are reported by the sample check."""
    with np.errstate(over="ignore", invalid="ignore"):
        return arr.astype(np.float32, copy=False)


def contains_bool(obj: Any) -> bool:
    """True if a nested list holds a JSON boolean (numpy would silently turn it into 0/1)."""
    if isinstance(obj, bool):
        return True
    return isinstance(obj, list) and any(contains_bool(o) for o in obj)


def read_json(path: Path) -> Any:
    """Parse a JSON file. If the text holds `true`/`false`, an object gets `__has_bool__`
    saying whether a list value contains booleans (scanning only then keeps loading fast)."""
    raw = read_input(path)
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, UnicodeDecodeError
        raise DataError(path, f"invalid JSON: {str(exc).splitlines()[0][:200]}") from None
    if (b"true" in raw or b"false" in raw) and isinstance(data, dict):
        data["__has_bool__"] = any(contains_bool(v) for v in data.values() if isinstance(v, list))
    return data


def read_text(path: Path) -> str:
    try:
        return read_input(path).decode("utf-8")
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


def read_cross_subject(req: Any, files: list[Path], name_re: Any, name_form: str, first: str,
                       test_subjects_default: str, read_clip: Any) -> tuple[int, list[int]]:
    """Shared loop of the per-clip action/subject file readers (UTD-MHAD .mat, MSR Action3D
    text): file names `a<action>_s<subject>_...` decide label and split (cross-subject protocol,
    `test_subjects` option); only the splits the command needs are read. Returns the highest
    action number seen (1-based), so a reader can tell whether its class names apply, and the
    test subjects."""
    raw = req.options.get_str("test_subjects", test_subjects_default)
    try:
        test_subjects = {int(s) for s in raw.split(",") if s.strip()}
    except ValueError:
        raise DataError(req.spec, f"test_subjects={raw!r} must be comma-separated integers") from None
    top = 0
    for path in files:
        name = path.stem
        with req.guard():
            m = name_re.match(name)
            if m is None:
                raise DataError(path, f"file name does not follow {name_form}", name)
            action, subject = int(m.group(1)), int(m.group(2))
            if action < 1:
                raise DataError(path, f"action a{m.group(1)} out of range ({first}..)", name)
            split = "test" if subject in test_subjects else "train"
            if not req.wants(split):
                req.pass_over(split)
                continue
            top = max(top, action)
            req.add(split, read_clip(path, name), action - 1, name, path)
    return top, sorted(test_subjects)
