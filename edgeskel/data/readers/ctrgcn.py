"""CTR-GCN `.npz` reader (`ctrgcn:FILE.npz`).

Keys x_train, y_train, x_test, y_test. x is either (N, T, M*V*C) as CTR-GCN's
data_gen/seq_transformation writes it (frame-major, person, joint, xyz; default M=2, V=25,
C=3, or V, C from an explicit layout), or already (N, C, T, V, M). y is one-hot (N, K),
reduced with argmax, or integer labels (N,). Zero padding is trimmed per sample: trailing
all-zero frames and all-zero person slots.

Memory: CTR-GCN's NTU files pad every sequence to 300 frames (NTU-60 x-sub ~10 GB, NTU-120
~20 GB of float32), more than a 24 GB machine can hold next to the trimmed samples. Members
stored uncompressed (`np.savez`, what CTR-GCN writes) are therefore memory-mapped and each
trimmed sample is copied out, dropping the mapped pages as it goes; compressed members
(`np.savez_compressed`) are read whole.
"""

from __future__ import annotations

import mmap
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from edgeskel.data.classes import ntu_class_names
from edgeskel.data.readers.common import drop_empty_persons, to_float32, trim_trailing_zero_frames
from edgeskel.data.registry import MAX_CLASSES, ReaderResult, ReadRequest, register_reader
from edgeskel.errors import DataError
from edgeskel.layouts import NTU25

KEYS = ("x_train", "y_train", "x_test", "y_test")


@register_reader("ctrgcn")
def read_ctrgcn(req: ReadRequest) -> ReaderResult:
    path = req.need_path("ctrgcn")
    arrays = _load_npz(path)
    missing = [k for k in KEYS if k not in arrays]
    if missing:
        raise DataError(path, f"missing key(s) {missing}; found {sorted(arrays)} (expected {list(KEYS)})")
    lay = req.layout or NTU25
    num_classes = 0
    for split in ("train", "test"):
        x = _to_nctvm(arrays[f"x_{split}"], path, f"x_{split}", lay)
        y, k = _labels(arrays[f"y_{split}"], path, f"y_{split}")
        if k > MAX_CLASSES:
            raise DataError(path, f"{key_y(split)} implies {k} classes; labels look corrupt")
        num_classes = max(num_classes, k)
        if len(y) != len(x):
            raise DataError(path, f"x_{split} has {len(x)} samples but y_{split} has {len(y)} labels")
        for i in range(len(x)):
            name = f"{split}_{i}"
            if y[i] < 0:
                req.bad(path, f"y_{split}[{i}] is not a valid one-hot row", name)
                continue
            # a copy, so no sample keeps the whole (mapped) array alive
            req.add(split, np.array(drop_empty_persons(trim_trailing_zero_frames(x[i])), copy=True), int(y[i]), name, path)
            if i % 256 == 255:
                _drop_mapped_pages(arrays[f"x_{split}"])
        _drop_mapped_pages(arrays[f"x_{split}"])
    # NTU-shaped data (25 joints, 60/120 classes) gets NTU names; otherwise generic ones.
    names = ntu_class_names(num_classes) if req.expect_joints == 25 and num_classes in (60, 120) else None
    if names is None and num_classes:
        names = [f"class_{i:03d}" for i in range(num_classes)]
    return ReaderResult(lay if req.layout else None, names, {"dataset": "ctrgcn-npz", "protocol": path.stem})


def key_y(split: str) -> str:
    return f"y_{split}"


NPZ_CAP_MB = 32768  # the unpacked arrays of one .npz (CTR-GCN's NTU120 files are ~10 GB)


def _check_npz_members(path: Path, cap: int) -> None:
    """Sum the array sizes the members' .npy headers declare, before numpy allocates them: a
    few-KB zip can declare terabytes (a zip bomb)."""
    total = 0
    with zipfile.ZipFile(path) as zf:
        for info in zf.infolist():
            with zf.open(info) as fh:
                fmt = np.lib.format
                version = fmt.read_magic(fh)
                read_header = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
                shape, _, dtype = read_header(fh)
            total += int(np.prod(shape, dtype=object)) * dtype.itemsize
            if total > cap:
                raise DataError(path, f"refused: the arrays in this .npz would take {total / (1 << 20):.0f} MB, above "
                                      f"the {cap / (1 << 20):.0f} MB cap (set EDGESKEL_MAX_INPUT_MB to raise it)")


def _load_npz(path: Path) -> dict[str, np.ndarray]:
    from edgeskel.io import InputRefused, check_regular_file, max_input_bytes

    cap = max_input_bytes(NPZ_CAP_MB)
    try:
        check_regular_file(path, cap)
    except InputRefused as exc:
        raise DataError(path, f"refused: the path {exc}") from None
    except OSError as exc:
        raise DataError(path, f"cannot read file: {exc.strerror or exc}") from None
    try:
        if zipfile.is_zipfile(path):
            _check_npz_members(path, cap)
            mapped = _map_stored_members(path)
            if mapped is not None:
                return mapped
        with np.load(path, allow_pickle=False) as npz:
            if not isinstance(npz, np.lib.npyio.NpzFile):
                raise DataError(path, "not an .npz archive (a single .npy array?)")
            return {k: npz[k] for k in npz.files}
    except DataError:
        raise
    except OSError as exc:
        raise DataError(path, f"cannot read file: {exc.strerror or exc}") from None
    except MemoryError:
        raise DataError(path, "refused: the .npz arrays do not fit in memory") from None
    except (ValueError, zipfile.BadZipFile, EOFError, KeyError, TypeError, NotImplementedError) as exc:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DataError(path, f"not a readable .npz archive: {msg}") from None
    except Exception as exc:  # corrupt zip members surface as zlib/struct errors
        raise DataError(path, f"not a readable .npz archive: {type(exc).__name__}: {exc}") from None


def _map_stored_members(path: Path) -> dict[str, np.ndarray] | None:
    """Memory-map every member of an uncompressed .npz (None if any member is compressed)."""
    fmt = np.lib.format
    out: dict[str, np.ndarray] = {}
    with zipfile.ZipFile(path) as zf, open(path, "rb") as fh:
        for info in zf.infolist():
            if info.compress_type != zipfile.ZIP_STORED or not info.filename.endswith(".npy"):
                return None
            fh.seek(info.header_offset)
            local = fh.read(30)  # local file header: name and extra-field lengths at bytes 26..29
            if len(local) != 30 or local[:4] != b"PK\x03\x04":
                return None
            fh.seek(info.header_offset + 30 + int.from_bytes(local[26:28], "little") + int.from_bytes(local[28:30], "little"))
            version = fmt.read_magic(fh)
            read_header = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
            shape, fortran, dtype = read_header(fh)
            if dtype.hasobject:
                return None
            key = info.filename[: -len(".npy")]
            if int(np.prod(shape, dtype=np.int64)) == 0:
                out[key] = np.zeros(shape, dtype)
                continue
            out[key] = np.memmap(path, dtype=dtype, mode="r", offset=fh.tell(), shape=shape, order="F" if fortran else "C")
    return out


def _drop_mapped_pages(arr: np.ndarray) -> None:
    """Let the kernel drop the file pages already copied from (they stay in the page cache, not in
    this process's memory), so reading a 20 GB file does not look like a 20 GB process."""
    base = arr
    while base is not None and not isinstance(base, np.memmap):
        base = getattr(base, "base", None)
    mm = getattr(base, "_mmap", None)
    if isinstance(mm, mmap.mmap) and hasattr(mm, "madvise"):
        mm.madvise(mmap.MADV_DONTNEED)


def _to_nctvm(x: Any, path: Path, key: str, lay: Any) -> np.ndarray:
    if x.dtype.kind not in "iuf":
        raise DataError(path, f"{key} has non-numeric dtype {x.dtype}")
    if x.ndim == 5:
        return to_float32(x)
    if x.ndim != 3:
        raise DataError(path, f"{key} has shape {x.shape}; expected (N, T, M*V*C) or (N, C, T, V, M)")
    n, t, f = x.shape
    v, c = lay.num_joints, lay.channels
    if f == 0 or f % (v * c):
        raise DataError(path, f"{key} has {f} values per frame, not a multiple of {v} joints x {c} channels ({lay.name})")
    m = f // (v * c)
    return to_float32(x.reshape(n, t, m, v, c).transpose(0, 4, 1, 3, 2))


def _labels(y: Any, path: Path, key: str) -> tuple[np.ndarray, int]:
    """Integer labels (-1 marks an invalid one-hot row) and the class count they imply."""
    if y.dtype.kind not in "iufb":
        raise DataError(path, f"{key} has non-numeric dtype {y.dtype}")
    if y.ndim == 2:
        if y.shape[1] == 0:
            raise DataError(path, f"{key} has shape {y.shape}: no classes")
        lab = np.argmax(y, axis=1).astype(np.int64)
        valid = np.isfinite(y).all(1) & (y.max(axis=1) > 0) if len(y) else np.ones(0, bool)
        lab[~valid] = -1
        return lab, y.shape[1]
    if y.ndim == 1:
        if y.dtype.kind == "f":
            if len(y) and (not np.isfinite(y).all() or (y != np.round(y)).any()):
                raise DataError(path, f"{key} holds non-integer labels")
        if y.dtype.kind == "b":
            raise DataError(path, f"{key} holds booleans, not labels")
        lab = y.astype(np.int64)
        if len(lab) and lab.min() < 0:
            bad = int(np.flatnonzero(lab < 0)[0])
            raise DataError(path, f"{key}[{bad}] = {lab[bad]} is a negative label")
        return lab, int(lab.max()) + 1 if len(lab) else 0
    raise DataError(path, f"{key} has shape {y.shape}; expected (N,) labels or (N, K) one-hot")
