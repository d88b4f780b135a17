"""PYSKL annotation pickle reader (`pyskl:FILE.pkl?split=xsub`).

Format (pyskl/datasets/pose_dataset.py): {'split': {name: [frame_dir, ...]},
'annotations': [{'frame_dir', 'label', 'keypoint' (M, T, V, C), optional 'keypoint_score'
(M, T, V), 'total_frames', 'img_shape', ...}]}. `split=NAME` uses NAME_train for training
and NAME_val for testing, as PYSKL does; when NAME_test exists too, NAME_test is the test split
and NAME_val the validation split (model selection). The pickle is loaded with the restricted
unpickler.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from edgeskel.data.classes import ntu_class_names
from edgeskel.data.registry import ReaderResult, ReadRequest, register_reader
from edgeskel.errors import DataError
from edgeskel.safe_pickle import safe_load

_NTU_NAME = re.compile(r"^S\d{3}C\d{3}P\d{3}R\d{3}A\d{3}")


@register_reader("pyskl")
def read_pyskl(req: ReadRequest) -> ReaderResult:
    path = req.need_path("pyskl")
    split = req.options.get_str("split", "xsub")
    data = safe_load(path)
    if not isinstance(data, dict):
        raise DataError(path, f"expected a dict with 'split' and 'annotations', got {type(data).__name__}")
    missing = [k for k in ("split", "annotations") if k not in data]
    if missing:
        raise DataError(path, f"missing top-level field(s) {missing}; found {sorted(map(str, data))[:10]}")
    splits, annos = data["split"], data["annotations"]
    if not isinstance(splits, dict) or not all(isinstance(k, str) for k in splits):
        raise DataError(path, "'split' must map split names to lists of frame_dir names")
    if not isinstance(annos, list):
        raise DataError(path, f"'annotations' must be a list, got {type(annos).__name__}")
    train_key = f"{split}_train"
    test_key = next((k for k in (f"{split}_test", f"{split}_val") if k in splits), None)
    val_key = f"{split}_val" if test_key == f"{split}_test" and f"{split}_val" in splits else None
    if train_key not in splits or test_key is None:
        raise DataError(path, f"split {split!r} needs '{split}_train' and '{split}_val'; available: {sorted(splits)}")

    by_name: dict[str, dict[str, Any]] = {}
    for i, ann in enumerate(annos):
        if not isinstance(ann, dict):
            req.bad(path, f"annotation {i} is a {type(ann).__name__}, not a dict", i)
            continue
        name = ann.get("frame_dir")
        if not isinstance(name, str):
            req.bad(path, f"annotation {i} has no string 'frame_dir'", i)
            continue
        by_name[name] = ann

    ntu_like = True
    parts = [("train", train_key), ("test", test_key)] + ([("val", val_key)] if val_key else [])
    for split_name, key in parts:
        if not req.wants(split_name):
            req.pass_over(split_name, len(splits[key]) if isinstance(splits[key], (list, tuple)) else 0)
            continue
        names = splits[key]
        if not isinstance(names, (list, tuple)):
            raise DataError(path, f"split {key!r} must be a list of frame_dir names")
        for name in names:
            with req.guard():
                if not isinstance(name, str):
                    raise DataError(path, f"split {key!r} contains a non-string entry {name!r}")
                ann = by_name.get(name)
                if ann is None:
                    raise DataError(path, f"split {key!r} lists {name!r} but there is no annotation for it", name)
                x, label = _convert(ann, path, name)
                if req.add(split_name, x, label, name, path):
                    ntu_like = ntu_like and bool(_NTU_NAME.match(name))
    top = req.max_label()
    class_names = ntu_class_names(60 if top < 60 else max(120, top + 1)) if ntu_like and top >= 0 else None
    return ReaderResult(None, class_names, {"dataset": "pyskl", "protocol": split, "split": split, "splits": [k for _, k in parts]})


def _convert(ann: dict[str, Any], path: Any, name: str) -> tuple[np.ndarray, int]:
    for key in ("label", "keypoint"):
        if key not in ann:
            raise DataError(path, f"annotation has no {key!r} field", name)
    label = ann["label"]
    if isinstance(label, (bool, np.bool_)) or not isinstance(label, (int, np.integer)):
        raise DataError(path, f"'label' is {label!r}, not an integer", name)
    kp = ann["keypoint"]
    if not isinstance(kp, np.ndarray):
        raise DataError(path, f"'keypoint' is a {type(kp).__name__}, not a numpy array", name)
    if kp.dtype.kind not in "iuf":
        raise DataError(path, f"'keypoint' has non-numeric dtype {kp.dtype}", name)
    if kp.ndim != 4:
        raise DataError(path, f"'keypoint' has shape {kp.shape}; expected (M, T, V, C)", name)
    total = ann.get("total_frames")
    if total is not None:
        if isinstance(total, (bool, np.bool_)) or not isinstance(total, (int, np.integer)):
            raise DataError(path, f"'total_frames' is {total!r}, not an integer", name)
        if int(total) != kp.shape[1]:
            raise DataError(path, f"'total_frames' is {total} but 'keypoint' has {kp.shape[1]} frames", name)
    score = ann.get("keypoint_score")
    if score is not None and (not isinstance(score, np.ndarray) or score.shape != kp.shape[:3]):
        shape = getattr(score, "shape", type(score).__name__)
        raise DataError(path, f"'keypoint_score' has shape {shape}; expected {kp.shape[:3]}", name)
    return np.transpose(kp, (3, 1, 2, 0)), int(label)  # (M, T, V, C) -> (C, T, V, M)
