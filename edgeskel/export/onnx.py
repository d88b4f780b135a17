"""PyTorch -> ONNX export that yields a clean, self-describing graph.

Exporter choice: we use the legacy TorchScript exporter (`dynamo=False`) followed by onnxslim.
Why: in torch 2.13 the dynamo exporter silently emits opset 18 when asked for 17, while
TensorRT 8.5/8.6 (JetPack 5/6) parses at most opset 17; the legacy exporter emits exactly the
requested opset, and onnxslim shrinks its graph to the dynamo size with unchanged outputs
(TOOLCHAIN.md). If a future torch drops the legacy exporter we fall back to dynamo +
`onnx.version_converter` (after removing opset-18-only Reduce* attributes).

The file carries its own description in `metadata_props` (model, layout, classes,
preprocessing, versions), so a deployed `.onnx` needs no side files: `read_onnx_metadata`.
"""

from __future__ import annotations

import contextlib
import io
import json
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
import torch.nn as nn

from edgeskel import __version__
from edgeskel.checkpoint import ModelSpec
from edgeskel.errors import ExportError
from edgeskel.io import atomic_path
from edgeskel.onnx_graph import iter_nodes  # noqa: F401 - public here too

INPUT_NAME = "skeleton"
OUTPUT_NAME = "logits"
BATCH_DIM = "batch"
_JSON_KEYS = ("layout_json", "class_names", "preprocess", "spec", "input_shape")


def export_onnx(
    model: nn.Module,
    spec: ModelSpec,
    out: str | Path,
    opset: int = 17,
    batch: int | None = None,
    simplify: bool = True,
    *,
    exporter: str = "legacy",
    einsum: str = "keep",
    info: dict[str, Any] | None = None,
) -> Path:
    """Export `model` to `out` with input `skeleton` (N,C,T,V,M) and output `logits` (N,K).

    `batch=None` makes the batch axis dynamic ("batch"); C,T,V,M are fixed from
    `spec.input_shape`. `einsum`: "keep" exports `torch.einsum` as ONNX Einsum (ONNX Runtime
    and OpenVINO run it); "rewrite" exports it as Transpose/Reshape/MatMul (`export/einsum.py`,
    for TensorRT), and `info["einsum_rewritten"]` lists the equations. The file is validated
    with onnx.checker and written atomically.
    `exporter`: "legacy" (default, see module doc; falls back to dynamo if this torch has no
    legacy exporter) or "dynamo" (down-converted to `opset` when it emits a newer one).
    """
    out = Path(out)
    if opset < 13:
        raise ExportError(f"{out}: opset {opset} is too old (need >= 13 for per-channel QDQ)")
    c, t, v, m = spec.input_shape
    # batch >= 2 for the example: a batch-1 trace can specialise the batch dimension.
    example_n = batch if batch is not None else 2
    x = torch.zeros(example_n, c, t, v, m, dtype=torch.float32).normal_(generator=torch.Generator().manual_seed(0))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            y = model(x)
        if not isinstance(y, torch.Tensor) or tuple(y.shape) != (example_n, spec.num_classes):
            shape = tuple(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__
            raise ExportError(
                f"{out}: model output must be logits of shape (N, {spec.num_classes}), got {shape}"
            )
        if exporter not in ("legacy", "dynamo"):
            raise ExportError(f"{out}: unknown exporter {exporter!r}; use 'legacy' or 'dynamo'")
        if einsum not in ("keep", "rewrite"):
            raise ExportError(f"{out}: unknown einsum mode {einsum!r}; use 'keep' or 'rewrite'")
        export = _export_dynamo if exporter == "dynamo" else _export_proto
        with _einsum_mode(einsum, out) as rewritten, _static_pool_sizes():
            proto = export(model, x, opset, dynamic=batch is None, out=out)
        if info is not None and rewritten:
            info["einsum_rewritten"] = sorted(set(rewritten))
    finally:
        model.train(was_training)

    if simplify:
        proto = _slim(proto, out)
    if einsum == "rewrite":
        refuse_einsum(proto, out)
    _set_metadata(proto, spec, opset)
    try:
        onnx.checker.check_model(proto, full_check=True)
    except onnx.checker.ValidationError as exc:
        raise ExportError(f"{out}: exported graph failed onnx.checker: {str(exc).splitlines()[0]}") from None
    with atomic_path(out) as tmp:
        onnx.save(proto, str(tmp))
    return out


def _export_proto(model: nn.Module, x: torch.Tensor, opset: int, dynamic: bool, out: Path) -> onnx.ModelProto:
    dyn_axes = {INPUT_NAME: {0: BATCH_DIM}, OUTPUT_NAME: {0: BATCH_DIM}} if dynamic else None
    buf = io.BytesIO()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # legacy exporter deprecation notice
            torch.onnx.export(
                model, (x,), buf, dynamo=False, opset_version=opset, input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME], dynamic_axes=dyn_axes, do_constant_folding=True,
            )
        return onnx.load_from_string(buf.getvalue())
    except TypeError as exc:  # legacy exporter gone from this torch: dynamo + down-conversion
        if "dynamo" not in str(exc):
            raise ExportError(f"{out}: torch.onnx.export failed: TypeError: {str(exc).splitlines()[0]}") from None
        return _export_dynamo(model, x, opset, dynamic, out)
    except ExportError:
        raise
    except Exception as exc:  # noqa: BLE001 - torch raises many types; report one clear line
        raise ExportError(f"{out}: torch.onnx.export failed: {type(exc).__name__}: {str(exc).splitlines()[0]}") from None


def _export_dynamo(model: nn.Module, x: torch.Tensor, opset: int, dynamic: bool, out: Path) -> onnx.ModelProto:
    dyn = {"x": {0: torch.export.Dim("batch", min=1)}} if dynamic else None
    try:
        prog = torch.onnx.export(model, (x,), dynamo=True, opset_version=max(opset, 18), dynamic_shapes=dyn,
                                 input_names=[INPUT_NAME], output_names=[OUTPUT_NAME], verbose=False)
        proto = prog.model_proto
    except ExportError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise ExportError(f"{out}: dynamo export failed: {type(exc).__name__}: {str(exc).splitlines()[0]}") from None
    if _opset(proto) > opset:
        for node in proto.graph.node:  # opset-18 attribute unknown to opset 17 Reduce* ops
            if node.op_type.startswith("Reduce"):
                keep = [a for a in node.attribute if a.name != "noop_with_empty_axes"]
                del node.attribute[:]
                node.attribute.extend(keep)
        from onnx import version_converter

        proto = version_converter.convert_version(proto, opset)
    return proto


def _slim(proto: onnx.ModelProto, out: Path) -> onnx.ModelProto:
    import onnxslim

    try:
        slim = onnxslim.slim(proto)
    except Exception as exc:  # noqa: BLE001
        raise ExportError(f"{out}: onnxslim graph cleanup failed: {str(exc).splitlines()[0]}") from None
    if not isinstance(slim, onnx.ModelProto):
        raise ExportError(f"{out}: onnxslim returned no model")
    return slim


@contextlib.contextmanager
def _einsum_mode(mode: str, out: Path) -> Iterator[list[str]]:
    if mode == "keep":
        yield []
        return
    from edgeskel.export.einsum import EinsumRewriteError, einsum_as_matmul

    try:
        with einsum_as_matmul() as rewritten:
            yield rewritten
    except EinsumRewriteError as exc:
        raise ExportError(f"{out}: {exc}") from None


@contextlib.contextmanager
def _static_pool_sizes() -> Iterator[None]:
    """`F.avg_pool2d(x, x.size()[2:])` (the official ST-GCN's global pool, common in users' GCN
    code): with a dynamic batch axis the legacy exporter records the kernel as Shape/Gather
    ops, which an ONNX AveragePool cannot take. Only the batch axis is dynamic in edgeskel's
    graphs (C, T, V, M are fixed), so the kernel is a constant: read it as ints while exporting."""
    import torch.nn.functional as F

    original = F.avg_pool2d

    def ints(v):
        if isinstance(v, (tuple, list)):
            return tuple(int(e) for e in v)
        return v if v is None else int(v)

    def avg_pool2d(input, kernel_size, stride=None, *args, **kwargs):  # noqa: A002 - torch's own argument name
        return original(input, ints(kernel_size), ints(stride), *args, **kwargs)

    F.avg_pool2d = avg_pool2d
    try:
        yield
    finally:
        F.avg_pool2d = original


def refuse_einsum(proto: onnx.ModelProto, out: Path) -> None:
    """After a rewrite no Einsum may remain (one made outside torch.einsum, e.g. a custom op)."""
    names = [n.name or n.output[0] for n in iter_nodes(proto.graph) if n.op_type == "Einsum"]
    if names:
        raise ExportError(
            f"{out}: graph still contains Einsum ({', '.join(names[:5])}) after rewriting torch.einsum; "
            "it was not made by torch.einsum: write that contraction with torch.matmul in the model"
        )


def _opset(proto: onnx.ModelProto) -> int:
    return max((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), default=0)


def _set_metadata(proto: onnx.ModelProto, spec: ModelSpec, opset: int) -> None:
    props = {
        "model": spec.name,
        "layout": spec.layout.name,
        "layout_json": json.dumps(spec.layout.to_dict()),
        "num_classes": str(spec.num_classes),
        "class_names": json.dumps(list(spec.class_names)),
        "preprocess": json.dumps(spec.preprocess.to_dict()),
        "spec": json.dumps(spec.to_dict(), default=_metadata_default),
        "input_name": INPUT_NAME,
        "output_name": OUTPUT_NAME,
        "input_layout": "NCTVM",
        "input_shape": json.dumps(list(spec.input_shape)),
        "edgeskel_version": __version__,
        "torch_version": torch.__version__,
        "opset": str(_opset(proto) or opset),
    }
    del proto.metadata_props[:]
    onnx.helper.set_model_props(proto, props)
    proto.producer_name = "edgeskel"
    proto.producer_version = __version__


def _metadata_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, (np.ndarray, tuple)):
        return list(obj)
    return str(obj)


def read_onnx_metadata(path: str | Path) -> dict[str, Any]:
    """The edgeskel metadata of an exported file, JSON fields decoded (num_classes as int)."""
    path = Path(path)
    if not path.is_file():
        raise ExportError(f"{path}: ONNX file not found")
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # noqa: BLE001 - protobuf DecodeError etc.
        raise ExportError(f"{path}: not a readable ONNX file: {str(exc).splitlines()[0]}") from None
    meta: dict[str, Any] = {p.key: p.value for p in proto.metadata_props}
    for key in _JSON_KEYS:
        if key in meta:
            try:
                meta[key] = json.loads(meta[key])
            except json.JSONDecodeError:
                raise ExportError(f"{path}: metadata {key!r} is not valid JSON") from None
    for key in ("num_classes", "opset"):
        if key in meta:
            meta[key] = int(meta[key])
    return meta


def export_layer(module: nn.Module, x: torch.Tensor, path: Path) -> Path:
    """One layer form alone as ONNX, exported exactly like whole models (legacy exporter,
    opset 17, static shape, onnxslim), so its timing reflects the graph the model will have."""
    proto = _slim(_export_proto(module.float(), x, 17, dynamic=False, out=path), path)
    onnx.save(proto, str(path))
    return path
