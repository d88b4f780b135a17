"""Writers for tiny, realistic dataset files used by the test_data_* tests (plus self-checks)."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def body_motion(t: int, v: int, seed: int, amp: float = 0.05, offset: float = 0.0) -> np.ndarray:
    """(T, V, 3) smooth random joint trajectories around a fixed pose."""
    rng = np.random.default_rng(seed)
    base = rng.normal(0, 0.3, (1, v, 3)) + np.array([offset, 0.0, 3.0])
    wave = np.sin(np.linspace(0, 2 * np.pi, t))[:, None, None] * rng.normal(0, amp, (1, v, 3))
    return (base + wave).astype(np.float64)


def write_ntu_skeleton(path: Path, bodies: list[tuple[str, np.ndarray, np.ndarray]], num_frames: int) -> Path:
    """bodies: (bodyID, xyz (T, 25, 3), present mask (T,)). Writes the Kinect v2 text format."""
    lines = [str(num_frames)]
    for t in range(num_frames):
        here = [(bid, xyz[t]) for bid, xyz, present in bodies if present[t]]
        lines.append(str(len(here)))
        for bid, joints in here:
            lines.append(f"{bid} 0 1 1 1 1 0 -0.0383 0.1196 2")
            lines.append(str(len(joints)))
            for x, y, z in joints:
                lines.append(f"{x:.7f} {y:.7f} {z:.7f} 270.1 210.3 960.4 540.2 0.1752 0.2307 0.6924 0.6612 2")
    path.write_text("\n".join(lines) + "\n")
    return path


def make_ntu_dir(root: Path) -> Path:
    """4 files: x-sub train subjects 1/2, test subjects 3/6; one 3-body file, one 2-body file."""
    root.mkdir(parents=True, exist_ok=True)
    t = 12
    full = np.ones(t, bool)
    late = np.arange(t) >= 4
    write_ntu_skeleton(root / "S001C001P001R001A010.skeleton",
                       [("72057594037931101", body_motion(t, 25, 1), full)], t)
    write_ntu_skeleton(root / "S001C002P002R001A058.skeleton",
                       [("72057594037931102", body_motion(t, 25, 2, offset=-0.5), full),
                        ("72057594037931103", body_motion(t, 25, 3, offset=0.5), late)], t)
    # three bodies: the nearly static one (tiny amplitude) must be dropped
    write_ntu_skeleton(root / "S002C003P003R002A050.skeleton",
                       [("1", body_motion(t, 25, 4, amp=0.001), full),
                        ("2", body_motion(t, 25, 5, amp=0.2), full),
                        ("3", body_motion(t, 25, 6, amp=0.1), full)], t)
    write_ntu_skeleton(root / "S002C001P006R002A001.skeleton",
                       [("9", body_motion(t, 25, 7), full)], t)
    return root


def make_ucla_dir(root: Path, views: tuple[int, ...] = (1, 2, 3), t: int = 10) -> Path:
    d = root / "all_sqe"
    d.mkdir(parents=True, exist_ok=True)
    for k, (a, lab) in enumerate(((1, 1), (12, 10))):
        for v in views:
            name = f"a{a:02d}_s01_e00_v{v:02d}"
            sk = body_motion(t, 20, 10 * k + v).round(5).tolist()
            (d / f"{name}.json").write_text(json.dumps({"file_name": name, "skeletons": sk, "label": lab}))
    return root


def sbu_lines(t: int, seed: int) -> str:
    a, b = body_motion(t, 15, seed), body_motion(t, 15, seed + 100, offset=0.4)
    rows = [",".join([str(i + 1)] + [f"{v:.5f}" for v in np.concatenate([a[i].ravel(), b[i].ravel()])]) for i in range(t)]
    return "\n".join(rows) + "\n"


def make_sbu_dir(root: Path) -> Path:
    for pair, cls in (("s01s02", 1), ("s01s03", 3), ("s01s03", 8)):  # s01s02 is in fold 1
        d = root / pair / f"{cls:02d}" / "001"
        d.mkdir(parents=True, exist_ok=True)
        (d / "skeleton_pos.txt").write_text(sbu_lines(9, cls))
    return root


def pyskl_annotations(v: int = 25, c: int = 3, names: tuple[str, ...] = ("S001C001P001R001A001", "S001C001P003R001A002",
                      "S001C002P002R001A060")) -> dict:
    annos = []
    for i, name in enumerate(names):
        m = 2 if i == 0 else 1
        kp = np.stack([body_motion(8, v, i + 20 * j) for j in range(m)]).astype(np.float32)[..., :c]
        annos.append({"frame_dir": name, "label": int(name[-3:]) - 1 if name[-3:].isdigit() else i, "keypoint": kp, "total_frames": 8,
                      "keypoint_score": np.ones(kp.shape[:3], np.float32), "img_shape": (1080, 1920)})
    return {"split": {"xsub_train": [names[0], names[2]], "xsub_val": [names[1]]}, "annotations": annos}


def write_pickle(path: Path, obj: object) -> Path:
    path.write_bytes(pickle.dumps(obj, protocol=4))
    return path


def ctrgcn_arrays(n_train: int = 3, n_test: int = 2, t: int = 20, classes: int = 60) -> dict[str, np.ndarray]:
    """CTR-GCN data_gen layout: x (N, T, 150) zero-padded, y one-hot (N, classes)."""
    out = {}
    for split, n in (("train", n_train), ("test", n_test)):
        x = np.zeros((n, t, 150), np.float32)
        for i in range(n):
            length = 8 + i
            x[i, :length, :75] = body_motion(length, 25, i).reshape(length, 75)
            if i == 0:
                x[i, :length, 75:] = body_motion(length, 25, 50 + i, offset=0.6).reshape(length, 75)
        y = np.zeros((n, classes), np.float32)
        y[np.arange(n), np.arange(n) % classes] = 1
        out[f"x_{split}"], out[f"y_{split}"] = x, y
    return out


def test_fixture_writers_produce_files(tmp_path: Path) -> None:
    assert len(list(make_ntu_dir(tmp_path / "ntu").glob("*.skeleton"))) == 4
    assert len(list((make_ucla_dir(tmp_path / "ucla") / "all_sqe").glob("*.json"))) == 6
    assert len(list(make_sbu_dir(tmp_path / "sbu").glob("*/*/*/skeleton_pos.txt"))) == 3
    head = (tmp_path / "ntu" / "S001C001P001R001A010.skeleton").read_text().split("\n")[:4]
    assert head[0] == "12" and head[1] == "1" and head[3] == "25"
