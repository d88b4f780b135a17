"""Per-clip files in class folders (`folder:DIR[?split=test&test_fraction=0.2&bodies=2]`).

What people hold after running a pose estimator or exporting their own recordings:

    DIR/train/<class>/<clip>.npy   DIR/val/<class>/...   DIR/test/<class>/...   (splits given)
    DIR/<class>/<clip>.npy                                                      (one split)

A clip is `.npy` / `.npz` holding (T, V, C) or (M, T, V, C) coordinates (an `.npz` holds one
array, or names it `keypoint`, `keypoints` or `skeleton`), or `.json` keypoints as MMPose writes
them (`--save-predictions`: {"instance_info": [{"frame_id", "instances": [{"keypoints": [[x, y],
...], "keypoint_scores": [...]}]}]}, or the bare list of frames). Class ids follow `DIR/classes.txt`
(one name per line) when present, else the sorted class-folder names, which become the class
names. A single-split folder goes to `split` (default test: a folder of clips to evaluate), or
is divided into train/test per class with `test_fraction` (seeded, stratified).
"""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from edgeskel.data.readers.common import read_input
from edgeskel.data.registry import SPLITS, ReaderResult, ReadRequest, register_reader
from edgeskel.data.splits import stratified_indices
from edgeskel.errors import DataError

SUFFIXES = (".npy", ".npz", ".json")
CLIP_CAP_MB = 512  # one clip: hours of 25-joint 3D at 30 fps is ~100 MB
MAX_FILES = 2_000_000
_NPZ_KEYS = ("keypoint", "keypoints", "skeleton")


@register_reader("folder")
def read_folder(req: ReadRequest) -> ReaderResult:
    root = req.need_path("folder")
    if not root.is_dir():
        raise DataError(root, "not a directory (expected DIR/<class>/<clip> or DIR/{train,val,test}/<class>/<clip>)")
    only = req.options.get_str("split", "test", choices=SPLITS)
    test_fraction = req.options.get_float("test_fraction", 0.0, lo=0.0, hi=0.9)
    seed = req.options.get_int("seed", 0, lo=0)
    bodies = req.options.get_int("bodies", 2, lo=1, hi=8)
    given = [s for s in SPLITS if (root / s).is_dir()]
    split_dirs = {s: root / s for s in given} if given else {only: root}
    classes = _class_order(root, split_dirs)
    index = {c: i for i, c in enumerate(classes)}
    clips: list[tuple[str, Path, int]] = []
    for split, d in split_dirs.items():
        if not req.wants(split) and not (not given and test_fraction):
            continue  # a command reads only the splits it needs
        for cdir in sorted(p for p in d.iterdir() if p.is_dir()):
            if cdir.name not in index:
                raise DataError(cdir, f"class folder {cdir.name!r} is not listed in {root / 'classes.txt'}")
            for f in sorted(cdir.iterdir()):
                if f.suffix.lower() in SUFFIXES:
                    clips.append((split, f, index[cdir.name]))
                    if len(clips) > MAX_FILES:
                        raise DataError(root, f"more than {MAX_FILES} clip files")
    if not clips:
        wanted = [s for s in SPLITS if req.wants(s)]
        raise DataError(root, f"no {'/'.join(SUFFIXES)} clip files in the class folders of the {'/'.join(wanted)} "
                              f"split (folders present: {given or 'class folders only'})")
    if not given and test_fraction:
        labels = np.array([c[2] for c in clips])
        test_idx = set(stratified_indices(labels, test_fraction, seed).tolist())
        clips = [("test" if i in test_idx else "train", f, y) for i, (_, f, y) in enumerate(clips)]
    for split, f, label in clips:
        name = f"{f.parent.name}/{f.stem}"
        with req.guard():
            req.add(split, read_clip(f, bodies, name), label, name, f)
    info = {"dataset": "folder", "protocol": "splits given as folders" if given else
            (f"stratified test_fraction={test_fraction} seed={seed}" if test_fraction else f"all clips in {only}"),
            "splits": given or ([only] if not test_fraction else ["train", "test"]),
            "class_names_from": str(root / "classes.txt") if (root / "classes.txt").is_file() else "class folder names"}
    return ReaderResult(None, classes, info)


def _class_order(root: Path, split_dirs: dict[str, Path]) -> list[str]:
    listed = root / "classes.txt"
    if listed.is_file():
        names = [ln.strip() for ln in read_input(listed, 1).decode("utf-8", "replace").splitlines()
                 if ln.strip() and not ln.lstrip().startswith("#")]
        if not names or len(set(names)) != len(names):
            raise DataError(listed, "classes.txt must list distinct class names, one per line")
        return names
    names = sorted({p.name for d in split_dirs.values() for p in d.iterdir() if p.is_dir()})
    if not names:
        raise DataError(root, "no class folders found")
    return names


def read_clip(path: Path, bodies: int = 2, name: str | None = None) -> np.ndarray:
    """One clip file -> (C, T, V, M) float32."""
    raw = read_input(path, CLIP_CAP_MB)
    suffix = path.suffix.lower()
    if suffix == ".json":
        arr = _mmpose_json(raw, path, bodies, name)
    else:
        arr = _array(raw, path, suffix, name)
    if arr.dtype.kind not in "iuf":
        raise DataError(path, f"coordinates are not numeric (dtype {arr.dtype})", name)
    if arr.ndim == 3:
        arr = arr[None]
    if arr.ndim != 4:
        raise DataError(path, f"array has shape {arr.shape}; expected (T, V, C) or (M, T, V, C)", name)
    with np.errstate(over="ignore", invalid="ignore"):
        return np.ascontiguousarray(arr.transpose(3, 1, 2, 0), dtype=np.float32)  # (M, T, V, C) -> (C, T, V, M)


def _array(raw: bytes, path: Path, suffix: str, name: str | None) -> np.ndarray:
    """A .npy or one-array .npz, refusing pickles and arrays whose header declares more than the cap."""
    cap = CLIP_CAP_MB << 20
    try:
        if suffix == ".npy":
            _check_header(io.BytesIO(raw), path, cap)
            return np.load(io.BytesIO(raw), allow_pickle=False)
        with zipfile.ZipFile(io.BytesIO(raw)) as zf:
            members = [i for i in zf.infolist() if i.filename.endswith(".npy")]
            for info in members:
                with zf.open(info) as fh:
                    _check_header(fh, path, cap)
        with np.load(io.BytesIO(raw), allow_pickle=False) as npz:
            keys = list(npz.files)
            key = next((k for k in _NPZ_KEYS if k in keys), keys[0] if len(keys) == 1 else None)
            if key is None:
                raise DataError(path, f".npz holds {keys}; name the clip array one of {list(_NPZ_KEYS)}", name)
            return npz[key]
    except DataError:
        raise
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, KeyError) as exc:
        raise DataError(path, f"not a readable {suffix} array: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}",
                        name) from None


def _check_header(fh: Any, path: Path, cap: int) -> None:
    fmt = np.lib.format
    version = fmt.read_magic(fh)
    shape, _, dtype = (fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0)(fh)
    if dtype.hasobject:
        raise DataError(path, "array holds Python objects (a pickle); only numeric arrays are read")
    if int(np.prod(shape, dtype=object)) * dtype.itemsize > cap:
        raise DataError(path, f"refused: array of shape {shape} is above the {cap >> 20} MB cap")


def _mmpose_json(raw: bytes, path: Path, bodies: int, name: str | None) -> np.ndarray:
    """MMPose predictions -> (M, T, V, C): per frame the `bodies` highest-scoring instances."""
    try:
        doc = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise DataError(path, f"invalid JSON: {str(exc).splitlines()[0][:200]}", name) from None
    frames = doc.get("instance_info") if isinstance(doc, dict) else doc
    if isinstance(frames, list) and frames and isinstance(frames[0], dict) and "keypoints" in frames[0]:
        frames = [{"instances": frames}]  # a single image's instance list
    if not isinstance(frames, list) or not frames:
        raise DataError(path, "expected MMPose predictions: {'instance_info': [{'instances': [...]}, ...]} "
                              "or a list of frames", name)
    per_frame: list[list[np.ndarray]] = []
    v = c = None
    for t, fr in enumerate(frames):
        insts = fr.get("instances") if isinstance(fr, dict) else None
        if not isinstance(insts, list):
            raise DataError(path, f"frame {t} has no 'instances' list", name)
        people = []
        for inst in insts:
            kp = inst.get("keypoints") if isinstance(inst, dict) else None
            try:
                arr = np.asarray(kp, dtype=np.float64)
            except (TypeError, ValueError):
                raise DataError(path, f"frame {t}: 'keypoints' is not a numeric (V, 2|3) list", name) from None
            if arr.ndim != 2 or arr.shape[1] not in (2, 3) or (v is not None and arr.shape != (v, c)):
                raise DataError(path, f"frame {t}: keypoints of shape {arr.shape}; expected the same (V, 2|3) "
                                      "in every frame", name)
            v, c = arr.shape
            score = np.asarray(inst.get("keypoint_scores") or [1.0], dtype=np.float64).mean()
            people.append((float(score), arr))
        people.sort(key=lambda p: -p[0])
        per_frame.append([a for _, a in people[:bodies]])
    if v is None:
        raise DataError(path, "no person detected in any frame", name)
    m = max(len(p) for p in per_frame)
    out = np.zeros((m, len(per_frame), v, c), dtype=np.float64)
    for t, people in enumerate(per_frame):
        for k, arr in enumerate(people):
            out[k, t] = arr
    return out
