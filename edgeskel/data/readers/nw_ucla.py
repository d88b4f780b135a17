"""NW-UCLA json reader (`nw-ucla:DIR[?test_view=3]`).

Files `aAA_sSS_eEE_vVV.json` with {"skeletons": [T][20][3], "label": 1-based} in DIR/all_sqe
or DIR. Cross-view protocol: views other than `test_view` train, `test_view` tests; with the
default view 3 a `split.json` (CTR-GCN's train/val lists) is used when present.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from edgeskel.data.classes import NW_UCLA_ACTIONS
from edgeskel.data.readers.common import contains_bool, numeric_array, read_json
from edgeskel.data.registry import ReaderResult, ReadRequest, register_reader
from edgeskel.errors import DataError
from edgeskel.layouts import KINECT20

_NAME = re.compile(r"^a(\d+)_s(\d+)_e(\d+)_v(\d+)$")


@register_reader("nw-ucla")
def read_nw_ucla(req: ReadRequest) -> ReaderResult:
    root = req.need_path("nw-ucla")
    test_view = req.options.get_int("test_view", 3, lo=1, hi=3)
    folder = root / "all_sqe" if (root / "all_sqe").is_dir() else root
    if not folder.is_dir():
        raise DataError(root, "not a directory (expected NW-UCLA json files in DIR/all_sqe or DIR)")
    files = {p.stem: p for p in sorted(folder.glob("*.json")) if p.name != "split.json"}
    if not files:
        raise DataError(folder, "no NW-UCLA .json files found")

    split_file = root / "split.json"
    assign: dict[str, str] = {}
    protocol = f"cross-view (test view {test_view})"
    if test_view == 3 and not req.options.has("test_view") and split_file.is_file():
        assign = _read_split_json(split_file, files)
        protocol = "cross-view (split.json)"
    else:
        for stem in files:
            m = _NAME.match(stem)
            if m is None:
                req.bad(files[stem], "file name does not follow aAA_sSS_eEE_vVV.json", stem)
                continue
            assign[stem] = "test" if int(m.group(4)) == test_view else "train"

    req.expect_joints, req.expect_channels = KINECT20.num_joints, 3
    for stem, split in assign.items():
        if not req.wants(split):  # a command reads only the splits it needs
            req.pass_over(split)
            continue
        path = files[stem]
        with req.guard():
            x, label = _read_one(path, stem)
            req.add(split, x, label, stem, path)
    return ReaderResult(KINECT20, list(NW_UCLA_ACTIONS), {"dataset": "nw-ucla", "protocol": protocol, "test_view": test_view})


def _read_split_json(path: Path, files: dict[str, Path]) -> dict[str, str]:
    data = read_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("train"), list):
        raise DataError(path, "split.json must be an object with 'train' and 'val' (or 'test') lists")
    test_key = "val" if "val" in data else "test"
    if not isinstance(data.get(test_key), list):
        raise DataError(path, "split.json has no 'val' or 'test' list")
    assign: dict[str, str] = {}
    for split, key in (("train", "train"), ("test", test_key)):
        for i, item in enumerate(data[key]):
            name = item.get("file_name") if isinstance(item, dict) else item
            if not isinstance(name, str):
                raise DataError(path, f"{key}[{i}] has no file_name")
            name = name.removesuffix(".json")
            if name not in files:
                raise DataError(path, f"{key}[{i}] names {name}.json, which is not in {next(iter(files.values())).parent}")
            assign[name] = split
    return assign


def _read_one(path: Path, stem: str) -> tuple[np.ndarray, int]:
    data = read_json(path)
    if not isinstance(data, dict) or "skeletons" not in data or "label" not in data:
        raise DataError(path, "expected a JSON object with 'skeletons' and 'label'", stem)
    if data.get("__has_bool__") and contains_bool(data["skeletons"]):
        raise DataError(path, "'skeletons' holds non-numeric values (booleans)", stem)
    arr = numeric_array(data["skeletons"], path, stem, "'skeletons'")
    if arr.size == 0:
        raise DataError(path, "zero-length sequence: 'skeletons' is empty", stem)
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise DataError(path, f"'skeletons' has shape {arr.shape}; expected [T][20][3]", stem)
    if arr.shape[1] != KINECT20.num_joints:
        raise DataError(path, f"wrong joint count: {arr.shape[1]} joints per frame, kinect20 has 20", stem)
    label = data["label"]
    if isinstance(label, bool) or not isinstance(label, int):
        raise DataError(path, f"label {label!r} is not an integer", stem)
    if not 1 <= label <= len(NW_UCLA_ACTIONS):
        raise DataError(path, f"label {label} out of range 1..{len(NW_UCLA_ACTIONS)}", stem)
    return arr.transpose(2, 0, 1)[..., None], label - 1
