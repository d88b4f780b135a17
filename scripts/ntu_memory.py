"""Peak memory of reading and preparing NTU-60 / NTU-120-sized data (issue 19).

    .venv/bin/python scripts/ntu_memory.py --scale ntu60 ntu120 [--frames 64] [--tmp DIR]
    .venv/bin/python scripts/ntu_memory.py --format ctrgcn --scale ntu60 --fraction 0.1

No NTU files are at hand, so a synthetic stand-in with the real shapes is written as a PYSKL
annotation pickle (the format PYSKL users hold NTU in; `pyskl:FILE?split=xsub`): NTU-60 56,880
and NTU-120 114,480 sequences split like x-sub, V=25 joints, C=3, M=2 for the mutual-action
classes (A050-A060, A106-A120) and 1 otherwise, T per sequence from a log-normal with median 60
frames clipped to 32..300 (NTU clips are 1-10 s at 30 fps). Each phase runs in a fresh process
and reports its peak resident memory (ru_maxrss; the parent stays small because Linux carries a
parent's peak over into its children):
  import   - python + torch + edgeskel, nothing loaded (the floor);
  read     - `load_dataset` of the pickle (restricted unpickler + reader);
  prepare  - read + the pipeline's `split_arrays` (validation + test arrays at T=--frames, M=2,
             and the 256-sample calibration subset): what `edgeskel compress/export` hold.
The stand-in pickle is deleted afterwards. Prints a table and one JSON line per scale.

`--format ctrgcn` writes the stand-in as CTR-GCN's `.npz` instead (x padded to 300 frames,
(N, 300, 150) float32, one-hot y; `np.savez`, uncompressed as CTR-GCN writes it) and compares
`read` (memory-mapped, the reader's default) with `read-whole` (the same file loaded whole, as
the reader did before). The padded file is 10 GB at NTU-60 scale, so `--fraction` writes a
fraction of the sequences (peaks scale linearly with N).
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SCALES = {"ntu60": (40_320, 16_560, 60, range(49, 60)), "ntu120": (63_026, 51_454, 120, [*range(49, 60), *range(105, 120)])}


def write_standin(path: Path, scale: str, seed: int = 0) -> dict[str, float]:
    n_train, n_test, classes, mutual = SCALES[scale]
    rng = np.random.default_rng(seed)
    n = n_train + n_test
    labels = rng.integers(0, classes, n)
    lengths = np.clip(np.round(rng.lognormal(np.log(60), 0.45, n)), 32, 300).astype(int)
    mutual_set = set(mutual)
    annos, nbytes = [], 0
    for i in range(n):
        m = 2 if int(labels[i]) in mutual_set else 1
        kp = rng.standard_normal((m, int(lengths[i]), 25, 3), dtype=np.float32)
        nbytes += kp.nbytes
        name = f"S{i // 1000:03d}C001P{i % 1000:03d}R001A{int(labels[i]) + 1:03d}"
        annos.append({"frame_dir": name, "label": int(labels[i]), "keypoint": kp, "total_frames": int(lengths[i])})
    names = [a["frame_dir"] for a in annos]
    data = {"split": {"xsub_train": names[:n_train], "xsub_val": names[n_train:]}, "annotations": annos}
    with open(path, "wb") as fh:
        pickle.dump(data, fh, protocol=4)
    return {"sequences": n, "keypoint_gb": nbytes / 1e9, "file_gb": path.stat().st_size / 1e9,
            "mean_frames": float(lengths.mean()), "max_frames": int(lengths.max())}


def write_ctrgcn_standin(path: Path, scale: str, fraction: float, seed: int = 0) -> dict[str, float]:
    """CTR-GCN seq_transformation layout: (N, 300, M*V*C) zero-padded, M=2 slots always."""
    import zipfile

    n_train, n_test, classes, _ = SCALES[scale]
    rng = np.random.default_rng(seed)
    sizes = {"train": max(1, int(n_train * fraction)), "test": max(1, int(n_test * fraction))}
    lengths = []
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
        for split, n in sizes.items():
            with zf.open(f"x_{split}.npy", "w", force_zip64=True) as fh:
                np.lib.format.write_array_header_2_0(fh, {"descr": "<f4", "fortran_order": False, "shape": (n, 300, 150)})
                for _ in range(n):
                    t = int(np.clip(round(rng.lognormal(np.log(60), 0.45)), 32, 300))
                    lengths.append(t)
                    x = np.zeros((300, 150), np.float32)
                    x[:t, : 75 * int(rng.integers(1, 3))] = 1.0 + rng.random((t, 1), dtype=np.float32)
                    fh.write(x.tobytes())
            with zf.open(f"y_{split}.npy", "w") as fh:
                np.lib.format.write_array(fh, np.eye(classes, dtype=np.float32)[rng.integers(0, classes, n)])
    return {"sequences": sum(sizes.values()), "file_gb": path.stat().st_size / 1e9, "mean_frames": float(np.mean(lengths)),
            "max_frames": int(np.max(lengths)), "fraction": fraction}


def phase(name: str, path: str, frames: int) -> dict[str, float]:
    """Runs in a child process: one phase, then its peak RSS."""
    t0 = time.perf_counter()
    import torch  # noqa: F401  (the floor includes torch, as in every edgeskel command)

    from edgeskel.checkpoint import Preprocess
    from edgeskel.data import load_dataset
    from edgeskel.pipeline.steps import split_arrays

    out: dict[str, float] = {}
    if name == "read-whole":  # the reader before memory-mapping: np.load of every member
        from edgeskel.data.readers import ctrgcn

        ctrgcn._map_stored_members = lambda p: None
    if name in ("read", "prepare", "read-whole"):
        spec = f"ctrgcn:{path}" if path.endswith(".npz") else f"pyskl:{path}?split=xsub"
        ds = load_dataset(spec)
        out["train"], out["test"] = len(ds.train), len(ds.test)
        if name == "prepare":
            arrays = split_arrays(ds, Preprocess(num_frames=frames, num_person=2), calib_samples=256, val_cap=None)
            out.update({f"{k}_gb": v.nbytes / 1e9 for k, v in arrays.items() if k.endswith("_x")})
    out["seconds"] = round(time.perf_counter() - t0, 1)
    out["peak_rss_gb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", nargs="+", default=["ntu60", "ntu120"], choices=sorted(SCALES))
    ap.add_argument("--frames", type=int, default=64, help="T after preprocessing (CTR-GCN on NTU uses 64)")
    ap.add_argument("--tmp", default=None, help="folder for the stand-in pickle (default: system temp)")
    ap.add_argument("--format", choices=("pyskl", "ctrgcn"), default="pyskl")
    ap.add_argument("--fraction", type=float, default=1.0, help="ctrgcn only: fraction of the sequences to write")
    ap.add_argument("--phase", help=argparse.SUPPRESS)
    ap.add_argument("--file", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.phase == "write":
        if args.format == "ctrgcn":
            print(json.dumps(write_ctrgcn_standin(Path(args.file), args.scale[0], args.fraction)))
        else:
            print(json.dumps(write_standin(Path(args.file), args.scale[0])))
        return
    if args.phase:
        print(json.dumps(phase(args.phase, args.file, args.frames)))
        return
    env = {**os.environ, "OMP_NUM_THREADS": "1", "EDGESKEL_MAX_INPUT_MB": os.environ.get("EDGESKEL_MAX_INPUT_MB", "16384")}
    results = []
    for scale in args.scale:
        with tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
            pkl = Path(tmp) / f"{scale}_standin.{'npz' if args.format == 'ctrgcn' else 'pkl'}"
            t0 = time.perf_counter()  # written by a child: Linux keeps a parent's peak RSS in its children
            proc = subprocess.run([sys.executable, __file__, "--phase", "write", "--file", str(pkl), "--scale", scale,
                                   "--format", args.format, "--fraction", str(args.fraction)],
                                  env=env, capture_output=True, text=True, check=True)
            info = json.loads(proc.stdout.strip().splitlines()[-1])
            info["write_s"] = round(time.perf_counter() - t0, 1)
            print(f"{scale}: wrote stand-in {info['file_gb']:.2f} GB ({info['sequences']:,} sequences, "
                  f"mean T {info['mean_frames']:.0f}) in {info['write_s']} s", file=sys.stderr, flush=True)
            row = {"scale": scale, **info, "frames": args.frames}
            phases = ("import", "read", "read-whole") if args.format == "ctrgcn" else ("import", "read", "prepare")
            for ph in phases:
                proc = subprocess.run([sys.executable, __file__, "--phase", ph, "--file", str(pkl), "--frames",
                                       str(args.frames)], env=env, capture_output=True, text=True)
                if proc.returncode:
                    raise SystemExit(f"{scale} {ph} failed:\n{proc.stderr[-2000:]}")
                row[ph] = json.loads(proc.stdout.strip().splitlines()[-1])
                print(f"{scale}: {ph}: peak {row[ph]['peak_rss_gb']:.2f} GB in {row[ph]['seconds']} s",
                      file=sys.stderr, flush=True)
        results.append(row)
    if args.format == "ctrgcn":
        print(f"{'scale':7} {'seqs':>8} {'npz GB':>7} {'import GB':>9} {'read (mmap) GB':>14} {'read (whole) GB':>15}")
        for r in results:
            print(f"{r['scale']:7} {r['sequences']:>8,} {r['file_gb']:>7.2f} {r['import']['peak_rss_gb']:>9.2f} "
                  f"{r['read']['peak_rss_gb']:>14.2f} {r['read-whole']['peak_rss_gb']:>15.2f}")
        for r in results:
            print(json.dumps(r))
        return
    print(f"{'scale':7} {'seqs':>8} {'pickle GB':>9} {'import GB':>9} {'read GB':>8} {'prepare GB':>10} "
          f"{'val+test+calib GB':>17}")
    for r in results:
        p = r["prepare"]
        arrays = p.get("val_x_gb", 0) + p.get("test_x_gb", 0) + p.get("calib_x_gb", 0)
        print(f"{r['scale']:7} {r['sequences']:>8,} {r['file_gb']:>9.2f} {r['import']['peak_rss_gb']:>9.2f} "
              f"{r['read']['peak_rss_gb']:>8.2f} {p['peak_rss_gb']:>10.2f} {arrays:>17.2f}")
    for r in results:
        print(json.dumps(r))


if __name__ == "__main__":
    main()
