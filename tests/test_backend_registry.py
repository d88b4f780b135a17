"""The backend registry (edgeskel/backends/) is the one list of backends (issue 28 item 3):
what it holds, that no other module keeps a list of backend names, and that a new backend is
one file."""

from __future__ import annotations

import ast
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import edgeskel.backends as backends
from edgeskel.backends import backend_names, device_records, get_backend, precisions, registry
from edgeskel.errors import ConfigError, ExportError

PKG = Path(backends.__file__).resolve().parent.parent  # edgeskel/


def test_registry_lists_the_backends_with_their_precisions():
    assert {n: precisions(n) for n in backend_names()} == {
        "onnx": ("fp32", "int8"),
        "openvino": ("fp32", "fp16", "bf16", "int8"),
        "ort": ("fp32", "int8"),
        "tensorrt": ("fp16", "int8"),
        "torch": ("fp32",),
    }
    assert backend_names(in_profiles=True) == ["openvino", "ort", "tensorrt", "torch"]
    assert backend_names(exported=True) == ["onnx", "openvino", "ort", "tensorrt"]
    assert backend_names(runs_here=True) == backend_names(layer_timing=True) == ["openvino", "ort"]
    assert backend_names(interleavable=True) == ["openvino", "ort"]
    assert get_backend("tensorrt").runtime_modules == ("tensorrt", "cuda")
    assert get_backend("ort").dists == ("onnxruntime", "onnxruntime-gpu")
    assert get_backend("onnx").runner == "ort"
    with pytest.raises(ConfigError, match=r"unknown backend 'openvno' \(did you mean 'openvino'\?\); available: onnx, "):
        get_backend("openvno")


# --------------------------------------------------------------------------- no other lists

def _literal_names(node: ast.AST) -> list[str] | None:
    """The string members of a tuple/list/set, a dict's keys or a Literal[...]'s arguments."""
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        elts = node.elts
    elif isinstance(node, ast.Dict):
        elts = [k for k in node.keys if k is not None]
    elif isinstance(node, ast.Subscript) and getattr(node.value, "id", getattr(node.value, "attr", None)) == "Literal":
        elts = node.slice.elts if isinstance(node.slice, ast.Tuple) else [node.slice]
    else:
        return None
    return [e.value for e in elts if isinstance(e, ast.Constant) and isinstance(e.value, str)]


def _legacy_fallback(tree: ast.Module) -> set[int]:
    """ids of the nodes of device_runner.py's LEGACY_BACKENDS (old bundles only; whitelisted)."""
    for stmt in tree.body:
        targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target] if isinstance(stmt, ast.AnnAssign) else []
        if any(getattr(t, "id", None) == "LEGACY_BACKENDS" for t in targets):
            return {id(n) for n in ast.walk(stmt)}
    return set()


def backend_lists(root: Path = PKG) -> list[str]:
    """Every tuple/list/set/dict/Literal outside edgeskel/backends/ that lists backends: at least two
    string members, all of them backend names (`("ort", "openvino")`, `{"ort": ..., "tensorrt": ...}`),
    or "ort" with another backend name. Lists of libraries ("torch", "onnx", "onnxslim") or file
    formats name other things too and are not backend lists."""
    names = set(backend_names())
    found: dict[str, str] = {}  # one line per place (a Literal and its tuple are one list)
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root.parent).as_posix()
        if rel.startswith("edgeskel/backends/"):
            continue
        tree = ast.parse(path.read_text(), filename=rel)
        allowed = _legacy_fallback(tree) if rel == "edgeskel/remote/device_runner.py" else set()
        for node in ast.walk(tree):
            strs = _literal_names(node)
            if not strs or id(node) in allowed:
                continue
            hits = [s for s in strs if s in names]
            if (len(strs) >= 2 and len(hits) == len(strs)) or ("ort" in hits and len(hits) >= 2):
                found.setdefault(f"{rel}:{node.lineno}", f"{rel}:{node.lineno}: {hits}")
    return list(found.values())


def test_no_backend_name_list_outside_the_registry():
    assert backend_lists() == [], "backend lists outside edgeskel/backends/ (read the registry instead)"


def test_the_grep_finds_a_backend_list(tmp_path):
    pkg = tmp_path / "edgeskel"
    (pkg / "remote").mkdir(parents=True)
    (pkg / "a.py").write_text('X = ("ort", "openvino")\nLIBS = ("torch", "onnx", "onnxslim")\n'
                              'def f(b):\n    return b in ["tensorrt", "ort", "numpy"]\n')
    (pkg / "b.py").write_text('from typing import Literal\nB = Literal["openvino", "torch"]\nD = {"torch": 1, "onnx": 2}\n')
    (pkg / "remote" / "device_runner.py").write_text('LEGACY_BACKENDS = {"ort": {}, "tensorrt": {}}\n'
                                                     'RUNTIMES = {"ort": 1, "tensorrt": 2}\n')
    assert [f.split(": ")[0] for f in backend_lists(pkg)] == [
        "edgeskel/a.py:1", "edgeskel/a.py:4", "edgeskel/b.py:2", "edgeskel/b.py:3", "edgeskel/remote/device_runner.py:2"]


# --------------------------------------------------------------------------- a new backend

TFLITE = '''
"""TensorFlow Lite (the worked example of docs/DESIGN.md "Backends")."""

from edgeskel.backends.spec import BackendSpec

BACKEND = BackendSpec(
    name="tflite",
    summary="TensorFlow Lite interpreter on the CPU",
    precisions=("fp32", "fp16", "int8"),
    runtime_modules=("tflite_runtime",),
    dists=("tflite-runtime", "tensorflow"),
    install_hints={"tflite_runtime": "pip install tflite-runtime"},
    runner="tflite",
)
'''


@pytest.fixture
def tflite_file(tmp_path, monkeypatch):
    """A new backend = one file next to the others (here: a folder added to the package's path,
    so the test edits nothing in the source tree); the registry discovers it."""
    extra = tmp_path / "more_backends"
    extra.mkdir()
    (extra / "tflite.py").write_text(textwrap.dedent(TFLITE))
    monkeypatch.setattr(backends, "__path__", [*backends.__path__, str(extra)])
    backends.refresh()
    yield extra / "tflite.py"
    sys.modules.pop("edgeskel.backends.tflite", None)
    backends.refresh()


def test_a_new_backend_is_one_file(tflite_file):
    from edgeskel.compress.config import CompressionConfig
    from edgeskel.devices import profile_from_dict
    from edgeskel.export.api import export_variant
    from edgeskel.remote.remote import backend_modules, install_hint

    assert "tflite" in backend_names(in_profiles=True) and precisions("tflite") == ("fp32", "fp16", "int8")
    # a device profile may name it
    prof = profile_from_dict({"name": "phone", "arch": "aarch64", "variants": [{"backend": "tflite", "precision": "int8"}],
                              "peak": {"gflops_fp32": 10, "memory_bandwidth_gbs": 10, "source": "test"}})
    assert prof.variants[0].key == "tflite-int8"
    # export's precision check knows it: a precision it lacks is refused, one it has gets past the
    # check (to the next one: int8 without calibration data)
    model, spec = object(), object()
    with pytest.raises(ConfigError, match=r"backend 'tflite' supports precisions \['fp32', 'fp16', 'int8'\], not 'bf16'"):
        export_variant(model, spec, "tflite", "bf16", tflite_file.parent / "out")
    with pytest.raises(ExportError, match="tflite int8 needs calibration data"):
        export_variant(model, spec, "tflite", "int8", tflite_file.parent / "out")
    # the device check and the bundle know what it needs on the device
    assert backend_modules("tflite") == ["tflite_runtime"]
    assert install_hint("tflite_runtime") == "pip install tflite-runtime"
    assert device_records()["tflite"] == {"runtime_modules": ["tflite_runtime"], "dists": ["tflite-runtime", "tensorflow"],
                                          "interleavable": False}
    # not timed by the layer table (layer_timing False): the recipe key says which may be
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="latency_backend"):
        CompressionConfig(latency_backend="tflite")


def test_without_the_file_it_is_unknown():
    from edgeskel.devices import profile_from_dict

    with pytest.raises(ConfigError, match=r"variants\.0\.backend: 'tflite' is not one of: openvino, ort, tensorrt, torch$"):
        profile_from_dict({"name": "phone", "arch": "aarch64", "variants": [{"backend": "tflite", "precision": "int8"}],
                           "peak": {"gflops_fp32": 10, "memory_bandwidth_gbs": 10, "source": "test"}})


def test_a_broken_backend_file_names_itself(tmp_path, monkeypatch):
    extra = tmp_path / "more"
    extra.mkdir()
    (extra / "qnn.py").write_text(TFLITE.replace('runner="tflite"', 'runner="qnn"'))  # name says tflite
    monkeypatch.setattr(backends, "__path__", [*backends.__path__, str(extra)])
    backends.refresh()
    try:
        with pytest.raises(ConfigError, match=r"edgeskel/backends/qnn.py: BACKEND.name is 'tflite'; it must be the file's name 'qnn'"):
            registry()
    finally:
        sys.modules.pop("edgeskel.backends.qnn", None)
        backends.refresh()


# --------------------------------------------------------------------------- the device runner

def test_device_runner_reads_backends_from_the_bundle():
    from edgeskel.remote import device_runner as dr

    new = {"backends": {**device_records(), "ort": {"runtime_modules": ["onnxruntime"], "dists": ["onnxruntime"],
                                                    "interleavable": False}}}
    assert dr.interleavable({"backend": "ort"}) and dr.interleavable({"backend": "openvino"}, new)
    assert not dr.interleavable({"backend": "ort"}, new)  # the bundle says so
    assert not dr.interleavable({"backend": "tensorrt"}, new)
    assert dr.backend_info(new, "tensorrt")["runtime_modules"] == ["tensorrt", "cuda"]
    assert dr.backend_info({}, "tensorrt")["runtime_modules"] == ["tensorrt"]  # an old bundle: legacy defaults
    env = dr.environment({"backends": {"other": {"runtime_modules": ["numpy"], "dists": ["numpy"]}}})
    assert env["runtimes"] == {"other": np.__version__}
    assert set(dr.environment({})["runtimes"]) == set(dr.LEGACY_BACKENDS)


def test_bundle_carries_the_registry(tmp_path):
    from types import SimpleNamespace

    from edgeskel.remote.bundle import make_layer_bundle, read_bundle

    onnx_file = tmp_path / "layer.onnx"
    onnx_file.write_bytes(b"not read")
    profile = SimpleNamespace(name="cpu", arch="x86_64", threads=1)
    make_layer_bundle(tmp_path / "b", [{"name": "l0", "path": onnx_file, "backend": "ort", "input_shape": [1, 2],
                                        "group": "g0"}], profile)
    assert read_bundle(tmp_path / "b")["backends"] == device_records()
