"""Readers on real data (NW-UCLA, SBU from ../shared/data) and on small written fixtures."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from test_data_fixtures import (
    SHARED_DATA,
    ctrgcn_arrays,
    make_ntu_dir,
    make_sbu_dir,
    make_ucla_dir,
    pyskl_annotations,
    write_pickle,
)

from edgeskel.data import available_readers, load_dataset, parse_spec, register_reader
from edgeskel.data.classes import NTU60_ACTIONS, NW_UCLA_ACTIONS, SBU_ACTIONS
from edgeskel.data.readers.ntu import read_skeleton_file
from edgeskel.data.readers.sbu import SBU_FOLDS
from edgeskel.data.registry import ReaderResult
from edgeskel.errors import DataError
from edgeskel.layouts import get_layout

UCLA = SHARED_DATA / "nw-ucla"
SBU = SHARED_DATA / "sbu-kinect"


def _need(path: Path) -> None:
    if not path.exists():
        pytest.skip(f"real dataset not available at {path}")


# ---- real data -------------------------------------------------------------------------
def test_nw_ucla_real_cross_view() -> None:
    _need(UCLA)
    ds = load_dataset(f"nw-ucla:{UCLA}")
    assert (len(ds.train), len(ds.test)) == (1020, 464)
    assert ds.layout.name == "kinect20" and ds.class_names == NW_UCLA_ACTIONS
    assert set(np.unique(ds.train.labels)) == set(range(10)) == set(np.unique(ds.test.labels))
    assert all(n.endswith("_v03") for n in ds.test.names)
    assert not any(n.endswith("_v03") for n in ds.train.names)
    assert all(s.shape[0] == 3 and s.shape[2] == 20 and s.shape[3] == 1 and s.dtype == np.float32 for s in ds.train.samples)
    assert ds.train.lengths().min() >= 1 and ds.test.lengths().max() <= 201
    # label of a01 is 0, a12 is 9 (ids a07/a10 do not exist)
    for name, lab in zip(ds.train.names, ds.train.labels, strict=True):
        if name.startswith("a12_"):
            assert lab == 9
        if name.startswith("a01_"):
            assert lab == 0


def test_nw_ucla_real_view_option_matches_split_json() -> None:
    _need(UCLA)
    a = load_dataset(f"nw-ucla:{UCLA}")
    b = load_dataset(f"nw-ucla:{UCLA}?test_view=3")
    assert sorted(a.test.names) == sorted(b.test.names)
    c = load_dataset(f"nw-ucla:{UCLA}?test_view=1")
    assert all(n.endswith("_v01") for n in c.test.names) and len(c.train) + len(c.test) == 1484


def test_sbu_real_five_folds_cover_all() -> None:
    _need(SBU)
    seen: list[str] = []
    for fold in range(1, 6):
        ds = load_dataset(f"sbu:{SBU}?fold={fold}")
        assert len(ds.train) + len(ds.test) == 282
        assert ds.layout.name == "openni15" and ds.class_names == SBU_ACTIONS
        assert {n.split("/")[0] for n in ds.test.names} <= set(SBU_FOLDS[fold])
        assert not {n.split("/")[0] for n in ds.train.names} & set(SBU_FOLDS[fold])
        assert all(s.shape[0] == 3 and s.shape[2] == 15 and s.shape[3] == 2 for s in ds.test.samples)
        seen += ds.test.names
    assert len(seen) == len(set(seen)) == 282
    assert sum(len(p) for p in SBU_FOLDS.values()) == 21


# ---- fixtures ----------------------------------------------------------------------------
def test_ntu_fixture_xsub_and_body_selection(tmp_path: Path) -> None:
    root = make_ntu_dir(tmp_path / "ntu")
    ds = load_dataset(f"ntu:{root}?benchmark=xsub")
    assert ds.layout.name == "ntu25" and len(ds.class_names) == 60 and ds.class_names[:2] == NTU60_ACTIONS[:2]
    assert sorted(ds.train.names) == ["S001C001P001R001A010", "S001C002P002R001A058"]
    assert sorted(ds.test.names) == ["S002C001P006R002A001", "S002C003P003R002A050"]
    by_name = dict(zip(ds.train.names + ds.test.names, list(ds.train.samples) + list(ds.test.samples), strict=True))
    labels = dict(zip(ds.train.names + ds.test.names, list(ds.train.labels) + list(ds.test.labels), strict=True))
    assert labels["S001C002P002R001A058"] == 57 and labels["S002C001P006R002A001"] == 0
    two = by_name["S001C002P002R001A058"]
    assert two.shape == (3, 12, 25, 2)
    # the second body appears at frame 4: before that its slot is zero
    present = np.abs(two).sum(axis=(0, 2)) > 0
    assert present[:, 0].all() and not present[:4, 1].any() and present[4:, 1].all()
    # three bodies -> the two most active (seed 5 amp .2 first, then seed 6 amp .1)
    three = by_name["S002C003P003R002A050"]
    assert three.shape[3] == 2
    spread = three.var(axis=1).sum(axis=(0, 1))
    assert spread[0] > spread[1] > 0


def test_ntu_fixture_xview(tmp_path: Path) -> None:
    root = make_ntu_dir(tmp_path / "ntu")
    ds = load_dataset(f"ntu:{root}?benchmark=xview")
    assert all(n[5:8] in ("002", "003") for n in ds.train.names)
    assert all(n[5:8] == "001" for n in ds.test.names)


def test_ntu_reader_parses_coordinates(tmp_path: Path) -> None:
    root = make_ntu_dir(tmp_path / "ntu")
    x = read_skeleton_file(root / "S001C001P001R001A010.skeleton")
    first = (root / "S001C001P001R001A010.skeleton").read_text().split("\n")[4].split()
    np.testing.assert_allclose(x[:, 0, 0, 0], [float(v) for v in first[:3]], rtol=1e-6)


def test_pyskl_fixture(tmp_path: Path) -> None:
    path = write_pickle(tmp_path / "ntu.pkl", pyskl_annotations())
    ds = load_dataset(f"pyskl:{path}?split=xsub")
    assert ds.layout.name == "ntu25" and len(ds.class_names) == 60
    assert ds.train.names == ["S001C001P001R001A001", "S001C002P002R001A060"]
    assert list(ds.train.labels) == [0, 59] and list(ds.test.labels) == [1]
    assert ds.train.samples[0].shape == (3, 8, 25, 2)
    assert ds.info["splits"] == ["xsub_train", "xsub_val"]


def test_pyskl_2d_infers_coco17(tmp_path: Path) -> None:
    names = ("vid_a", "vid_b", "vid_c")
    path = write_pickle(tmp_path / "coco.pkl", {**pyskl_annotations(v=17, c=2, names=names),
                                                "split": {"xsub_train": ["vid_a", "vid_c"], "xsub_val": ["vid_b"]}})
    ds = load_dataset(f"pyskl:{path}")
    assert ds.layout.name == "coco17" and ds.train.samples[0].shape[0] == 2
    assert ds.class_names[0].startswith("class_")  # not NTU-named frame_dirs -> generic names


def test_ctrgcn_npz_fixture(tmp_path: Path) -> None:
    path = tmp_path / "NTU60_CS.npz"
    np.savez(path, **ctrgcn_arrays())
    ds = load_dataset(f"ctrgcn:{path}")
    assert ds.layout.name == "ntu25" and len(ds.class_names) == 60
    assert list(ds.train.labels) == [0, 1, 2] and list(ds.test.labels) == [0, 1]
    assert ds.train.samples[0].shape == (3, 8, 25, 2)  # padding trimmed, 2 persons
    assert ds.train.samples[1].shape == (3, 9, 25, 1)  # empty 2nd person dropped
    raw = ctrgcn_arrays()["x_train"][0, 3].reshape(2, 25, 3)
    np.testing.assert_allclose(ds.train.samples[0][:, 3, :, :], raw.transpose(2, 1, 0))


def test_ctrgcn_npz_five_dim_with_int_labels(tmp_path: Path) -> None:
    x = np.random.default_rng(0).normal(size=(4, 3, 6, 20, 1)).astype(np.float32)
    path = tmp_path / "d.npz"
    np.savez(path, x_train=x[:2], y_train=np.array([0, 1]), x_test=x[2:], y_test=np.array([1, 2]))
    ds = load_dataset(f"ctrgcn:{path}")
    assert ds.layout.name == "kinect20" and len(ds.class_names) == 3


def test_ucla_and_sbu_fixtures(tmp_path: Path) -> None:
    u = load_dataset(f"nw-ucla:{make_ucla_dir(tmp_path / 'u')}")
    assert (len(u.train), len(u.test)) == (4, 2) and sorted(u.test.labels) == [0, 9]
    s = load_dataset(f"sbu:{make_sbu_dir(tmp_path / 's')}?fold=1")
    assert s.test.names == ["s01s02/01/001"] and list(s.train.labels) == [2, 7]


# ---- spec, layouts, registry ---------------------------------------------------------------
def test_parse_spec() -> None:
    p = parse_spec("NTU:/a/b:c?benchmark=xview&bodies=2")
    assert p.kind == "ntu" and str(p.path) == "/a/b:c" and p.options.values == {"benchmark": "xview", "bodies": "2"}
    assert parse_spec("synthetic").path is None
    for bad in ("", "?x=1", "synthetic?x", "synthetic?a=1&a=2"):
        with pytest.raises(DataError):
            parse_spec(bad)


def test_unknown_kind_and_option_are_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="unknown dataset kind"):
        load_dataset("kinetics:/x")
    with pytest.raises(DataError, match="unknown option"):
        load_dataset("synthetic?clases=3")
    with pytest.raises(DataError, match="benchmark"):
        load_dataset(f"ntu:{make_ntu_dir(tmp_path / 'n')}?benchmark=xsetup")


def test_explicit_layout_must_match_joint_count(tmp_path: Path) -> None:
    root = make_ucla_dir(tmp_path / "u")
    with pytest.raises(DataError, match="20"):
        load_dataset(f"nw-ucla:{root}", layout="ntu25")
    custom = tmp_path / "k20.yaml"
    lay = get_layout("kinect20").to_dict()
    lay["name"] = "my20"
    import yaml

    custom.write_text(yaml.safe_dump(lay))
    assert load_dataset(f"nw-ucla:{root}", layout=str(custom)).layout.name == "my20"


def test_register_reader_adds_a_format(tmp_path: Path) -> None:
    @register_reader("tiny-test-format")
    def _read(req):  # noqa: ANN001
        req.expect_channels = 3
        for i, split in enumerate(("train", "test")):
            req.add(split, np.ones((3, 4, 15, 1), np.float32) * (i + 1), i, f"s{i}", "mem")
        return ReaderResult(None, ["a", "b"], {"protocol": "none"})

    assert "tiny-test-format" in available_readers()
    ds = load_dataset("tiny-test-format")
    assert ds.layout.name == "openni15" and ds.class_names == ["a", "b"]
