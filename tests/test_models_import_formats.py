"""Format sniffing before loading: every weights format edgeskel reads imports, every other
one (TFLite, ONNX, TorchScript, HDF5, tar, pickles that need code) gets a message naming it and
what edgeskel accepts, never advice to disable `weights_only`; unsupported architectures are
named from their keys. Each file is made here, tiny."""

from __future__ import annotations

import collections
import io
import os
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn

from edgeskel import models
from edgeskel.checkpoint import load_checkpoint
from edgeskel.cli import main
from edgeskel.errors import CheckpointError
from edgeskel.importers import import_checkpoint, sniff

torch.set_num_threads(1)
FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "official"


def _tiny_ctrgcn() -> tuple[nn.Module, torch.Tensor]:
    torch.manual_seed(0)
    model = models.build("ctrgcn", 5, "kinect20", num_person=1, width=0.125, num_stages=2).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape) * 0.2)
    return model, torch.randn(2, 3, 12, 20, 1)


def _refusal(path: Path, *needles: str) -> str:
    with pytest.raises(CheckpointError) as exc:
        import_checkpoint(path)
    msg = str(exc.value)
    assert str(path) in msg and "weights_only" not in msg
    for n in needles:
        assert n in msg, msg
    return msg


# ---- readable formats ------------------------------------------------------------------------
def test_safetensors_imports(tmp_path):
    from safetensors.torch import save_file

    model, x = _tiny_ctrgcn()
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp_path / "w.safetensors"))
    assert sniff(tmp_path / "w.safetensors") == "safetensors"
    net, spec, info = import_checkpoint(tmp_path / "w.safetensors")
    assert info["format"] == "safetensors" and info["model"] == "ctrgcn" and spec.layout.name == "kinect20"
    with torch.no_grad():
        torch.testing.assert_close(net(x), model(x), atol=1e-6, rtol=0)


def test_paddle_pdparams_reads_through_the_restricted_unpickler(tmp_path):
    """A Paddle port: numpy arrays in a plain pickle, BN stats named _mean/_variance, Linear
    weights stored (in, out), no num_batches_tracked, Paddle's name-map entry."""
    model, x = _tiny_ctrgcn()
    arrays = {}
    for k, v in model.state_dict().items():
        if k.endswith("num_batches_tracked"):
            continue
        k = k.replace(".running_mean", "._mean").replace(".running_var", "._variance")
        arrays[k] = (v.t() if k == "fc.weight" else v).numpy().copy()
    arrays["StructuredToParameterName@@"] = {k: f"param_{i}" for i, k in enumerate(arrays)}
    path = tmp_path / "model.pdparams"
    path.write_bytes(pickle.dumps(arrays, protocol=2))
    assert sniff(path) == "paddle"
    net, _, info = import_checkpoint(path)
    assert (info["format"], info["framework"], info["source"]) == ("paddle", "paddle", "ctrgcn")
    with torch.no_grad():
        torch.testing.assert_close(net(x), model(x), atol=1e-6, rtol=0)


def test_npz_imports(tmp_path):
    model, x = _tiny_ctrgcn()
    np.savez(tmp_path / "w.npz", **{k: v.numpy() for k, v in model.state_dict().items()})
    net, _, info = import_checkpoint(tmp_path / "w.npz")
    assert info["format"] == "npz"
    with torch.no_grad():
        torch.testing.assert_close(net(x), model(x), atol=1e-6, rtol=0)


def test_legacy_torch_format_imports(tmp_path):
    model, x = _tiny_ctrgcn()
    torch.save(collections.OrderedDict(model.state_dict()), tmp_path / "old.pt", _use_new_zipfile_serialization=False)
    assert sniff(tmp_path / "old.pt") == "torch-legacy"
    net, _, _ = import_checkpoint(tmp_path / "old.pt")
    with torch.no_grad():
        torch.testing.assert_close(net(x), model(x), atol=1e-6, rtol=0)


# ---- refused formats: a message naming the format ----------------------------------------------
def _onnx_file(path: Path) -> None:
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])])
    onnx.save(helper.make_model(graph), str(path))


def _torchscript_file(path: Path) -> None:
    torch.jit.save(torch.jit.script(nn.Linear(3, 2)), str(path))


def _tflite_file(path: Path) -> None:
    path.write_bytes(b"\x1c\x00\x00\x00TFL3" + bytes(64))  # flatbuffer root offset + file identifier


def _hdf5_file(path: Path) -> None:
    path.write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(64))


def _tar_file(path: Path) -> None:
    with tarfile.open(path, "w") as tf:
        data = b"not a checkpoint"
        info = tarfile.TarInfo("weights.pt")
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))


REFUSED = {  # file name: (writer, format, words the message must contain)
    "model.onnx": (_onnx_file, "onnx", ("ONNX model",)),
    "export.bin": (_onnx_file, "onnx", ("ONNX model",)),  # recognised from the bytes, not the suffix
    "model.pt": (_torchscript_file, "torchscript", ("TorchScript", "model.state_dict()")),
    "model.tflite": (_tflite_file, "tflite", ("TensorFlow Lite",)),
    "weights.h5": (_hdf5_file, "hdf5", ("HDF5",)),
    "weights.pdparams.tar": (_tar_file, "tar", ("tar archive",)),
}


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_unsupported_format_is_named(name, tmp_path, capsys):
    writer, fmt, words = REFUSED[name]
    path = tmp_path / name
    writer(path)
    assert sniff(path) == fmt
    _refusal(path, *words, "edgeskel accepts")
    rc = main(["import", str(path), "--out", str(tmp_path / "o.ckpt")])  # CLI: one line, exit 2
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("error: ") and err.count("\n") == 1 and words[0] in err
    with pytest.raises(CheckpointError, match="not a readable torch checkpoint: it is") as exc:
        load_checkpoint(path)  # e.g. `edgeskel predict --checkpoint model.tflite`
    assert "weights_only" not in str(exc.value)


class _Boom:
    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_pickle_that_runs_code_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pdparams"
    path.write_bytes(pickle.dumps({"fc.weight": np.zeros((2, 2), np.float32), "x": _Boom(str(marker))}, protocol=2))
    _refusal(path, "Paddle checkpoint", "refused", "numpy arrays only")
    plain = tmp_path / "evil.pkl"
    plain.write_bytes(pickle.dumps({"x": _Boom(str(marker))}, protocol=4))
    assert sniff(plain) == "pickle"
    _refusal(plain, "refused", "posix.system" if os.name == "posix" else "system")
    assert not marker.exists()


def test_training_objects_next_to_the_weights_are_dropped(tmp_path):
    """A training checkpoint pickles more than tensors (argparse args, numpy scalars and arrays
    in logs, classes of packages not installed here): those become inert placeholders, never
    constructed, and only the weights are imported; the edgeskel checkpoint loader, which needs
    nothing of the kind, still refuses such a file."""
    import argparse

    model, x = _tiny_ctrgcn()
    torch.save({"state_dict": model.state_dict(), "args": argparse.Namespace(lr=0.1),
                "message_hub": {"loss": np.float64(0.5), "hist": np.zeros(3)}}, tmp_path / "train.pth")
    net, _, info = import_checkpoint(tmp_path / "train.pth")
    assert "argparse.Namespace" in info["ignored_objects"]
    with torch.no_grad():
        torch.testing.assert_close(net(x), model(x), atol=1e-6, rtol=0)
    with pytest.raises(CheckpointError) as exc:
        load_checkpoint(tmp_path / "train.pth")
    assert "argparse.Namespace" in str(exc.value) and "weights_only" not in str(exc.value)


def test_torch_checkpoint_with_code_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    model, _ = _tiny_ctrgcn()
    torch.save({"state_dict": model.state_dict(), "x": _Boom(str(marker))}, tmp_path / "evil.pth")
    msg = _refusal(tmp_path / "evil.pth", "refused", "system", "never runs code", "torch.save(model.state_dict()")
    assert "state_dict" in msg and not marker.exists()


def test_not_a_regular_file_is_refused(tmp_path):
    fifo = tmp_path / "pipe.pt"
    os.mkfifo(fifo)
    with pytest.raises(CheckpointError, match="not a regular file"):
        import_checkpoint(fifo)


# ---- architectures -----------------------------------------------------------------------------
def test_unsupported_architecture_is_named(tmp_path):
    """Official ST-GCN (yysijie/st-gcn) keys: no importer, but the message says what it is."""
    state = {"data_bn.weight": torch.ones(75), "st_gcn_networks.0.gcn.conv.weight": torch.zeros(192, 3, 1, 1),
             "edge_importance.0": torch.ones(3, 25, 25), "fcn.weight": torch.zeros(60, 256, 1, 1)}
    torch.save(state, tmp_path / "st_gcn.pt")
    msg = _refusal(tmp_path / "st_gcn.pt", "this is ST-GCN (official yysijie/st-gcn", "does not import yet")
    assert "Supported sources: " in msg and "pyskl" in msg


def test_unknown_keys_are_reported(tmp_path):
    torch.save({"encoder.layer.0.weight": torch.zeros(4, 4)}, tmp_path / "x.pt")
    _refusal(tmp_path / "x.pt", "no importer recognises", "encoder.layer.0.weight")


def test_forced_source_that_does_not_fit(tmp_path):
    model, _ = _tiny_ctrgcn()
    torch.save(model.state_dict(), tmp_path / "c.pt")
    with pytest.raises(CheckpointError, match="not those of a pyskl checkpoint.*it looks like ctrgcn -> ctrgcn"):
        import_checkpoint(tmp_path / "c.pt", source="pyskl")


def test_mmaction2_key_naming_imports(tmp_path):
    """mmaction2 1.x: PYSKL backbone keys, head `cls_head.fc.*`, mmengine wrapper entries."""
    d = FIXTURES / "pyskl-aagcn-ntu60"
    if not (d / "checkpoint.pth").is_file():
        pytest.skip("fixture not present")
    sd = torch.load(d / "checkpoint.pth", weights_only=True)["state_dict"]
    sd = {k.replace("cls_head.fc_cls.", "cls_head.fc."): v for k, v in sd.items()}
    torch.save({"meta": {"epoch": 3, "dataset_meta": {"classes": None}}, "state_dict": sd,
                "message_hub": {"log_scalars": {}}}, tmp_path / "mm.pth")
    net, spec, info = import_checkpoint(tmp_path / "mm.pth")
    assert (info["source"], info["model"]) == ("mmaction2", "aagcn")
    x = np.load(d / "input.npy").transpose(0, 4, 2, 3, 1)
    with torch.no_grad():
        got = net(torch.from_numpy(np.ascontiguousarray(x))).numpy()
    np.testing.assert_allclose(got, np.load(d / "logits.npy"), rtol=0, atol=1e-4)


def _fake_module(name: str, **classes: type) -> list[str]:
    """Put `name` (and its parent packages) in sys.modules so pickle can name the classes; returns
    the module names added, for the caller to remove."""
    import sys
    import types

    added = []
    parts = name.split(".")
    for i in range(1, len(parts) + 1):
        sub = ".".join(parts[:i])
        if sub not in sys.modules:
            sys.modules[sub], _ = types.ModuleType(sub), added.append(sub)
    for cls_name, cls in classes.items():
        cls.__module__, cls.__qualname__ = name, cls_name
        setattr(sys.modules[name], cls_name, cls)
    return added


def test_mmengine_training_checkpoint_with_bookkeeping_objects_imports(tmp_path):
    """What `mmaction2 train` writes (epoch_N.pth / best_*.pth): mmengine's message_hub holds
    HistoryBuffer objects and numpy scalars, meta a ConfigDict. They load as inert placeholders
    (nothing of mmengine is imported or run), the weights import; any other global is refused."""
    import sys

    d = FIXTURES / "pyskl-stgcn-ntu60"
    if not (d / "checkpoint.pth").is_file():
        pytest.skip("fixture not present")
    sd = torch.load(d / "checkpoint.pth", weights_only=True)["state_dict"]
    sd = {k.replace("cls_head.fc_cls.", "cls_head.fc."): v for k, v in sd.items()}

    class HistoryBuffer:
        def __init__(self):
            self._log_history, self._count_history, self.max_length = np.arange(3.0), np.ones(3), 1000000

    class ConfigDict(dict):
        pass

    added = _fake_module("mmengine.logging.history_buffer", HistoryBuffer=HistoryBuffer)
    added += _fake_module("mmengine.config.config", ConfigDict=ConfigDict)
    try:
        torch.save({"meta": {"epoch": 80, "cfg": ConfigDict(model={"type": "RecognizerGCN"}), "seed": 0},
                    "state_dict": sd,
                    "message_hub": {"log_scalars": {"train/loss": HistoryBuffer()}, "runtime_info": {"epoch": np.float64(80)}},
                    "optimizer": {"state": {}, "param_groups": []}}, tmp_path / "epoch_80.pth")
    finally:
        for name in added:
            del sys.modules[name]
    net, _, info = import_checkpoint(tmp_path / "epoch_80.pth")
    assert (info["source"], info["model"]) == ("mmaction2", "stgcn")
    x = np.load(d / "input.npy").transpose(0, 4, 2, 3, 1)
    with torch.no_grad():
        got = net(torch.from_numpy(np.ascontiguousarray(x))).numpy()
    np.testing.assert_allclose(got, np.load(d / "logits.npy"), rtol=0, atol=1e-4)

    # the same file with one non-framework global next to the weights is refused, naming it
    class Payload:
        def __reduce__(self):
            return (print, ("pwned",))

    added = _fake_module("mmengine.logging.history_buffer", HistoryBuffer=HistoryBuffer)
    try:
        torch.save({"state_dict": sd, "meta": {"x": Payload()}, "message_hub": {"b": HistoryBuffer()}}, tmp_path / "bad.pth")
    finally:
        for name in added:
            del sys.modules[name]
    _refusal(tmp_path / "bad.pth", "refused to load", "builtins.print")
