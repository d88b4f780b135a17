"""Every kind of bad input gives a DataError naming the file; --skip-bad records instead."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
from test_data_fixtures import (
    ctrgcn_arrays,
    make_ntu_dir,
    make_sbu_dir,
    make_ucla_dir,
    pyskl_annotations,
    write_pickle,
)

from edgeskel.data import load_dataset, safe_loads
from edgeskel.errors import DataError, UnsafePickleError


def _raises(spec: str, path: Path, match: str, **kw) -> DataError:
    with pytest.raises(DataError, match=match) as ei:
        load_dataset(spec, **kw)
    assert str(path) in str(ei.value), f"error does not name {path}: {ei.value}"
    return ei.value


# ---- NTU .skeleton -------------------------------------------------------------------------
NTU_FILE = "S001C001P001R001A010.skeleton"


def _ntu_edit(tmp_path: Path, edit) -> tuple[Path, Path]:  # noqa: ANN001
    root = make_ntu_dir(tmp_path / "ntu")
    f = root / NTU_FILE
    f.write_text(edit(f.read_text()))
    return root, f


@pytest.mark.parametrize(
    "edit, match",
    [
        (lambda s: s[: len(s) // 2], "truncated"),
        (lambda s: s.replace("0.1752", "abc", 1), "non-numeric"),
        (lambda s: s.replace("\n25\n", "\n24\n", 1), "joint count|garbled|truncated"),
        (lambda s: "0\n", "zero-length"),
        (lambda s: "3\n0\n0\n0\n", "zero-length"),
        (lambda s: s + "1 2 3\n", "unexpected values"),
        (lambda s: "x" + s, "garbled"),
        (lambda s: s.replace("0.1752", "0.1752", 1).replace(s.split("\n")[4].split()[0], "nan", 1), "NaN"),
    ],
    ids=["truncated", "garbled", "joint-count", "zero-frames", "no-bodies", "trailing", "bad-count", "nan"],
)
def test_ntu_bad_files(tmp_path: Path, edit, match: str) -> None:  # noqa: ANN001
    root, f = _ntu_edit(tmp_path, edit)
    _raises(f"ntu:{root}", f, match)
    ds = load_dataset(f"ntu:{root}", skip_bad=True)
    assert any(str(f) in where for where, _ in ds.skipped)
    assert NTU_FILE[:-9] not in ds.train.names + ds.test.names


def test_ntu_bad_file_name(tmp_path: Path) -> None:
    root = make_ntu_dir(tmp_path / "ntu")
    bad = root / "clip01.skeleton"
    bad.write_text((root / NTU_FILE).read_text())
    _raises(f"ntu:{root}", bad, "SsssCcccPpppRrrrAaaa")


def test_ntu_wrong_joint_count_everywhere(tmp_path: Path) -> None:
    root = make_ntu_dir(tmp_path / "ntu")
    f = root / NTU_FILE
    lines = f.read_text().split("\n")
    out, i = [], 0
    # rewrite as 24-joint bodies: drop one joint line per body
    while i < len(lines):
        out.append(lines[i])
        if lines[i] == "25":
            out[-1] = "24"
            out += lines[i + 1 : i + 25]
            i += 26
            continue
        i += 1
    f.write_text("\n".join(out))
    _raises(f"ntu:{root}", f, "wrong joint count")


# ---- NW-UCLA json ------------------------------------------------------------------------
UCLA_FILE = "a01_s01_e00_v01.json"


def _ucla_write(tmp_path: Path, content: str) -> tuple[Path, Path]:
    root = make_ucla_dir(tmp_path / "u")
    f = root / "all_sqe" / UCLA_FILE
    f.write_text(content)
    return root, f


def _ucla_obj(skeletons, label=1) -> str:  # noqa: ANN001
    return json.dumps({"file_name": "a01_s01_e00_v01", "skeletons": skeletons, "label": label})


GOOD_FRAME = [[0.1, 0.2, 3.0]] * 20


@pytest.mark.parametrize(
    "content, match",
    [
        (_ucla_obj([GOOD_FRAME, GOOD_FRAME[:19] + [[0.1, 0.2]]]), "ragged|malformed"),
        (_ucla_obj([GOOD_FRAME, [["a", "b", "c"]] * 20]), "non-numeric"),
        (_ucla_obj([GOOD_FRAME, [[None, 1, 2]] * 20]), "ragged or mixed|non-numeric"),
        (_ucla_obj([GOOD_FRAME, [[True, False, True]] * 20]), "non-numeric"),
        ('{"skeletons": [' + json.dumps(GOOD_FRAME).replace("0.1", "NaN", 1) + '], "label": 1}', "NaN"),
        ('{"skeletons": [' + json.dumps(GOOD_FRAME).replace("0.1", "Infinity", 1) + '], "label": 1}', "NaN or inf"),
        (_ucla_obj([]), "zero-length"),
        (_ucla_obj([[[0, 0, 0]] * 20] * 3), "zero-length"),
        (_ucla_obj([GOOD_FRAME[:19]]), "wrong joint count"),
        (_ucla_obj([GOOD_FRAME], label=11), "out of range"),
        (_ucla_obj([GOOD_FRAME], label=0), "out of range"),
        (_ucla_obj([GOOD_FRAME], label="1"), "not an integer"),
        ('{"skeletons": [[[0.1, 0.2', "invalid JSON"),
        ('{"label": 1}', "'skeletons'"),
        ("\xff\xfe garbage", "invalid JSON"),
    ],
    ids=["ragged", "strings", "null", "bools", "nan", "inf", "empty", "all-zero", "19-joints", "label-11", "label-0",
         "label-str", "truncated", "missing-key", "binary"],
)
def test_ucla_bad_files(tmp_path: Path, content: str, match: str) -> None:
    root, f = _ucla_write(tmp_path, content)
    _raises(f"nw-ucla:{root}", f, match)
    ds = load_dataset(f"nw-ucla:{root}", skip_bad=True)
    assert len(ds.skipped) == 1 and ds.skipped[0][0].startswith(str(f))
    assert len(ds.train) == 3 and len(ds.test) == 2


def test_empty_split_is_an_error_even_when_skipping(tmp_path: Path) -> None:
    root = make_ucla_dir(tmp_path / "u", views=(1, 2))
    with pytest.raises(DataError, match="test split is empty"):
        load_dataset(f"nw-ucla:{root}")
    root2 = make_ucla_dir(tmp_path / "u2")
    for f in (root2 / "all_sqe").glob("*_v03.json"):
        f.write_text("{}")
    with pytest.raises(DataError, match="empty after skipping"):
        load_dataset(f"nw-ucla:{root2}", skip_bad=True)


def test_missing_paths(tmp_path: Path) -> None:
    _raises(f"nw-ucla:{tmp_path / 'nope'}", tmp_path / "nope", "no such file")
    (tmp_path / "empty").mkdir()
    _raises(f"nw-ucla:{tmp_path / 'empty'}", tmp_path / "empty", "no NW-UCLA")
    with pytest.raises(DataError, match="needs a path"):
        load_dataset("sbu")


# ---- SBU ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "content, match",
    [("1,0.5,0.5\n", "expected 91"), ("", "zero-length"), ("1," + ",".join(["x"] * 90) + "\n", "non-numeric"),
     ("1," + ",".join(["nan"] * 90) + "\n", "NaN")],
    ids=["short-line", "empty", "non-numeric", "nan"],
)
def test_sbu_bad_files(tmp_path: Path, content: str, match: str) -> None:
    root = make_sbu_dir(tmp_path / "s")
    f = root / "s01s03" / "03" / "001" / "skeleton_pos.txt"
    f.write_text(content)
    _raises(f"sbu:{root}", f, match)
    assert len(load_dataset(f"sbu:{root}", skip_bad=True).skipped) == 1


# ---- CTR-GCN npz --------------------------------------------------------------------------
def test_npz_missing_keys(tmp_path: Path) -> None:
    p = tmp_path / "d.npz"
    arrs = ctrgcn_arrays()
    del arrs["y_test"]
    np.savez(p, **arrs)
    _raises(f"ctrgcn:{p}", p, r"missing key\(s\) \['y_test'\]")


@pytest.mark.parametrize(
    "mutate, match",
    [
        (lambda a: a.update(x_train=a["x_train"][:, :, :100]), "multiple of 25"),
        (lambda a: a.update(y_train=a["y_train"][:2]), "labels"),
        (lambda a: a["x_test"].__setitem__((0, 0, 0), np.inf), "NaN or inf"),
        (lambda a: a["y_train"].__setitem__(1, 0.0), "one-hot"),
        (lambda a: a.update(y_test=np.array([-1, 2])), "negative"),
        (lambda a: a.update(x_train=np.zeros((3, 20, 150), np.float32)), "zero-length"),
        (lambda a: a.update(x_train=a["x_train"][:, :, :, None]), "expected"),
        (lambda a: a.update(x_train=np.array([["a"] * 150] * 20)[None].repeat(3, 0)), "non-numeric"),
    ],
    ids=["width", "count", "inf", "onehot", "negative", "all-zero", "4d", "strings"],
)
def test_npz_bad_content(tmp_path: Path, mutate, match: str) -> None:  # noqa: ANN001
    arrs = ctrgcn_arrays()
    mutate(arrs)
    p = tmp_path / "d.npz"
    np.savez(p, **arrs)
    _raises(f"ctrgcn:{p}", p, match)


def test_npz_not_an_archive_and_object_arrays(tmp_path: Path) -> None:
    p = tmp_path / "junk.npz"
    p.write_bytes(b"PK\x03\x04 this is not a zip")
    _raises(f"ctrgcn:{p}", p, "not a readable")
    q = tmp_path / "obj.npz"
    arrs = ctrgcn_arrays()
    arrs["x_train"] = np.array([object()] * 3, dtype=object)
    np.savez(q, **arrs)  # object arrays need pickle: refused by allow_pickle=False
    _raises(f"ctrgcn:{q}", q, "not a readable")


# ---- PYSKL pickles -------------------------------------------------------------------------
def _pk(tmp_path: Path, obj) -> Path:  # noqa: ANN001
    return write_pickle(tmp_path / "a.pkl", obj)


@pytest.mark.parametrize(
    "mutate, match",
    [
        (lambda d: d.pop("annotations"), "missing top-level"),
        (lambda d: d.update(annotations={"a": 1}), "must be a list"),
        (lambda d: d["annotations"][1].pop("keypoint"), "no 'keypoint'"),
        (lambda d: d["annotations"][1].update(keypoint=[[1.0]]), "not a numpy array"),
        (lambda d: d["annotations"][1].update(keypoint=np.zeros((8, 25, 3))), "expected \\(M, T, V, C\\)"),
        (lambda d: d["annotations"][1].update(total_frames=99), "total_frames"),
        (lambda d: d["annotations"][1].update(label="x"), "not an integer"),
        (lambda d: d["annotations"][1].update(label=-3), "negative"),
        (lambda d: d["annotations"][1].update(keypoint_score=np.ones(3)), "keypoint_score"),
        (lambda d: d["annotations"][1].update(keypoint=d["annotations"][1]["keypoint"][:, :, :20],
                                              keypoint_score=d["annotations"][1]["keypoint_score"][:, :, :20]), "20 joints"),
        (lambda d: d["annotations"][1]["keypoint"].__setitem__((0, 0, 0, 0), np.nan), "NaN"),
        (lambda d: d["split"]["xsub_val"].append("S009C001P001R001A001"), "no annotation"),
        (lambda d: d["split"].pop("xsub_val"), "available"),
    ],
    ids=["no-annotations", "annotations-dict", "no-keypoint", "keypoint-list", "keypoint-3d", "total-frames",
         "label-str", "label-neg", "score-shape", "joint-count", "nan", "unlisted", "no-split"],
)
def test_pyskl_bad_content(tmp_path: Path, mutate, match: str) -> None:  # noqa: ANN001
    d = pyskl_annotations()
    mutate(d)
    p = _pk(tmp_path, d)
    _raises(f"pyskl:{p}", p, match)


def test_pyskl_not_a_dict_and_garbage(tmp_path: Path) -> None:
    p = _pk(tmp_path, [1, 2, 3])
    _raises(f"pyskl:{p}", p, "expected a dict")
    q = tmp_path / "g.pkl"
    q.write_bytes(b"\x80\x04\x95garbage")
    _raises(f"pyskl:{q}", q, "not a readable pickle")


def test_pyskl_skip_bad_sample(tmp_path: Path) -> None:
    d = pyskl_annotations()
    d["annotations"][2]["keypoint"] = d["annotations"][2]["keypoint"].astype(np.float32) * np.inf
    ds = load_dataset(f"pyskl:{_pk(tmp_path, d)}", skip_bad=True)
    assert ds.train.names == ["S001C001P001R001A001"] and "S001C002P002R001A060" in ds.skipped[0][0]


class _Evil:
    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self):  # noqa: ANN204
        return (os.system, (f"touch {self.target}",))


class _EvalEvil:
    def __reduce__(self):  # noqa: ANN204
        return (eval, ("__import__('os').getcwd()",))


def test_unsafe_pickle_is_refused_and_not_executed(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    d = pyskl_annotations()
    d["annotations"][0]["img_shape"] = _Evil(marker)
    p = tmp_path / "evil.pkl"
    p.write_bytes(pickle.dumps(d))
    with pytest.raises(UnsafePickleError, match=r"(posix|os|nt)\.system") as ei:
        load_dataset(f"pyskl:{p}")
    assert str(p) in str(ei.value)
    assert not marker.exists(), "the pickle's payload was executed"
    with pytest.raises(UnsafePickleError, match="builtins.eval"):
        safe_loads(pickle.dumps(_EvalEvil()), "x.pkl")
    # skip_bad does not downgrade an unsafe file into a skip
    with pytest.raises(UnsafePickleError):
        load_dataset(f"pyskl:{p}", skip_bad=True)
    assert not marker.exists()


def test_unsafe_pickle_other_globals() -> None:
    import subprocess

    class Sub:
        def __reduce__(self):  # noqa: ANN204
            return (subprocess.call, (["true"],))

    for obj, name in ((Sub(), "subprocess"), (_Evil(Path("/tmp/x")), "system")):
        with pytest.raises(UnsafePickleError, match=name):
            safe_loads(pickle.dumps(obj), "y.pkl")
    with pytest.raises(UnsafePickleError, match="getattr"):
        safe_loads(b"cbuiltins\ngetattr\n.", "z.pkl")
