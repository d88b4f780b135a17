"""Kinect-era MATLAB skeletons, UTD-MHAD style (`utd-mhad:DIR[?var=d_skel&test_subjects=2,4,6,8]`).

Files `aA_sS_tT_skeleton.mat` (action A, subject S, trial T) anywhere below DIR, each holding a
(V, C, T) array `d_skel` (20 joints x xyz x frames for UTD-MHAD; another variable with `var`).
Read with `scipy.io.loadmat` (MATLAB v4-v7.2 files; v7.3 is HDF5 and is refused with a hint).
Standard cross-subject protocol: odd subjects train, even subjects test (`test_subjects`).
Joints are in UTD-MHAD's order (layout `utd20`); other data in this container can pass `--layout`.
"""

from __future__ import annotations

import io
import re
from pathlib import Path

import numpy as np

from edgeskel.data.classes import UTD_MHAD_ACTIONS
from edgeskel.data.readers.common import read_cross_subject, read_input, to_float32
from edgeskel.data.registry import ReaderResult, ReadRequest, register_reader
from edgeskel.errors import DataError
from edgeskel.layouts import UTD20

_NAME = re.compile(r"^a(\d+)_s(\d+)_t(\d+)(?:_skeleton)?$", re.IGNORECASE)
MAT_CAP_MB = 64  # a UTD-MHAD skeleton file is ~20 KB


@register_reader("utd-mhad")
def read_kinect_mat(req: ReadRequest) -> ReaderResult:
    root = req.need_path("utd-mhad")
    var = req.options.get_str("var", "d_skel")
    files = [root] if root.is_file() else sorted(root.rglob("*.mat"))
    if not files:
        raise DataError(root, "no .mat files found")
    lay = req.layout or UTD20
    top, test_subjects = read_cross_subject(req, files, _NAME, "aA_sS_tT_skeleton.mat", "a1", "2,4,6,8",
                                            lambda path, name: read_mat_skeleton(path, var, name))
    names = list(UTD_MHAD_ACTIONS) if top <= len(UTD_MHAD_ACTIONS) else None
    info = {"dataset": "utd-mhad", "protocol": f"cross-subject (test subjects {test_subjects})",
            "variable": var, "test_subjects": test_subjects}
    return ReaderResult(lay if req.layout is None else None, names, info)


def read_mat_skeleton(path: Path, var: str = "d_skel", name: str | None = None) -> np.ndarray:
    """One .mat file -> (C, T, V, 1) float32 from its (V, C, T) variable `var`."""
    from scipy.io import loadmat
    from scipy.io.matlab import MatReadError

    raw = read_input(path, MAT_CAP_MB)
    if raw[:8] == b"\x89HDF\r\n\x1a\n" or raw[128:136] == b"\x89HDF\r\n\x1a\n":
        raise DataError(path, "MATLAB v7.3 (HDF5) file: not supported; re-save it with save(..., '-v7')", name)
    try:
        doc = loadmat(io.BytesIO(raw), variable_names=[var])
    except (MatReadError, ValueError, TypeError, OSError, NotImplementedError, EOFError) as exc:
        raise DataError(path, f"not a readable MATLAB file: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}",
                        name) from None
    if var not in doc:
        raise DataError(path, f"no variable {var!r} in the .mat file (pass ?var=NAME)", name)
    arr = doc[var]
    if not isinstance(arr, np.ndarray) or arr.dtype.kind not in "iuf":
        raise DataError(path, f"{var!r} is not a numeric array", name)
    if arr.ndim != 3 or arr.shape[1] not in (2, 3):
        raise DataError(path, f"{var!r} has shape {arr.shape}; expected (joints, 3, frames)", name)
    return to_float32(arr.transpose(1, 2, 0))[..., None]  # (V, C, T) -> (C, T, V, 1)
