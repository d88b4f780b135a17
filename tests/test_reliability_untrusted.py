"""Untrusted files (issue 8): pickles never run code, checkpoints load with weights_only,
ONNX / OpenVINO files are checked before use, a checkpoint for another architecture lists
the mismatched keys and shapes.

Every refused payload would, if executed, create a marker file; the tests assert it was not.
"""

from __future__ import annotations

import os
import pickle
import subprocess
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper
from test_devices_common import tiny_onnx

from edgeskel.checkpoint import ModelSpec, Preprocess, load_checkpoint, save_checkpoint
from edgeskel.data import safe_loads
from edgeskel.errors import CheckpointError, ExportError, UnsafePickleError
from edgeskel.io import torch_load_safe
from edgeskel.layouts import get_layout
from edgeskel.models import build
from edgeskel.runtime import get_runner


class _System:
    """Unpickling this calls os.system(touch marker)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # noqa: ANN204
        return (os.system, (f"touch {self.marker}",))


class _Popen:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # noqa: ANN204
        return (subprocess.Popen, (["touch", str(self.marker)],))


class _Exec:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # noqa: ANN204
        return (exec, (f"open({str(self.marker)!r}, 'w').close()",))


PAYLOADS = [_System, _Popen, _Exec]


# ------------------------------------------------------------------------------ dataset pickles
@pytest.mark.parametrize("protocol", range(0, pickle.HIGHEST_PROTOCOL + 1))
@pytest.mark.parametrize("payload", PAYLOADS, ids=lambda c: c.__name__)
def test_restricted_unpickler_refuses_code_in_every_protocol(tmp_path, protocol, payload):
    marker = tmp_path / "pwned"
    blob = pickle.dumps({"annotations": [{"keypoint": np.zeros((1, 2, 3, 3)), "x": payload(marker)}]}, protocol)
    with pytest.raises(UnsafePickleError) as ei:
        safe_loads(blob, tmp_path / "ann.pkl")
    assert str(tmp_path / "ann.pkl") in str(ei.value) and "refus" in str(ei.value).lower()
    assert not marker.exists()


@pytest.mark.parametrize("protocol", range(0, pickle.HIGHEST_PROTOCOL + 1))
def test_restricted_unpickler_keeps_plain_data(protocol):
    """What PYSKL annotation files contain still loads: containers, scalars, numpy arrays."""
    from collections import OrderedDict

    obj = {"split": {"xsub_train": ["a", "b"]}, "annotations": [OrderedDict(
        frame_dir="a", label=3, total_frames=5, img_shape=(1080, 1920), score=np.float32(0.5),
        keypoint=np.arange(30, dtype=np.float16).reshape(1, 5, 2, 3), flags={1, 2}, raw=b"\x00\x01")]}
    back = safe_loads(pickle.dumps(obj, protocol), "ok.pkl")
    a, b = obj["annotations"][0], back["annotations"][0]
    assert back["split"] == obj["split"] and a["label"] == b["label"] and a["flags"] == b["flags"]
    assert b["keypoint"].dtype == np.float16 and np.array_equal(a["keypoint"], b["keypoint"])


# ------------------------------------------------------------------------------ checkpoints
@pytest.mark.parametrize("payload", PAYLOADS, ids=lambda c: c.__name__)
def test_checkpoint_with_code_is_refused(tmp_path, payload):
    """An edgeskel checkpoint, a trainer resume state, and an official checkpoint handed to an
    importer are all loaded with weights_only=True: the payload never runs."""
    from edgeskel.importers import import_official

    marker = tmp_path / "pwned"
    p = tmp_path / "evil.ckpt"
    torch.save({"format": "edgeskel-checkpoint/1", "spec": {}, "state_dict": {"w": torch.zeros(2)},
                "extra": payload(marker)}, p)
    with pytest.raises(CheckpointError, match="refused to load") as ei:
        load_checkpoint(p)
    assert str(p) in str(ei.value)
    with pytest.raises(CheckpointError, match="refused to load"):
        torch_load_safe(p)
    with pytest.raises(CheckpointError, match="refused"):
        import_official("ctrgcn", p, "ctrgcn", "ntu25")
    assert not marker.exists()


@pytest.mark.parametrize("content, match", [
    (b"", "not a readable torch checkpoint"),
    (b"PK\x03\x04 garbage", "not a readable torch checkpoint"),
    (b"\x80\x02}q\x00.", "not a readable torch checkpoint"),  # a bare pickle, not a torch file
    ({"weights": [1, 2]}, "not an edgeskel checkpoint$"),
    ({"state_dict": {"fc.weight": torch.zeros(2)}}, "another tool: convert it with `edgeskel import`"),
    ([torch.zeros(2)], "not an edgeskel checkpoint"),
])
def test_garbage_checkpoints(tmp_path, content, match):
    p = tmp_path / "c.ckpt"
    if isinstance(content, bytes):
        p.write_bytes(content)
    else:
        torch.save(content, p)
    with pytest.raises(CheckpointError, match=match) as ei:
        load_checkpoint(p)
    assert str(p) in str(ei.value)


def _tiny_stgcn(width: float) -> tuple[torch.nn.Module, ModelSpec]:
    lay = get_layout("kinect20")
    kw = {"num_person": 1, "width": width, "num_stages": 2}
    spec = ModelSpec(name="stgcn", num_classes=4, layout=lay, kwargs=kw, class_names=list("abcd"),
                     preprocess=Preprocess(num_frames=8, num_person=1))
    return build("stgcn", 4, lay, **kw), spec


def test_checkpoint_for_another_architecture_lists_keys_and_shapes(tmp_path):
    model, spec = _tiny_stgcn(0.25)
    p = save_checkpoint(tmp_path / "a.ckpt", model, spec)
    payload = torch_load_safe(p)
    payload["spec"]["kwargs"]["width"] = 0.5  # same layers, other widths
    torch.save(payload, tmp_path / "wide.ckpt")
    with pytest.raises(CheckpointError) as ei:
        load_checkpoint(tmp_path / "wide.ckpt")
    msg = str(ei.value)
    assert str(tmp_path / "wide.ckpt") in msg and "shape mismatches" in msg
    assert "gcn.0.gcn.conv.weight: checkpoint (48, 3, 1, 1) vs model (96, 3, 1, 1)" in msg
    payload["spec"]["kwargs"].update(width=0.25, num_stages=3)  # one block more: missing keys
    torch.save(payload, tmp_path / "deeper.ckpt")
    with pytest.raises(CheckpointError, match=r"missing keys \(\d+\): gcn\.2\."):
        load_checkpoint(tmp_path / "deeper.ckpt")
    payload["spec"]["kwargs"]["num_stages"] = 1  # one block fewer: unexpected keys
    torch.save(payload, tmp_path / "shallow.ckpt")
    with pytest.raises(CheckpointError, match=r"unexpected keys \(\d+\): gcn\.1\."):
        load_checkpoint(tmp_path / "shallow.ckpt")


# ------------------------------------------------------------------------------ ONNX / OpenVINO
def _onnx_variants(tmp_path: Path) -> dict[str, Path]:
    good = tmp_path / "good.onnx"
    tiny_onnx(good)
    out: dict[str, Path] = {}
    out["truncated"] = tmp_path / "truncated.onnx"
    out["truncated"].write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    out["empty"] = tmp_path / "empty.onnx"
    out["empty"].write_bytes(b"")
    m = onnx.load(str(good))
    m.graph.node[1].input[0] = "undefined_tensor"  # graph refers to a tensor nobody produces
    out["dangling"] = tmp_path / "dangling.onnx"
    onnx.save(m, str(out["dangling"]))
    # external weights outside the model's folder (path traversal)
    (tmp_path / "model").mkdir()
    (tmp_path / "secret.bin").write_bytes(np.ones(10_000, np.float32).tobytes())
    m = onnx.load(str(good))
    w = m.graph.initializer[0]
    n = numpy_helper.to_array(w).nbytes
    w.ClearField("raw_data")
    w.data_location = TensorProto.EXTERNAL
    for k, v in (("location", "../secret.bin"), ("offset", "0"), ("length", str(n))):
        e = w.external_data.add()
        e.key, e.value = k, v
    out["traversal"] = tmp_path / "model" / "evil.onnx"
    onnx.save(m, str(out["traversal"]))
    # a node type no ONNX opset has
    m = onnx.load(str(good))
    m.graph.node.append(helper.make_node("TotallyCustomOp", ["logits"], ["extra"]))
    out["unknown-op"] = tmp_path / "unknown_op.onnx"
    onnx.save(m, str(out["unknown-op"]))
    return out


@pytest.mark.parametrize("backend", ["ort", "openvino"])
def test_broken_onnx_files_are_refused_before_use(tmp_path, backend):
    for kind, path in _onnx_variants(tmp_path).items():
        with pytest.raises(ExportError) as ei:
            get_runner(backend, path).load()
        assert str(path) in str(ei.value), (kind, str(ei.value))
        assert "\n" not in str(ei.value), kind


def test_broken_openvino_ir_is_refused(tmp_path):
    from edgeskel.quantize.openvino import to_openvino_ir

    tiny_onnx(tmp_path / "m.onnx")
    xml = to_openvino_ir(tmp_path / "m.onnx", tmp_path / "ir" / "model.xml", fp16=False)
    with get_runner("openvino", xml) as r:  # the intact IR works
        assert r.infer(np.zeros((2, 3, 8, 5, 1), np.float32)).shape == (2, 6)
    bad = tmp_path / "bad"
    bad.mkdir()
    cases = {
        "garbage-xml": (b"<net><oops", xml.with_suffix(".bin").read_bytes()),
        "truncated-bin": (xml.read_bytes(), xml.with_suffix(".bin").read_bytes()[:10]),
        "no-bin": (xml.read_bytes(), None),
    }
    for kind, (x, b) in cases.items():
        p = bad / f"{kind}.xml"
        p.write_bytes(x)
        if b is not None:
            p.with_suffix(".bin").write_bytes(b)
        with pytest.raises(ExportError) as ei:
            get_runner("openvino", p).load()
        assert str(p) in str(ei.value) or str(p.with_suffix(".bin")) in str(ei.value), (kind, str(ei.value))
