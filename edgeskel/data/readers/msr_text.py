"""MSR Action3D skeleton text files (`msr-action3d:DIR[?test_subjects=2,4,6,8,10]`).

Files `aAA_sSS_eEE_skeleton3D.txt` (or `_skeleton.txt`): whitespace-separated rows of
`x y z confidence`, 20 rows (joints) per frame. The older release starts with a `frames joints`
line and gives each frame a row count followed by world rows then screen rows; both are read
(world coordinates kept). Standard cross-subject protocol: odd subjects train, even test.
MSR's joint order differs between releases and from Kinect SDK order: the layout defaults to
the 20-joint built-in, and the layout fit check warns when the order does not fit; pass the
right one with `--layout` (docs/DATA.md).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from edgeskel.data.classes import MSR_ACTION3D_ACTIONS
from edgeskel.data.readers.common import read_cross_subject, read_text, to_float32
from edgeskel.data.registry import ReaderResult, ReadRequest, register_reader
from edgeskel.errors import DataError

_NAME = re.compile(r"^a(\d+)_s(\d+)_e(\d+)_skeleton(?:3d)?$", re.IGNORECASE)
JOINTS = 20


@register_reader("msr-action3d")
def read_msr(req: ReadRequest) -> ReaderResult:
    root = req.need_path("msr-action3d")
    files = [root] if root.is_file() else sorted(root.rglob("*.txt"))
    files = [f for f in files if _NAME.match(f.stem)] if not root.is_file() else files
    if not files:
        raise DataError(root, "no aAA_sSS_eEE_skeleton3D.txt files found")
    req.expect_joints = JOINTS
    top, test_subjects = read_cross_subject(req, files, _NAME, "aAA_sSS_eEE_skeleton3D.txt", "a01", "2,4,6,8,10",
                                            read_msr_file)
    names = list(MSR_ACTION3D_ACTIONS) if top <= len(MSR_ACTION3D_ACTIONS) else None
    info = {"dataset": "msr-action3d", "protocol": f"cross-subject (test subjects {test_subjects})",
            "test_subjects": test_subjects}
    return ReaderResult(None, names, info)


def read_msr_file(path: Path, name: str | None = None) -> np.ndarray:
    """One file -> (3, T, 20, 1) float32."""
    rows = [ln.split() for ln in read_text(path).splitlines() if ln.strip()]
    if not rows:
        raise DataError(path, "zero-length sequence: empty file", name)
    if len(rows[0]) == 2:  # older release: "frames joints", then per frame a row count + world + screen rows
        rows = _world_rows(rows, path, name)
    bad = next((i for i, r in enumerate(rows) if len(r) != 4), None)
    if bad is not None:
        raise DataError(path, f"line {bad + 1} has {len(rows[bad])} values, expected 4 (x y z confidence)", name)
    if len(rows) % JOINTS:
        raise DataError(path, f"{len(rows)} joint rows is not a multiple of {JOINTS} (joints per frame)", name)
    try:
        arr = np.array(rows, dtype=np.float64)
    except ValueError as exc:
        raise DataError(path, f"non-numeric value: {exc}", name) from None
    xyz = arr[:, :3].reshape(-1, JOINTS, 3)  # (T, V, C)
    return to_float32(xyz.transpose(2, 0, 1))[..., None]


def _world_rows(rows: list[list[str]], path: Path, name: str | None) -> list[list[str]]:
    try:
        frames, joints = int(rows[0][0]), int(rows[0][1])
    except ValueError:
        raise DataError(path, "header line is not 'frames joints'", name) from None
    if joints != JOINTS:
        raise DataError(path, f"header says {joints} joints; MSR Action3D has {JOINTS}", name)
    out, pos = [], 1
    for t in range(frames):
        if pos >= len(rows) or len(rows[pos]) != 1 or not rows[pos][0].isdigit():
            raise DataError(path, f"frame {t}: expected a row count line", name)
        count = int(rows[pos][0])
        if count < joints or pos + 1 + count > len(rows):
            raise DataError(path, f"frame {t}: truncated ({count} rows announced)", name)
        out += rows[pos + 1 : pos + 1 + joints]  # world coordinates first, screen coordinates after
        pos += 1 + count
    return out
