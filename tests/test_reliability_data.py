"""Bad data cases of issue 8 not covered in test_data_errors.py: a layout chosen for data
with another joint count, NTU action ids out of range, PYSKL pickles with unexpected fields,
and a bad sample reaching the pipeline (error naming the file, or skipped and counted)."""

from __future__ import annotations

import collections
import pickle

import numpy as np
import pytest
from test_data_fixtures import make_ntu_dir, make_ucla_dir, pyskl_annotations, write_pickle

from edgeskel.data import load_dataset
from edgeskel.errors import DataError, UnsafePickleError


@pytest.mark.parametrize("fmt, layout", [("nw-ucla", "ntu25"), ("nw-ucla", "coco17"), ("ntu", "kinect20"),
                                         ("ntu", "openni15")])
def test_layout_with_another_joint_count_is_refused(tmp_path, fmt, layout):
    root = make_ucla_dir(tmp_path / "u") if fmt == "nw-ucla" else make_ntu_dir(tmp_path / "n")
    with pytest.raises(DataError) as ei:
        load_dataset(f"{fmt}:{root}", layout=layout)
    msg = str(ei.value)
    assert str(root) in msg and layout in msg and "joint" in msg, msg


def test_ntu_action_out_of_range(tmp_path):
    root = make_ntu_dir(tmp_path / "n")
    src = root / "S001C001P001R001A010.skeleton"
    bad = root / "S001C001P001R001A000.skeleton"
    bad.write_text(src.read_text())
    with pytest.raises(DataError, match="A000 out of range") as ei:
        load_dataset(f"ntu:{root}")
    assert str(bad) in str(ei.value)
    ds = load_dataset(f"ntu:{root}", skip_bad=True)
    assert len(ds.skipped) == 1 and str(bad) in ds.skipped[0][0]


def test_pyskl_unexpected_fields(tmp_path):
    """Extra plain fields (PYSKL files carry img_shape, original_shape, ...) are ignored; an
    extra field holding an object of a non-allowed class refuses the whole file."""
    d = pyskl_annotations()
    d["annotations"][0]["my_extra"] = {"note": "x", "arr": np.zeros(3), "nested": [(1, 2.5, None)]}
    d["extra_top_level"] = [1, 2, 3]
    ds = load_dataset(f"pyskl:{write_pickle(tmp_path / 'ok.pkl', d)}")
    assert len(ds.train) + len(ds.test) == len(pyskl_annotations()["annotations"])
    d["annotations"][1]["counter"] = collections.Counter("abc")
    p = tmp_path / "odd.pkl"
    p.write_bytes(pickle.dumps(d))
    with pytest.raises(UnsafePickleError, match=r"collections\.Counter") as ei:
        load_dataset(f"pyskl:{p}")
    assert str(p) in str(ei.value)


def test_bad_sample_through_the_pipeline(tmp_path):
    """Without skip_bad the pipeline stops with the file's error and records nothing as done;
    with data.skip_bad the sample is skipped and the data stage counts it."""
    import json

    from edgeskel.pipeline import run_pipeline

    root = make_ucla_dir(tmp_path / "u", t=16)
    bad = root / "all_sqe" / "a01_s01_e00_v01.json"
    bad.write_text('{"skeletons": [[[0.1, "x", 3]]], "label": 1}')
    recipe = tmp_path / "r.yaml"
    base = ("name: r\nmodel: {name: stgcn, width: 0.1, kwargs: {num_stages: 1}}\n"
            f"data: {{spec: 'nw-ucla:{root}', frames: 8, persons: 1, SKIP}}\n"
            "train: {epochs: 0}\nexport: {calib_samples: 8}\n")
    device = tmp_path / "d.yaml"
    device.write_text("name: d\narch: x86_64\nvariants: [{backend: ort, precision: fp32}]\nthreads: 1\n"
                      "measure: {warmup: 0, runs: 1}\npeak: {gflops_fp32: 1, memory_bandwidth_gbs: 1, source: t}\n")
    recipe.write_text(base.replace("SKIP", "skip_bad: false"))
    with pytest.raises(DataError) as ei:
        run_pipeline(str(device), recipe=str(recipe), out_root=tmp_path / "runs", quiet=True, log=lambda s: None)
    assert str(bad) in str(ei.value) and "non-numeric" in str(ei.value)
    manifest = tmp_path / "runs" / "r" / "d" / "manifest.json"
    assert json.loads(manifest.read_text())["stages"] == {}
    recipe.write_text(base.replace("SKIP", "skip_bad: true"))
    report = run_pipeline(str(device), recipe=str(recipe), out_root=tmp_path / "runs", quiet=True, log=lambda s: None)
    stages = json.loads(manifest.read_text())["stages"]
    assert stages["data"]["result"]["skipped"] == 1
    assert report["dataset"]["num_test"] == 2  # view 3 of both actions; the bad file was a training sample
    assert all(s["status"] == "done" for s in stages.values())


def test_skip_bad_counts_every_bad_file_and_names_each(tmp_path):
    root = make_ucla_dir(tmp_path / "u", views=(1, 2, 3))
    bad = sorted((root / "all_sqe").glob("*_v0[12].json"))[:3]
    for i, f in enumerate(bad):
        f.write_text(["", "{", '{"skeletons": [], "label": 1}'][i])
    ds = load_dataset(f"nw-ucla:{root}", skip_bad=True)
    assert sorted(w.split(" [sample ")[0] for w, _ in ds.skipped) == sorted(str(f) for f in bad)
    assert all(problem for _, problem in ds.skipped)

