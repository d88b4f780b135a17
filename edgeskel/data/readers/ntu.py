"""NTU RGB+D raw `.skeleton` reader (`ntu:DIR?benchmark=xsub|xview|xset`).

Text format per file: frame count; per frame a body count; per body a 10-value info line
(bodyID first), a joint count (25) and one 12-value line per joint (x, y, z, depth/colour
coords, orientation, tracking state). Only x, y, z are kept.

Bodies are tracked by bodyID; when more than `bodies` (default 2) appear, the most active
ones (largest summed per-joint variance over time, as CTR-GCN's data_gen) are kept, most
active first. File names SsssCcccPpppRrrrAaaa give setup, camera, subject and action.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from edgeskel.data.classes import ntu_class_names
from edgeskel.data.readers.common import read_text
from edgeskel.data.registry import ReaderResult, ReadRequest, register_reader
from edgeskel.errors import DataError
from edgeskel.layouts import NTU25

# Cross-subject training subjects (NTU-120 list; its first 20 entries are NTU-60's list).
XSUB_TRAIN_SUBJECTS = frozenset({
    1, 2, 4, 5, 8, 9, 13, 14, 15, 16, 17, 18, 19, 25, 27, 28, 31, 34, 35, 38, 45, 46, 47, 49,
    50, 52, 53, 54, 55, 56, 57, 58, 59, 70, 74, 78, 80, 81, 82, 83, 84, 85, 86, 89, 91, 92, 93,
    94, 95, 97, 98, 100, 103,
})
XVIEW_TRAIN_CAMERAS = frozenset({2, 3})
_NAME = re.compile(r"^S(\d{3})C(\d{3})P(\d{3})R(\d{3})A(\d{3})$")
_JOINT_VALUES = 12
_BODY_INFO = 10


@register_reader("ntu")
def read_ntu(req: ReadRequest) -> ReaderResult:
    root = req.need_path("ntu")
    benchmark = req.options.get_str("benchmark", "xsub", choices=("xsub", "xview", "xset"))
    max_bodies = req.options.get_int("bodies", 2, lo=1, hi=6)
    if root.is_file():
        files = [root]
    else:
        files = sorted(root.glob("*.skeleton")) or sorted(root.glob("*/*.skeleton"))
    if not files:
        raise DataError(root, "no .skeleton files found")
    req.expect_joints, req.expect_channels = NTU25.num_joints, 3
    for path in files:
        name = path.stem
        with req.guard():
            m = _NAME.match(name)
            if m is None:
                raise DataError(path, "file name does not follow SsssCcccPpppRrrrAaaa.skeleton", name)
            setup, camera, subject, _, action = (int(g) for g in m.groups())
            if action < 1:
                raise DataError(path, f"action A{action:03d} out of range (A001..)", name)
            if benchmark == "xsub":
                train = subject in XSUB_TRAIN_SUBJECTS
            elif benchmark == "xview":
                train = camera in XVIEW_TRAIN_CAMERAS
            else:
                train = setup % 2 == 0
            if not req.wants("train" if train else "test"):  # a command reads only the splits it needs
                req.pass_over("train" if train else "test")
                continue
            x = read_skeleton_file(path, max_bodies)
            req.add("train" if train else "test", x, action - 1, name, path)
    top = req.max_label()
    num_classes = 60 if top < 60 else max(120, top + 1)
    info = {"dataset": "ntu", "protocol": benchmark, "benchmark": benchmark, "bodies": max_bodies}
    return ReaderResult(NTU25, ntu_class_names(num_classes), info)


def read_skeleton_file(path: Path, max_bodies: int = 2) -> np.ndarray:
    """Parse one `.skeleton` file into (3, T, 25, M) float32, M = min(bodies seen, max_bodies)."""
    tokens = read_text(path).split()
    pos = 0

    def take_int(what: str) -> int:
        nonlocal pos
        if pos >= len(tokens):
            raise DataError(path, f"truncated file: expected {what} at token {pos}")
        tok = tokens[pos]
        if not (tok.isascii() and tok.isdigit() and len(tok) <= 9):
            raise DataError(path, f"garbled file: {what} is {tok[:20]!r}, not a count (token {pos})")
        pos += 1
        return int(tok)

    num_frames = take_int("the frame count")
    if num_frames == 0:
        raise DataError(path, "zero-length sequence: frame count is 0")
    blocks: list[tuple[int, str, int]] = []  # (frame, body id, token offset of its joints)
    for t in range(num_frames):
        nb = take_int(f"the body count of frame {t}")
        if nb > 16:
            raise DataError(path, f"garbled file: frame {t} claims {nb} bodies")
        for _ in range(nb):
            if pos + _BODY_INFO > len(tokens):
                raise DataError(path, f"truncated file: body info of frame {t} is incomplete")
            body_id = tokens[pos]
            pos += _BODY_INFO
            nj = take_int(f"the joint count of frame {t}")
            if nj != NTU25.num_joints:
                raise DataError(path, f"wrong joint count: frame {t} has {nj} joints, ntu25 has 25")
            end = pos + nj * _JOINT_VALUES
            if end > len(tokens):
                raise DataError(path, f"truncated file: joints of frame {t} are incomplete")
            blocks.append((t, body_id, pos))
            pos = end
    if pos != len(tokens):
        raise DataError(path, f"garbled file: {len(tokens) - pos} unexpected values after the last frame")
    if not blocks:
        raise DataError(path, "zero-length sequence: no body in any frame")
    width = NTU25.num_joints * _JOINT_VALUES
    try:
        vals = np.array([tokens[o : o + width] for _, _, o in blocks], dtype=np.float64)
    except ValueError as exc:
        raise DataError(path, f"garbled file: non-numeric joint value ({exc})") from None
    xyz = vals.reshape(len(blocks), NTU25.num_joints, _JOINT_VALUES)[:, :, :3]

    ids = list(dict.fromkeys(b for _, b, _ in blocks))
    seq = np.zeros((len(ids), num_frames, NTU25.num_joints, 3), dtype=np.float64)
    present = np.zeros((len(ids), num_frames), dtype=bool)
    slot = {b: i for i, b in enumerate(ids)}
    for k, (t, b, _) in enumerate(blocks):
        seq[slot[b], t] = xyz[k]
        present[slot[b], t] = True
    with np.errstate(over="ignore", invalid="ignore"):  # garbage values are reported by the sample check
        energy = np.array([seq[i, present[i]].var(axis=0).sum() if present[i].sum() > 1 else 0.0 for i in range(len(ids))])
        order = np.argsort(-np.nan_to_num(energy, nan=np.inf), kind="stable")[:max_bodies]
        return seq[order].transpose(3, 1, 2, 0).astype(np.float32)  # (C, T, V, M)
