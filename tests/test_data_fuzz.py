"""Fuzzing every reader: random bytes and random structures may only ever raise DataError.

The number of examples per test comes from EDGESKEL_FUZZ_EXAMPLES (default 30).
"""

from __future__ import annotations

import json
import os
import pickle
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from test_data_fixtures import ctrgcn_arrays, make_ntu_dir, make_sbu_dir, make_ucla_dir, pyskl_annotations

from edgeskel.data import load_dataset, safe_loads
from edgeskel.errors import DataError

N = int(os.environ.get("EDGESKEL_FUZZ_EXAMPLES", "30"))
FUZZ = settings(max_examples=N, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def _only_data_errors(spec: str) -> None:
    """Loading may succeed or raise DataError (incl. UnsafePickleError); nothing else."""
    for skip in (False, True):
        try:
            ds = load_dataset(spec, skip_bad=skip)
        except DataError:
            continue
        assert len(ds.train) > 0 and len(ds.test) > 0
        assert all(np.isfinite(s).all() for s in ds.train.samples + ds.test.samples)


def _with_dataset(make: Callable[[Path], Path], rel: str, content: bytes, spec: Callable[[Path], str]) -> None:
    with tempfile.TemporaryDirectory() as d:
        root = make(Path(d) / "ds")
        target = root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)
        _only_data_errors(spec(root))


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10**20, 10**20) | st.floats(allow_nan=True) | st.text(max_size=5),
    lambda c: st.lists(c, max_size=6) | st.dictionaries(st.text(max_size=5), c, max_size=4),
    max_leaves=40,
)
frames = st.lists(st.lists(st.lists(st.floats(allow_nan=True, allow_infinity=True), min_size=0, max_size=4),
                           min_size=0, max_size=22), min_size=0, max_size=4)


# ---- NW-UCLA ------------------------------------------------------------------------------
@FUZZ
@given(st.binary(max_size=400))
def test_fuzz_ucla_random_bytes(data: bytes) -> None:
    _with_dataset(make_ucla_dir, "all_sqe/a01_s01_e00_v01.json", data, lambda r: f"nw-ucla:{r}")


@FUZZ
@given(st.one_of(frames, json_values), st.one_of(st.integers(-3, 14), json_values), st.booleans())
def test_fuzz_ucla_json_structures(skeletons, label, wrap: bool) -> None:  # noqa: ANN001
    obj = {"skeletons": skeletons, "label": label} if wrap else skeletons
    _with_dataset(make_ucla_dir, "all_sqe/a12_s01_e00_v03.json", json.dumps(obj).encode(), lambda r: f"nw-ucla:{r}")


# ---- NTU ---------------------------------------------------------------------------------
@FUZZ
@given(st.binary(max_size=400))
def test_fuzz_ntu_random_bytes(data: bytes) -> None:
    _with_dataset(make_ntu_dir, "S001C001P001R001A010.skeleton", data, lambda r: f"ntu:{r}")


tokens = st.one_of(st.integers(0, 30).map(str), st.floats(allow_nan=True).map(repr), st.sampled_from(["25", "1", "0", "x", "-1"]))


@FUZZ
@given(st.lists(tokens, max_size=120), st.integers(0, 3))
def test_fuzz_ntu_token_streams(toks: list[str], cut: int) -> None:
    with tempfile.TemporaryDirectory() as d:
        root = make_ntu_dir(Path(d) / "ds")
        f = root / "S001C001P001R001A010.skeleton"
        original = f.read_text().split()
        # splice random tokens into a real file at a random place, or replace it entirely
        pos = [0, 1, 13, len(original) // 2][cut]
        f.write_text(" ".join(original[:pos] + toks + original[pos + len(toks):]))
        _only_data_errors(f"ntu:{root}")


# ---- SBU ---------------------------------------------------------------------------------
@FUZZ
@given(st.binary(max_size=400))
def test_fuzz_sbu_random_bytes(data: bytes) -> None:
    _with_dataset(make_sbu_dir, "s01s03/03/001/skeleton_pos.txt", data, lambda r: f"sbu:{r}")


@FUZZ
@given(st.lists(st.lists(st.one_of(st.floats(allow_nan=True).map(str), st.text(max_size=3)), max_size=95), max_size=5))
def test_fuzz_sbu_text_lines(rows: list[list[str]]) -> None:
    text = "\n".join(",".join(r) for r in rows)
    _with_dataset(make_sbu_dir, "s01s02/01/001/skeleton_pos.txt", text.encode("utf-8", "replace"), lambda r: f"sbu:{r}")


# ---- PYSKL -------------------------------------------------------------------------------
def _pyskl_dir(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    return root


@FUZZ
@given(st.binary(max_size=400))
def test_fuzz_pyskl_random_bytes(data: bytes) -> None:
    _with_dataset(_pyskl_dir, "a.pkl", data, lambda r: f"pyskl:{r / 'a.pkl'}")
    try:
        safe_loads(data, "fuzz.pkl")
    except DataError:
        pass


small_arrays = hnp.arrays(
    dtype=st.sampled_from([np.float32, np.float64, np.int64, np.bool_, np.dtype("U2")]),
    shape=hnp.array_shapes(min_dims=0, max_dims=5, min_side=0, max_side=4),
    elements=None,
)
values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=True) | st.text(max_size=4) | small_arrays,
    lambda c: st.lists(c, max_size=4) | st.dictionaries(st.sampled_from(["frame_dir", "label", "keypoint", "total_frames",
                                                                         "keypoint_score", "x"]), c, max_size=5),
    max_leaves=25,
)


@FUZZ
@given(st.sampled_from(["top", "annotation", "field", "split"]), values, st.integers(0, 2),
       st.sampled_from(["frame_dir", "label", "keypoint", "total_frames", "keypoint_score"]))
def test_fuzz_pyskl_structures(where: str, value, idx: int, field: str) -> None:  # noqa: ANN001
    d = pyskl_annotations()
    if where == "top":
        obj = value
    elif where == "annotation":
        d["annotations"][idx] = value
        obj = d
    elif where == "field":
        d["annotations"][idx][field] = value
        obj = d
    else:
        d["split"]["xsub_train"] = value
        obj = d
    with tempfile.TemporaryDirectory() as tmp:
        p = Path(tmp) / "a.pkl"
        p.write_bytes(pickle.dumps(obj))
        _only_data_errors(f"pyskl:{p}")


# ---- CTR-GCN npz -------------------------------------------------------------------------
@FUZZ
@given(st.binary(max_size=400), st.booleans())
def test_fuzz_npz_random_bytes(data: bytes, zip_magic: bool) -> None:
    _with_dataset(_pyskl_dir, "d.npz", (b"PK\x03\x04" if zip_magic else b"") + data, lambda r: f"ctrgcn:{r / 'd.npz'}")


@FUZZ
@given(st.sampled_from(["x_train", "y_train", "x_test", "y_test"]),
       hnp.arrays(dtype=st.sampled_from([np.float32, np.float64, np.int64, np.int8, np.bool_, np.dtype("U1")]),
                  shape=hnp.array_shapes(min_dims=1, max_dims=5, min_side=0, max_side=5), elements=None),
       st.booleans())
def test_fuzz_npz_arrays(key: str, arr: np.ndarray, drop: bool) -> None:
    arrs = ctrgcn_arrays(t=10)
    if drop:
        del arrs[key]
    else:
        arrs[key] = arr
    with tempfile.TemporaryDirectory() as tmp:
        p = Path(tmp) / "d.npz"
        np.savez(p, **arrs)
        _only_data_errors(f"ctrgcn:{p}")
