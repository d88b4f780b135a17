"""SBU Kinect Interaction reader (`sbu:DIR?fold=1`).

DIR/sXXsYY/CC/NNN/skeleton_pos.txt; each line `frame,` + 2 persons x 15 joints x (x, y, z)
as distributed (normalised). Coordinates are kept as distributed.

Folds: the standard 5-fold split over the 21 subject pairs given with the dataset and used in
the literature (e.g. Yun et al. 2012; Ji et al. 2014; the Interaction Relational Network code).
`fold=k` tests on fold k and trains on the other four.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from edgeskel.data.classes import SBU_ACTIONS
from edgeskel.data.readers.common import read_text, to_float32
from edgeskel.data.registry import ReaderResult, ReadRequest, register_reader
from edgeskel.errors import DataError
from edgeskel.layouts import OPENNI15

SBU_FOLDS: dict[int, tuple[str, ...]] = {
    1: ("s01s02", "s03s04", "s05s02", "s06s04"),
    2: ("s02s03", "s02s07", "s03s05", "s05s03"),
    3: ("s01s03", "s01s07", "s07s01", "s07s03"),
    4: ("s02s01", "s02s06", "s03s02", "s03s06"),
    5: ("s04s02", "s04s03", "s04s06", "s06s02", "s06s03"),
}
_PAIR = re.compile(r"^s\d\ds\d\d$")
_VALUES = 1 + 2 * 15 * 3


@register_reader("sbu")
def read_sbu(req: ReadRequest) -> ReaderResult:
    root = req.need_path("sbu")
    fold = req.options.get_int("fold", 1, lo=1, hi=5)
    if not root.is_dir():
        raise DataError(root, "not a directory (expected sXXsYY/CC/NNN/skeleton_pos.txt)")
    files = sorted(root.glob("*/*/*/skeleton_pos.txt"))
    if not files:
        raise DataError(root, "no sXXsYY/CC/NNN/skeleton_pos.txt files found")
    test_pairs = set(SBU_FOLDS[fold])
    req.expect_joints, req.expect_channels = OPENNI15.num_joints, 3
    unknown_pairs: set[str] = set()
    for path in files:
        rel = path.relative_to(root)
        pair, cls = rel.parts[0], rel.parts[1]
        name = "/".join(rel.parts[:3])
        with req.guard():
            if not _PAIR.match(pair):
                raise DataError(path, f"subject-pair folder {pair!r} is not sXXsYY", name)
            if not (cls.isdigit() and 1 <= int(cls) <= len(SBU_ACTIONS)):
                raise DataError(path, f"class folder {cls!r} is not 01..{len(SBU_ACTIONS):02d}", name)
            if not any(pair in p for p in SBU_FOLDS.values()):
                unknown_pairs.add(pair)
            split = "test" if pair in test_pairs else "train"
            if not req.wants(split):  # a command reads only the splits it needs
                req.pass_over(split)
                continue
            req.add(split, _read_one(path, name), int(cls) - 1, name, path)
    info = {"dataset": "sbu", "protocol": "5-fold over subject pairs", "fold": fold, "test_pairs": sorted(test_pairs)}
    if unknown_pairs:
        info["pairs_not_in_folds_used_for_training"] = sorted(unknown_pairs)
    return ReaderResult(OPENNI15, list(SBU_ACTIONS), info)


def _read_one(path: Path, name: str) -> np.ndarray:
    lines = [ln for ln in read_text(path).splitlines() if ln.strip()]
    if not lines:
        raise DataError(path, "zero-length sequence: file has no frames", name)
    rows = [ln.split(",") for ln in lines]
    for i, row in enumerate(rows):
        if len(row) != _VALUES:
            raise DataError(path, f"line {i + 1} has {len(row)} values, expected {_VALUES} (frame + 2x15x3)", name)
    try:
        arr = np.array(rows, dtype=np.float64)
    except ValueError as exc:
        raise DataError(path, f"non-numeric value: {exc}", name) from None
    coords = arr[:, 1:].reshape(len(rows), 2, 15, 3)  # T, M, V, C
    return to_float32(coords.transpose(3, 0, 2, 1))
