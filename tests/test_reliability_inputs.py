"""Unbounded inputs (issue 17, item 4): readers take regular files only, under a size cap,
and the restricted unpickler builds no more than a pickle of its size can hold.

Attacks that used to take the machine or hang: a 52-byte pickle building
frozenset(range(3_000_000)) (+270 MB), `pyskl:/dev/zero` (read until MemoryError), a FIFO
(open() blocks forever). Each is now one `DataError` naming the file. The FIFO cases run in a
subprocess with a timeout so that a regression fails the test instead of hanging the suite.
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import tracemalloc
import zipfile
from pathlib import Path

import numpy as np
import pytest

from edgeskel.errors import CheckpointError, ConfigError, DataError
from edgeskel.safe_pickle import safe_load, safe_loads

REPO = Path(__file__).resolve().parents[1]

# Hand-written pickles (protocol 0 text): allowed globals called with arguments that build
# far more than the file holds.
BOMBS = {
    "frozenset-range": b"cbuiltins\nfrozenset\n(cbuiltins\nrange\n(I0\nI3000000\ntRtR.",
    "list-range-huge": b"cbuiltins\nlist\n(cbuiltins\nrange\n(I0\nI1000000000000000000000\ntRtR.",
    "bytes-int": b"cbuiltins\nbytes\n(I100000000000\ntR.",
    "bytearray-int": b"cbuiltins\nbytearray\n(I4000000000\ntR.",
    "set-range": b"cbuiltins\nset\n(cbuiltins\nrange\n(I0\nI50000000\ntRtR.",
    "dict-fromkeys-like": b"c__builtin__\ntuple\n(c__builtin__\nrange\n(I0\nI20000000\ntRtR.",
}


@pytest.mark.parametrize("name", sorted(BOMBS))
def test_pickle_bombs_are_refused_before_they_build(name):
    data = BOMBS[name]
    assert len(data) < 80
    tracemalloc.start()
    try:
        with pytest.raises(DataError, match=r"refused: the pickle asks (__)?builtin(s|__)\.\w+\(\) to build [\d,]+ elements"):
            safe_loads(data, "bomb.pkl")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 5 << 20, f"{peak / 1e6:.0f} MB allocated before refusing"


def test_the_52_byte_frozenset_pickle_of_the_issue():
    data = pickle.dumps(frozenset(range(3)), protocol=0).replace(b"I3\n", b"I3000000\n")
    data = b"cbuiltins\nfrozenset\n(cbuiltins\nrange\n(I0\nI3000000\ntRtR."
    assert len(data) <= 60
    with pytest.raises(DataError, match="bomb.pkl: refused"):
        safe_loads(data, "bomb.pkl")


def test_shared_reference_nesting_is_refused():
    """A "billion laughs": 8 levels of a 10-element list that repeats one sub-list: 10**8
    elements for anything that walks it, from a pickle of a few hundred bytes."""
    x: object = [1.0] * 10
    for _ in range(7):
        x = [x] * 10
    data = pickle.dumps({"split": {}, "annotations": x}, protocol=4)
    assert len(data) < 1000
    with pytest.raises(DataError, match="refused: the pickle's containers hold more elements"):
        safe_loads(data, "laughs.pkl")


@pytest.mark.parametrize("protocol", range(0, pickle.HIGHEST_PROTOCOL + 1))
def test_real_pickles_still_load(protocol):
    """Plain data within budget loads unchanged in every protocol: sets, frozensets, ranges,
    bytes, bytearrays, OrderedDicts, numpy arrays, and a shared sub-list used twice."""
    import collections

    shared = list(range(100))
    obj = {"split": {"xsub_train": [f"S{i:03d}" for i in range(2000)]}, "set": set(range(500)),
           "fs": frozenset({1, 2}), "b": bytes(300), "ba": bytearray(b"xy" * 100),
           "od": collections.OrderedDict(a=1), "arr": np.arange(10_000, dtype=np.float32).reshape(100, 100),
           "twice": [shared, shared], "c": complex(1, 2)}
    back = safe_loads(pickle.dumps(obj, protocol=protocol), "ok.pkl")
    assert back["split"] == obj["split"] and back["set"] == obj["set"]
    assert back["b"] == obj["b"] and back["ba"] == obj["ba"] and back["od"] == obj["od"] and back["c"] == obj["c"]
    np.testing.assert_array_equal(back["arr"], obj["arr"])


# ------------------------------------------------------------------------------ not regular files
def test_pyskl_dev_zero_is_refused(capsys):
    from edgeskel.cli import main

    rc = main(["data", "pyskl:/dev/zero"])
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert rc == 2 and len(lines) == 1 and "Traceback" not in err, err
    assert lines[0] == "error: /dev/zero: refused: the path is a device, not a regular file"


FIFO_LOADERS = {
    "pyskl": "from edgeskel.data import load_dataset; load_dataset('pyskl:' + P)",
    "ntu": "from edgeskel.data import load_dataset; load_dataset('ntu:' + P)",
    "ctrgcn": "from edgeskel.data import load_dataset; load_dataset('ctrgcn:' + P)",
    "json": "from edgeskel.data.readers.common import read_json; from pathlib import Path; read_json(Path(P))",
    "text": "from edgeskel.data.readers.common import read_text; from pathlib import Path; read_text(Path(P))",
    "safe_load": "from edgeskel.safe_pickle import safe_load; safe_load(P)",
    "checkpoint": "from edgeskel.io import torch_load_safe; torch_load_safe(P)",
}
FIFO_NAMES = {"pyskl": "a.pkl", "ntu": "S001C001P001R001A001.skeleton", "ctrgcn": "NTU60_CS.npz", "json": "a.json",
              "text": "a.txt", "safe_load": "a.pkl", "checkpoint": "a.ckpt"}


def test_fifo_is_refused_without_hanging(tmp_path):
    """Every reader in one subprocess (one import of edgeskel), each kind printed as it
    finishes, so a hang names the reader that hangs."""
    lines = ["from edgeskel.errors import EdgeskelError"]
    for kind in sorted(FIFO_LOADERS):
        fifo = tmp_path / kind / FIFO_NAMES[kind]
        fifo.parent.mkdir()
        os.mkfifo(fifo)
        lines += [f"P = {str(fifo)!r}", "try:", f"    {FIFO_LOADERS[kind]}", "except EdgeskelError as e:",
                  f"    print({kind!r}, 'ERR', e, flush=True)", "else:", f"    print({kind!r}, 'LOADED', flush=True)"]
    proc = subprocess.Popen([sys.executable, "-c", "\n".join(lines)], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=dict(os.environ, OMP_NUM_THREADS="1"))
    try:
        out, err = proc.communicate(timeout=90)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        done = [ln.split()[0] for ln in out.splitlines()]
        pytest.fail(f"reading a FIFO hangs in {[k for k in sorted(FIFO_LOADERS) if k not in done][:1]}")
    assert proc.returncode == 0, err[-2000:]
    got = {ln.split()[0]: ln for ln in out.splitlines()}
    assert sorted(got) == sorted(FIFO_LOADERS), out
    for kind, line in got.items():
        assert f"{kind} ERR {tmp_path / kind}" in line, line
        assert "is a FIFO, not a regular file" in line or "no .skeleton" in line, line


# ------------------------------------------------------------------------------ size caps
def test_size_caps(tmp_path, monkeypatch):
    from edgeskel.data.readers.common import read_json, read_text

    big = tmp_path / "big.json"
    big.write_text(json.dumps({"skeletons": [[0.0] * 100_000]}))  # ~0.5 MB
    pkl = tmp_path / "big.pkl"
    pkl.write_bytes(pickle.dumps({"x": np.zeros(200_000, np.float32)}))
    monkeypatch.setenv("EDGESKEL_MAX_INPUT_MB", "0.25")
    for fn, p in ((read_json, big), (read_text, big), (safe_load, pkl)):
        with pytest.raises(DataError, match=rf"{p.name}: refused: the path is 0\.\d MB, above the 0 MB cap .*"
                                            r"EDGESKEL_MAX_INPUT_MB"):
            fn(p)
    monkeypatch.setenv("EDGESKEL_MAX_INPUT_MB", "1")
    assert read_json(big)["skeletons"][0][0] == 0.0 and safe_load(pkl)["x"].shape == (200_000,)


def _npy_header(shape: tuple[int, ...]) -> bytes:
    import io

    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": "<f4", "fortran_order": False, "shape": shape})
    return buf.getvalue()


def test_npz_declaring_huge_arrays_is_refused_before_allocating(tmp_path):
    """A 1 KB .npz whose member header declares a (10**6, 10**6) float32 array (4 TB)."""
    from edgeskel.data import load_dataset

    p = tmp_path / "NTU60_CS.npz"
    with zipfile.ZipFile(p, "w") as zf:
        zf.writestr("x_train.npy", _npy_header((10**6, 10**6)))
        zf.writestr("y_train.npy", _npy_header((10,)) + bytes(40))
    assert p.stat().st_size < 2000
    with pytest.raises(DataError, match=r"NTU60_CS\.npz: refused: the arrays in this \.npz would take \d+ MB"):
        load_dataset(f"ctrgcn:{p}")


def test_checkpoint_that_is_a_folder_or_device(tmp_path):
    with pytest.raises(CheckpointError, match="is a folder, not a regular file"):
        from edgeskel.io import torch_load_safe

        torch_load_safe(tmp_path)
    with pytest.raises(CheckpointError, match="/dev/zero: not a checkpoint: the path is a device"):
        torch_load_safe("/dev/zero")


# ------------------------------------------------------------------------------ YAML (recipes, profiles)
def test_yaml_alias_bomb_in_a_recipe_is_refused(tmp_path):
    """9 levels of 10 aliases: 10**9 values once expanded (by validation, or by hashing the
    recipe into the manifest), from a 1 KB recipe. Refused when the file is read."""
    from edgeskel.recipe import load_recipe

    lines = ["a0: &a0 [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]"]
    for i in range(1, 9):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]")
    text = "name: bomb\nmodel:\n  name: stgcn\n  kwargs:\n" + "".join(f"    {ln}\n" for ln in lines)
    p = tmp_path / "bomb.yaml"
    p.write_text(text)
    assert len(text) < 1500
    with pytest.raises(ConfigError, match=r"bomb\.yaml: refused recipe: its aliases .* expand to more values"):
        load_recipe(p)
    p.write_text("name: ok\nmodel: {name: stgcn, kwargs: {x: &x [1, 2], y: *x}}\n")  # a plain alias is fine
    assert load_recipe(p)[0].model.kwargs == {"x": [1, 2], "y": [1, 2]}


def test_profile_that_is_a_fifo_or_too_big(tmp_path, monkeypatch):
    from edgeskel import config_errors
    from edgeskel.devices import load_profile

    fifo = tmp_path / "dev.yaml"
    os.mkfifo(fifo)
    with pytest.raises(ConfigError, match=r"dev\.yaml: cannot read device profile: the path is a FIFO"):
        load_profile(fifo)
    big = tmp_path / "big.yaml"
    big.write_text("name: x\ndescription: '" + "x" * 3000 + "'\n")
    monkeypatch.setattr(config_errors, "YAML_CAP_BYTES", 1000)
    with pytest.raises(ConfigError, match=r"big\.yaml: cannot read device profile: the path is 0\.0 MB, above"):
        load_profile(big)
