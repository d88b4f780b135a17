"""Recognise a weights file's format from its first bytes, then load it safely.

Why sniff first: `torch.load` on anything that is not a torch checkpoint (a TFLite
flatbuffer, a Paddle numpy pickle, an ONNX graph) fails with an unpickling error whose text
advises disabling `weights_only`, which is both wrong and unsafe. Knowing the format up front
lets each file get a message that names it and says what edgeskel accepts, and lets numpy
pickles (Paddle `.pdparams`) load through the restricted unpickler.

Accepted: PyTorch state_dict checkpoints (`torch.save`, zip or legacy format, optionally
wrapped as {"state_dict": ...} / {"model": ...}; other pickled objects next to the weights,
such as argparse args or mmengine's message hub, become inert placeholders and are dropped),
safetensors, numpy `.npz`, and pickles of
numpy arrays (Paddle `.pdparams`). Refused with a message: TorchScript, ONNX, TFLite,
OpenVINO IR, Keras HDF5, TensorRT engines, tar archives, pickles that need code.

Paddle training checkpoints: `paddle.save` of a dict that is not a plain state_dict (e.g. the
Paddle EfficientGCN ports' `{"model": model.state_dict(), "opt": optimizer.state_dict(),
"epoch", "best_state", "scheduler"}`) pickles every tensor as a tuple `(tensor.name,
ndarray)` (its `reduce_varbase`: `builtins.tuple` applied to the pair). The restricted
unpickler rebuilds those tuples like any other; `_to_tensors` then unwraps them to tensors,
exactly where `paddle.load` does (`_transformed_from_varbase`). The weights are taken from
`model`: it is what those ports' own evaluation and export load (`set_state_dict(checkpoint
["model"])`), and `best_state` is not a weight source there (it holds the best epoch's metrics:
`acc_top1`, `acc_top5` and the confusion matrix `cm`). `opt` (per-parameter accumulators,
again `(name, ndarray)` tuples, plus an `LR_Scheduler` dict of numbers), `scheduler` and
`epoch` are read as plain data and dropped. Anything else a file pickles (a Paddle class, or
`eval`, which Paddle uses for raw `LoDTensor` objects that a dygraph model state never
holds) is refused by the restricted unpickler with one message naming the file.
"""

from __future__ import annotations

import pickle
import re
import stat
import zipfile
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from edgeskel.errors import CheckpointError, DataError

ACCEPTED = ("PyTorch state_dict checkpoints (torch.save, zip or legacy format), safetensors, .npz, "
            "and pickles of numpy arrays such as Paddle .pdparams")
EDGESKEL_FORMAT = "edgeskel-checkpoint/1"


@dataclass
class RawCheckpoint:
    """A safely loaded weights file (see `read_checkpoint`)."""

    path: Path
    format: str  # "torch-zip", "torch-legacy", "safetensors", "paddle", "pickle", "npz"
    framework: str  # "torch", "paddle" or "numpy": how 2-D Linear weights are laid out
    state: dict[str, torch.Tensor]  # flat, unwrapped, `module.` stripped
    wrapper: str | None = None  # top-level key the state_dict came from ("state_dict", "model", ...)
    top_keys: list[str] = field(default_factory=list)  # top-level keys of the file (for messages)
    ignored: list[str] = field(default_factory=list)  # pickled classes replaced by inert placeholders

    @property
    def where(self) -> str:
        return str(self.path)


_TORCH_LEGACY_MAGIC = (0x1950A86A20F9469CFC6C).to_bytes(10, "little")
_PADDLE_MARKER = b"StructuredToParameterName@@"
_WRAPPERS = ("state_dict", "model_state_dict", "model", "state", "net", "network", "weights", "params")

# format -> what it is and what to do instead (never: disable weights_only)
_REFUSED = {
    "torchscript": "a TorchScript archive (torch.jit.save): loading it would run the code it contains. "
                   "Save the weights instead: torch.save(model.state_dict(), 'weights.pt')",
    "onnx": "an ONNX model (an exported graph, not training weights); import the training checkpoint "
            "(.pt/.pth) the graph was exported from",
    "tflite": "a TensorFlow Lite flatbuffer (an exported graph); edgeskel imports training checkpoints",
    "openvino": "an OpenVINO IR (an exported graph); import the training checkpoint it was made from",
    "hdf5": "an HDF5 file (Keras/TensorFlow weights); edgeskel imports PyTorch/Paddle training checkpoints",
    "tensorrt": "a TensorRT engine (a compiled graph for one GPU); import the training checkpoint instead",
    "tar": "a tar archive; extract it and import the checkpoint file inside",
    "npy": "a single numpy array, not a set of named weights",
    "zip": "a zip archive that is not a PyTorch checkpoint",
}


_LABELS = {
    "torch-zip": "a PyTorch checkpoint (zip)", "torch-legacy": "a PyTorch checkpoint (legacy format)",
    "pickle": "a plain Python pickle", "paddle": "a Paddle checkpoint (.pdparams pickle)",
    "safetensors": "a safetensors file", "npz": "a numpy .npz archive", "torchscript": "a TorchScript archive",
    "onnx": "an ONNX model", "tflite": "a TensorFlow Lite flatbuffer", "openvino": "an OpenVINO IR",
    "hdf5": "an HDF5 (Keras) file", "tensorrt": "a TensorRT engine", "tar": "a tar archive",
    "npy": "a numpy .npy array", "zip": "a zip archive that is not a PyTorch checkpoint",
    "unknown": "not a format edgeskel knows",
}


def describe(fmt: str) -> str:
    """What a sniffed format is and, for files edgeskel cannot read, what to use instead."""
    if fmt in _REFUSED:
        return _REFUSED[fmt]
    return _LABELS.get(fmt, fmt)


def sniff(path: str | Path) -> str:
    """The format of `path` from its bytes (suffix only breaks ties): one of torch-zip,
    torchscript, torch-legacy, pickle, paddle, safetensors, npz, onnx, tflite, openvino,
    hdf5, tensorrt, tar, npy, zip, unknown."""
    path = Path(path)
    try:
        st = path.stat()
        if not stat.S_ISREG(st.st_mode):  # a FIFO would block open(), a device never ends
            raise CheckpointError(f"{path}: not a regular file")
        size = st.st_size
        with path.open("rb") as fh:
            head = fh.read(512)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: checkpoint file not found") from None
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read: {exc.strerror}") from None
    suffix = "".join(path.suffixes[-2:]).lower()
    if head.startswith(b"PK\x03\x04") or head.startswith(b"PK\x05\x06"):
        return _sniff_zip(path)
    if len(head) >= 8 and head[4:8] == b"TFL3":
        return "tflite"
    if head.startswith(b"\x89HDF\r\n\x1a\n"):
        return "hdf5"
    if head.startswith(b"\x93NUMPY"):
        return "npy"
    if len(head) > 262 and head[257:262] == b"ustar":
        return "tar"
    if head.lstrip().startswith(b"<?xml") and b"<net" in head:
        return "openvino"
    if len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5:
        if head[2:4] == b"\x8a\x0a" and head[4:14] == _TORCH_LEGACY_MAGIC:
            return "torch-legacy"
        if ".pdparams" in suffix or ".pdopt" in suffix or _PADDLE_MARKER in path.read_bytes():
            return "paddle"
        return "pickle"
    if len(head) >= 10 and head[8:9] == b"{":
        n = int.from_bytes(head[:8], "little")
        if 2 <= n <= size - 8:
            return "safetensors"
    if suffix.endswith(".onnx") or (head[:1] == b"\x08" and b"onnx" in head.lower()) or _is_onnx(path, head):
        return "onnx"
    if suffix.endswith((".engine", ".plan", ".trt")):
        return "tensorrt"
    return "unknown"


def _sniff_zip(path: Path) -> str:
    try:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
    except (zipfile.BadZipFile, OSError):
        return "zip"
    if any(n.endswith("/constants.pkl") or "/code/" in n for n in names):
        return "torchscript"
    if any(n.endswith("data.pkl") for n in names):
        return "torch-zip"
    if names and all(n.endswith(".npy") for n in names):
        return "npz"
    return "zip"


def _is_onnx(path: Path, head: bytes) -> bool:
    """ONNX ModelProto starts with field 1 (ir_version, varint): tag byte 0x08."""
    if head[:1] != b"\x08":
        return False
    try:
        import onnx

        model = onnx.load_model(str(path), load_external_data=False)
        return len(model.graph.node) > 0
    except Exception:  # noqa: BLE001 - anything unparsable is simply not ONNX
        return False


def read_checkpoint(path: str | Path) -> RawCheckpoint:
    """Sniff and safely load a weights file; return its flat, unwrapped state_dict."""
    path = Path(path)
    fmt = sniff(path)
    if fmt in _REFUSED:
        raise CheckpointError(f"{path}: {describe(fmt)}. edgeskel accepts {ACCEPTED}")
    if fmt == "unknown":
        raise CheckpointError(f"{path}: unrecognised file format (not a PyTorch, safetensors, Paddle or numpy "
                              f"file). edgeskel accepts {ACCEPTED}")
    framework = "torch"
    ignored: list[str] = []
    if fmt in ("torch-zip", "torch-legacy"):
        payload, ignored = _torch_load(path, fmt)
    elif fmt == "safetensors":
        payload = _safetensors_load(path)
    elif fmt == "npz":
        with np.load(path, allow_pickle=False) as z:
            payload = _to_tensors({k: z[k] for k in z.files})
        framework = "numpy"
    else:  # paddle / plain pickle: only numpy arrays and containers, via the restricted unpickler
        payload = _numpy_pickle_load(path, fmt)
        framework = "paddle" if fmt == "paddle" else "numpy"
    top = [str(k) for k in payload] if isinstance(payload, dict) else []
    if isinstance(payload, dict) and payload.get("format") == EDGESKEL_FORMAT:
        raise CheckpointError(f"{path}: already an edgeskel checkpoint; use it directly (no import needed)")
    state, wrapper = _unwrap(payload, path)
    if fmt == "paddle" or (framework == "numpy" and any(k.endswith(("._mean", "._variance")) for k in state)):
        framework = "paddle"
        state = _paddle_names(state)
    return RawCheckpoint(path=path, format=fmt, framework=framework, state=state, wrapper=wrapper, top_keys=top,
                         ignored=ignored)


# Globals that only an attack needs: a file naming one is refused outright (it would be
# inert here too, see `_Opaque`, but such a file is not a training checkpoint).
_CODE_MODULES = ("os", "posix", "nt", "subprocess", "sys", "builtins", "__builtin__", "runpy", "importlib",
                 "pickle", "marshal", "shutil", "socket", "code", "codeop", "pty", "ctypes", "types", "webbrowser",
                 "functools", "operator", "pdb", "timeit", "platform", "commands", "cPickle", "posixpath")
_MAX_OPAQUE = 64


class _Opaque:
    """Stands in for a class a training script pickled next to its weights (argparse args,
    mmengine's HistoryBuffer, numpy scalars in logs). Created instead of the real object, it
    takes any arguments and state and does nothing, so no code from the file runs; the weights
    are read from the tensors alone and these entries are dropped. One subclass per pickled name,
    so a load error names the class it is about."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        pass

    def __call__(self, *args: Any, **kwargs: Any) -> _Opaque:
        return _Opaque()


def _stand_in(name: str) -> type:
    module, _, cls = name.rpartition(".")
    return type(cls, (_Opaque,), {"__module__": module, "__qualname__": cls})


# torch's loader fills only real dicts, OrderedDicts and lists: a pickled dict subclass (mmengine's
# ConfigDict in `meta`) is loaded as a plain OrderedDict instead, its items kept as data.
_DICT_TARGET = re.compile(r"Can only SETITEMS? for dict.* but got <class '([\w.]+)'>")


def _torch_load(path: Path, fmt: str) -> tuple[Any, list[str]]:
    """torch.load(weights_only=True); classes the file pickles besides tensors are replaced by
    `_Opaque` placeholders, dict subclasses by OrderedDict (torch's allow-list mechanism, one
    retry per class name). Returns (payload, names of the replaced classes)."""
    label = "PyTorch checkpoint (zip)" if fmt == "torch-zip" else "PyTorch checkpoint (legacy format)"
    stand_ins: dict[str, type] = {}
    while True:
        try:
            with torch.serialization.safe_globals([(cls, name) for name, cls in stand_ins.items()]):
                return torch.load(path, map_location="cpu", weights_only=True), sorted(stand_ins)
        except pickle.UnpicklingError as exc:
            dict_like = _DICT_TARGET.search(str(exc))
            if dict_like and stand_ins.get(dict_like.group(1)) not in (None, OrderedDict):
                stand_ins[dict_like.group(1)] = OrderedDict
                continue
            named = {n if "." in n else f"builtins.{n}" for n in re.findall(r"GLOBAL ([\w.]+)", str(exc))}  # torch drops "builtins."
            needs = sorted(named - set(stand_ins))
            code = [n for n in needs if n.split(".")[0] in _CODE_MODULES]
            if code or not needs or len(stand_ins) >= _MAX_OPAQUE:
                shown = ", ".join(code or needs or sorted(stand_ins)[-3:] or ["a Python object"])
                raise CheckpointError(
                    f"{path}: refused to load this {label}: it pickles {shown}, and edgeskel never runs code "
                    "from a checkpoint. Where the model was trained, save only the weights: "
                    "torch.save(model.state_dict(), 'weights.pt')"
                ) from None
            stand_ins.update({n: _stand_in(n) for n in needs})
        except Exception as exc:  # noqa: BLE001 - a corrupt file can make torch.load raise almost anything
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise CheckpointError(f"{path}: {label} is unreadable (truncated or corrupt?): {first}") from None


def _safetensors_load(path: Path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: safetensors file is unreadable: {exc}") from None


def _numpy_pickle_load(path: Path, fmt: str) -> Any:
    from edgeskel.safe_pickle import safe_load

    label = "Paddle checkpoint (.pdparams pickle)" if fmt == "paddle" else "pickle"
    try:
        payload = safe_load(path)
    except DataError as exc:
        raise CheckpointError(f"{path}: refused to load this {label}: {exc.problem}. edgeskel reads pickles of "
                              f"numpy arrays only; it accepts {ACCEPTED}") from None
    return _to_tensors(payload)


def _is_paddle_tensor(obj: Any) -> bool:
    """How `paddle.save` writes a tensor inside a dict that is not a plain state_dict: the tuple
    (tensor.name, ndarray) (`paddle.load`'s `_transformed_from_varbase` test, verbatim)."""
    return isinstance(obj, tuple) and len(obj) == 2 and isinstance(obj[0], str) and isinstance(obj[1], np.ndarray)


def _to_tensors(obj: Any) -> Any:
    if _is_paddle_tensor(obj):
        obj = obj[1]  # the name is Paddle's internal one (conv2d_0.w_0); the dict key is the structured name
    if isinstance(obj, np.ndarray):
        if obj.dtype == object:
            return obj
        return torch.from_numpy(np.array(obj, order="C"))  # a copy; keeps 0-d arrays 0-d
    if isinstance(obj, dict):
        return {k: _to_tensors(v) for k, v in obj.items()}
    return obj


def _kind(v: Any) -> str:
    """A short description of a non-tensor entry for error messages."""
    if isinstance(v, tuple):
        inner = ", ".join(type(x).__name__ for x in v[:3]) + (", ..." if len(v) > 3 else "")
        return f"tuple ({inner})"
    if isinstance(v, np.ndarray):
        return f"ndarray of dtype {v.dtype}"
    return type(v).__name__


def _is_state(d: Any) -> bool:
    return isinstance(d, dict) and bool(d) and all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                                   for k, v in d.items())


def _unwrap(payload: Any, path: Path) -> tuple[dict[str, torch.Tensor], str | None]:
    wrapper = None
    if isinstance(payload, dict) and not _is_state(payload):
        payload = {k: v for k, v in payload.items() if k != _PADDLE_MARKER.decode()}
        if not _is_state(payload):
            for key in _WRAPPERS:
                if _is_state(payload.get(key)):
                    payload, wrapper = payload[key], key
                    break
    if not isinstance(payload, dict) or not payload:
        raise CheckpointError(f"{path}: expected a state_dict (mapping of names to tensors), got {type(payload).__name__}")
    if wrapper is None and not _is_state(payload):
        # a training container whose weights entry holds something else: name what is wrong inside it
        inner = next((key for key in _WRAPPERS if isinstance(payload.get(key), dict) and payload[key]), None)
        if inner is not None:
            odd = [f"{k} ({_kind(v)})" for k, v in payload[inner].items()
                   if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
            raise CheckpointError(f"{path}: not a state_dict: {inner!r} holds non-tensor entries ({len(odd)} of "
                                  f"{len(payload[inner])}): {', '.join(odd[:4])}{', ...' if len(odd) > 4 else ''} "
                                  "(a weight must be an array, or Paddle's (name, numpy array) pair)")
    bad = [str(k) for k, v in payload.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(f"{path}: not a state_dict: non-tensor entries {bad[:8]} (looked inside "
                              f"{', '.join(repr(w) for w in _WRAPPERS)})")
    out: dict[str, torch.Tensor] = {}
    for k, v in payload.items():
        while k.startswith("module."):
            k = k[len("module."):]
        out[k] = v
    return out, wrapper


def _paddle_names(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Paddle BatchNorm statistics are `_mean`/`_variance`; torch calls them running_*."""
    out = {}
    for k, v in state.items():
        if k.endswith("._mean"):
            k = k[: -len("._mean")] + ".running_mean"
        elif k.endswith("._variance"):
            k = k[: -len("._variance")] + ".running_var"
        out[k] = v
    return out
