"""Formats people hold: `folder:` (per-clip .npy/.npz/MMPose JSON in class folders), UTD-MHAD
`.mat` and MSR Action3D text; class names from the data or a file; a command reads only the
splits it needs (evaluating a test-only folder works)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edgeskel.cli import main
from edgeskel.data import load_dataset
from edgeskel.errors import DataError
from edgeskel.layouts import KINECT20, UTD20

SYN = "synthetic?classes=3&per_class=6&test_per_class=2&frames=16"


def write_folder(root: Path, spec: str = SYN, splits: tuple[str, ...] = ("train", "test"), fmt: str = "npy") -> Path:
    ds = load_dataset(spec)
    for split in splits:
        part = getattr(ds, split)
        for i, (x, y) in enumerate(zip(part.samples, part.labels, strict=True)):
            d = root / split / ds.class_names[y]
            d.mkdir(parents=True, exist_ok=True)
            mtvc = x.transpose(3, 1, 2, 0)  # (C, T, V, M) -> (M, T, V, C)
            if fmt == "npy":
                np.save(d / f"clip{i}.npy", mtvc[0] if i % 2 else mtvc)  # (T, V, C) and (M, T, V, C)
            else:
                np.savez(d / f"clip{i}.npz", keypoint=mtvc)
    return root


def test_folder_reads_npy_npz_with_class_names_from_folders(tmp_path: Path) -> None:
    root = write_folder(tmp_path / "f")
    ds = load_dataset(f"folder:{root}")
    ref = load_dataset(SYN)
    assert ds.class_names == sorted(ref.class_names) and len(ds.train) == 18 and len(ds.test) == 6
    assert ds.layout.name == "kinect20" and ds.train.samples[0].shape[0] == 3
    by_name = dict(zip(ds.test.names, ds.test.samples, strict=True))
    i = 0
    y = ref.test.labels[i]
    np.testing.assert_allclose(by_name[f"{ref.class_names[y]}/clip{i}"], ref.test.samples[i])
    write_folder(tmp_path / "z", fmt="npz")
    assert len(load_dataset(f"folder:{tmp_path / 'z'}").train) == 18


def test_classes_txt_and_class_names_file(tmp_path: Path) -> None:
    root = write_folder(tmp_path / "f")
    order = ["waving", "clapping", "kicking"]
    present = sorted(p.name for p in (root / "train").iterdir())
    (root / "classes.txt").write_text("\n".join(present[::-1]) + "\n")
    ds = load_dataset(f"folder:{root}")
    assert ds.class_names == present[::-1]
    names = tmp_path / "names.txt"
    names.write_text("# my names\n" + "\n".join(order) + "\n")
    assert load_dataset(f"folder:{root}", class_names=names).class_names == order
    names.write_text("a\na\n")
    with pytest.raises(DataError, match="duplicate"):
        load_dataset(f"folder:{root}", class_names=names)


def test_mmpose_json_clips(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    for cls in ("wave", "sit"):
        d = tmp_path / "m" / cls
        d.mkdir(parents=True)
        for k in range(2):
            frames = [{"frame_id": t, "instances": [
                {"keypoints": rng.random((17, 2)).tolist(), "keypoint_scores": [0.9] * 17},
                {"keypoints": rng.random((17, 2)).tolist(), "keypoint_scores": [0.3] * 17}]} for t in range(5)]
            (d / f"v{k}.json").write_text(json.dumps({"meta_info": {}, "instance_info": frames}))
    ds = load_dataset(f"folder:{tmp_path / 'm'}?test_fraction=0.5", check_layout=False)
    assert ds.layout.name == "coco17" and ds.class_names == ["sit", "wave"]
    assert len(ds.train) == 2 and len(ds.test) == 2 and ds.train.samples[0].shape == (2, 5, 17, 2)
    one = load_dataset(f"folder:{tmp_path / 'm'}?bodies=1", splits=("test",), check_layout=False)
    assert one.test.samples[0].shape == (2, 5, 17, 1)
    (tmp_path / "m" / "sit" / "bad.json").write_text(json.dumps({"instance_info": [{"instances": [{"keypoints": [[1]]}]}]}))
    with pytest.raises(DataError, match="bad.json"):
        load_dataset(f"folder:{tmp_path / 'm'}", splits=("test",))


def test_folder_refuses_pickled_npy(tmp_path: Path) -> None:
    d = tmp_path / "p" / "test" / "a"
    d.mkdir(parents=True)
    np.save(d / "x.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(DataError, match="pickle"):
        load_dataset(f"folder:{tmp_path / 'p'}", splits=("test",))


def test_eval_on_a_test_only_folder(tmp_path: Path, capsys) -> None:  # noqa: ANN001
    full = write_folder(tmp_path / "full")
    rc = main(["train", "--model", "stgcn", "--data", f"folder:{full}", "--epochs", "1", "--batch-size", "8",
               "--width", "0.125", "--frames", "16", "--optimizer", "adamw", "--lr", "0.003", "--out",
               str(tmp_path / "run"), "--json"])
    assert rc == 0, capsys.readouterr().err
    only_test = write_folder(tmp_path / "t", splits=("test",))
    capsys.readouterr()
    assert main(["data", f"folder:{only_test}", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["splits"]["test"]["samples"] == 6
    rc = main(["eval", "--checkpoint", str(tmp_path / "run" / "best.ckpt"), "--data", f"folder:{only_test}", "--json"])
    out = capsys.readouterr()
    assert rc == 0, out.err
    assert json.loads(out.out[out.out.index("{"):])["num_samples"] == 6
    assert main(["eval", "--checkpoint", str(tmp_path / "run" / "best.ckpt"), "--data", f"folder:{only_test}",
                 "--split", "train"]) == 2
    assert "clip files in the class folders of the train" in capsys.readouterr().err


def _ucla_like(n: int = 4) -> list[np.ndarray]:
    """Kinect-order skeletons from the synthetic generator (they fit kinect20)."""
    return load_dataset(f"synthetic?classes=2&per_class={n}&test_per_class=1&frames=20").train.samples


def test_utd_mhad_mat_files(tmp_path: Path) -> None:
    from scipy.io import savemat

    order = [KINECT20.joints.index(j) for j in UTD20.joints]
    for i, x in enumerate(_ucla_like()):
        subject = 1 + i % 2
        d_skel = x[..., 0][:, :, order].transpose(2, 0, 1)  # (C, T, V) -> (V, C, T), UTD joint order
        savemat(tmp_path / f"a{1 + i // 4}_s{subject}_t{i}_skeleton.mat", {"d_skel": d_skel})
    ds = load_dataset(f"utd-mhad:{tmp_path}")
    assert ds.layout.name == "utd20" and not ds.warnings
    assert len(ds.train) == 4 and len(ds.test) == 4 and ds.class_names[0] == "right arm swipe to the left"
    # the same data read as kinect20 order: the fit check says utd20 fits better
    wrong = load_dataset(f"utd-mhad:{tmp_path}", layout="kinect20")
    assert wrong.warnings and "'utd20' fits better" in wrong.warnings[0]
    with pytest.raises(DataError, match="no variable 'skel'"):
        load_dataset(f"utd-mhad:{tmp_path}?var=skel")
    (tmp_path / "a1_s1_t99_skeleton.mat").write_bytes(b"\x00" * 128 + b"\x89HDF\r\n\x1a\n" + b"\x00" * 64)
    with pytest.raises(DataError, match="v7.3"):
        load_dataset(f"utd-mhad:{tmp_path}")


def test_msr_action3d_text_both_releases(tmp_path: Path) -> None:
    for i, x in enumerate(_ucla_like()):
        xyz = x[..., 0].transpose(1, 2, 0)  # (T, V, 3)
        rows = [f"{a:.5f} {b:.5f} {c:.5f} 1" for a, b, c in xyz.reshape(-1, 3)]
        name = tmp_path / f"a{1 + i // 4:02d}_s{1 + i % 2:02d}_e{i:02d}_skeleton3D.txt"
        if i == 0:  # older release: header, per-frame row count, world then screen rows
            body = [f"{len(xyz)} 20"]
            for t in range(len(xyz)):
                body += ["40", *rows[t * 20 : (t + 1) * 20], *(["0 0 0 0"] * 20)]
            rows = body
        name.write_text("\n".join(rows) + "\n")
    ds = load_dataset(f"msr-action3d:{tmp_path}")
    assert ds.class_names[0] == "high arm wave" and len(ds.train) == 4 and len(ds.test) == 4
    np.testing.assert_allclose(ds.train.samples[0][..., 0], _ucla_like()[0][..., 0], atol=1e-4)
    (tmp_path / "a01_s01_e99_skeleton3D.txt").write_text("1 2 3 4\n" * 21)
    with pytest.raises(DataError, match="not a multiple of 20"):
        load_dataset(f"msr-action3d:{tmp_path}")


def test_train_takes_class_names_file(tmp_path: Path) -> None:
    from edgeskel.checkpoint import load_checkpoint
    from edgeskel.train import TrainConfig
    from edgeskel.train.api import train

    root = write_folder(tmp_path / "f")
    names = tmp_path / "names.txt"
    names.write_text("first\nsecond\nthird\n")
    cfg = TrainConfig(epochs=1, batch_size=8, optimizer="adamw", lr=3e-3, warmup_epochs=0, threads=1)
    train("stgcn", f"folder:{root}", tmp_path / "run", cfg, num_frames=16, model_kwargs={"width": 0.125},
          quiet=True, class_names=names)
    _, spec, _ = load_checkpoint(tmp_path / "run" / "best.ckpt")
    assert spec.class_names == ["first", "second", "third"]


def test_nw_ucla_test_split_only_reads_test_files(tmp_path: Path) -> None:
    from test_data_fixtures import make_ucla_dir

    root = make_ucla_dir(tmp_path / "u", views=(1, 2, 3))
    for f in (root / "all_sqe").glob("*_v01.json"):
        f.write_text("{broken")  # training files: never opened when only test is asked for
    ds = load_dataset(f"nw-ucla:{root}?test_view=3", splits=("test",), check_layout=False)
    assert len(ds.test) > 0 and len(ds.train) == 0
    with pytest.raises(DataError, match="invalid JSON"):
        load_dataset(f"nw-ucla:{root}?test_view=3")
