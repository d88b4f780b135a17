"""ONNX Runtime static INT8 quantization (QDQ format): calibration, preprocessing, the QDQ graph.

One job: turn a float ONNX graph and a calibration set into a QDQ graph, deterministically,
with the settings used recorded. Judging that graph (`sensitivity.py`) and searching for one
that meets an accuracy gate (`int8_search.py`) are separate modules built on this one.

Why static QDQ: ORT dynamic quantization is 7-17x *slower* on conv nets (TOOLCHAIN.md), and a
QDQ graph is portable: ORT fuses it into integer kernels, OpenVINO runs it as is, and TensorRT
uses it for explicit quantization. TensorRT needs symmetric activations (zero-point 0, int8)
and int8-only DequantizeLinear inputs, hence `symmetric_activations=True` by default and
`quantize_bias=False` for TensorRT graphs (a quantized bias is an int32 DequantizeLinear).
"""

from __future__ import annotations

import contextlib
import io
import logging
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from edgeskel.errors import ExportError
from edgeskel.io import atomic_path

METHODS = ("minmax", "entropy", "percentile")


# ORT's histogram calibrators (entropy, percentile) keep every intermediate tensor of every
# calibration batch in memory before binning: 256 full-width CTR-GCN samples needed > 20 GB and
# were OOM-killed. Calibrating in strides of at most this many samples bounds that; histograms
# (and min/max) accumulate across strides, so the ranges are those of the whole set.
CALIB_STRIDE_SAMPLES = 32
# ... and the memory grows with the sample size too: 32 Hyperformer samples at T=300 (6x the
# verified T=52) needed > 24 GB. A stride holds at most this many input values (32 samples of
# (3, 52, 20, 1), the largest setting verified on this 24 GB machine with every model).
CALIB_STRIDE_INPUT_VALUES = 32 * 3 * 52 * 20


def stride_samples(sample_shape: Sequence[int]) -> int:
    """Samples per calibration stride for inputs of `sample_shape` (C, T, V, M): at most
    CALIB_STRIDE_SAMPLES, fewer for long or many-joint sequences."""
    per_sample = int(np.prod(sample_shape)) or 1
    return max(1, min(CALIB_STRIDE_SAMPLES, CALIB_STRIDE_INPUT_VALUES // per_sample))


class ArrayReader:
    """CalibrationDataReader over an (N, C, T, V, M) array in fixed-size batches; supports
    ORT's strided calibration (`__len__` and `set_range`, in batches)."""

    def __init__(self, data: np.ndarray, input_name: str, batch: int):
        self.data, self.input_name, self.batch = data, input_name, batch
        self._range = (0, len(self))
        self._it = iter(())
        self.rewind()

    def __len__(self) -> int:
        return len(self.data) // self.batch

    def set_range(self, start_index: int, end_index: int) -> None:
        self._range = (start_index, min(end_index, len(self)))
        self.rewind()

    def _batches(self) -> Iterable[dict[str, np.ndarray]]:
        for b in range(*self._range):
            yield {self.input_name: self.data[b * self.batch : (b + 1) * self.batch]}

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._it, None)

    def rewind(self) -> None:
        self._it = iter(self._batches())

    def __iter__(self):
        self.rewind()
        return self._batches()


class FeedListReader(ArrayReader):
    """CalibrationDataReader over recorded feeds of a multi-input graph (one dict per run, e.g.
    a step graph's frame, valid and states call by call), with the same strided interface."""

    def __init__(self, feeds: Sequence[dict[str, np.ndarray]]):
        self.feeds = list(feeds)
        super().__init__(np.zeros((len(self.feeds), 1), np.float32), "", 1)

    def __len__(self) -> int:
        return len(self.feeds)

    def _batches(self) -> Iterable[dict[str, np.ndarray]]:
        for b in range(*self._range):
            yield self.feeds[b]


def calib_stride(n_batches: int, batch: int, max_samples: int | None = None) -> int | None:
    """Largest number of batches per stride that divides `n_batches` (ORT requires it) and keeps
    a stride within `max_samples` (default CALIB_STRIDE_SAMPLES); None when one pass is small
    enough already."""
    max_samples = max_samples or CALIB_STRIDE_SAMPLES
    if n_batches * batch <= max_samples:
        return None
    limit = max(1, max_samples // batch)
    return max(d for d in range(1, limit + 1) if n_batches % d == 0)


def input_info(path: Path) -> tuple[str, int | None]:
    proto = onnx.load(str(path), load_external_data=False)
    inits = {i.name for i in proto.graph.initializer}
    inp = next(i for i in proto.graph.input if i.name not in inits)
    d0 = inp.type.tensor_type.shape.dim[0]
    return inp.name, (d0.dim_value if d0.HasField("dim_value") and d0.dim_value > 0 else None)


def _check_calib(calib: np.ndarray, where: Path) -> np.ndarray:
    calib = np.ascontiguousarray(calib, dtype=np.float32)
    if calib.ndim != 5 or len(calib) == 0:
        raise ExportError(f"{where}: calibration data must be a non-empty (N, C, T, V, M) array, got {calib.shape}")
    if not np.isfinite(calib).all():
        raise ExportError(f"{where}: calibration data contains NaN/inf")
    return calib


def preprocess_onnx(onnx_in: Path, onnx_out: Path) -> dict[str, Any]:
    """ORT's quant_pre_process (shape inference + graph optimisation) into `onnx_out`.

    Falls back to a plain copy (recorded) if the optimiser cannot handle the graph.
    """
    from onnxruntime.quantization.shape_inference import quant_pre_process

    try:
        quant_pre_process(str(onnx_in), str(onnx_out))
        return {"preprocess": "quant_pre_process"}
    except Exception as exc:  # noqa: BLE001 - symbolic shape inference raises many types
        logging.getLogger(__name__).warning("quant_pre_process failed (%s); quantizing the raw graph", exc)
        onnx_out.write_bytes(Path(onnx_in).read_bytes())
        return {"preprocess": f"skipped: {str(exc).splitlines()[0]}"}


def quantize_ort_int8(
    onnx_in: str | Path,
    onnx_out: str | Path,
    calib: np.ndarray | Sequence[dict[str, np.ndarray]],
    method: str = "minmax",
    symmetric_activations: bool = True,
    per_channel: bool = True,
    exclude_nodes: Sequence[str] = (),
    *,
    quantize_bias: bool = True,
    percentile: float = 99.999,
    calib_batch: int = 8,
    preprocess: bool = True,
    calibration_cache: str | Path | None = None,
    op_types: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Static QDQ INT8: s8 symmetric per-channel weights; s8 symmetric (zero-point 0)
    activations by default, u8 asymmetric when `symmetric_activations=False` (faster on x86
    ORT, but not TensorRT-compatible). Returns the settings used (for export.json).

    `calibration_cache`: a JSON file of tensor ranges; written by the first call, reused by
    later calls with the same graph and calibration set (the fallback's rounds). `calib` may
    also be a list of feed dicts (graphs with several inputs: a streaming step graph)."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    onnx_in, onnx_out = Path(onnx_in), Path(onnx_out)
    if not onnx_in.is_file():
        raise ExportError(f"{onnx_in}: ONNX model to quantize not found")
    if method not in METHODS:
        raise ExportError(f"{onnx_in}: unknown calibration method {method!r}; use one of {METHODS}")
    if op_types:
        _check_op_types(op_types, onnx_in)
    if isinstance(calib, np.ndarray):
        calib = _check_calib(calib, onnx_in)
        input_name, fixed_batch = input_info(onnx_in)
        max_stride = stride_samples(calib.shape[1:])
        batch = fixed_batch or max(1, min(calib_batch, len(calib), max_stride))
        if len(calib) < batch:
            raise ExportError(f"{onnx_in}: model has fixed batch {batch} but only {len(calib)} calibration samples")
        reader: ArrayReader = ArrayReader(calib, input_name, batch)
    else:
        if not calib or not all(np.isfinite(v).all() for f in calib for v in f.values()):
            raise ExportError(f"{onnx_in}: calibration feeds are empty or contain NaN/inf")
        reader, batch, max_stride = FeedListReader(calib), 1, CALIB_STRIDE_SAMPLES
    settings: dict[str, Any] = {
        "tool": "onnxruntime.quantization.quantize_static",
        "format": "QDQ",
        "method": method,
        "activation_type": "int8" if symmetric_activations else "uint8",
        "symmetric_activations": symmetric_activations,
        "weight_type": "int8",
        "symmetric_weights": True,
        "per_channel": per_channel,
        "quantize_bias": quantize_bias,
        "calib_samples": int(len(calib) // batch * batch),
        "calib_batch": batch,
        "exclude_nodes": list(exclude_nodes),
        "op_types": sorted(op_types) if op_types else "all ORT QDQ ops",
    }
    if method == "percentile":
        settings["percentile"] = percentile
    extra = {
        "ActivationSymmetric": symmetric_activations,
        "WeightSymmetric": True,
        "QuantizeBias": quantize_bias,
        "CalibPercentile": percentile,
    }
    stride = calib_stride(len(reader), batch, max_stride)
    if stride:
        extra["CalibStridedMinMax"] = stride  # ORT's name; applies to every calibrator
        settings["calib_stride_batches"] = stride
    calib_method = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
                    "percentile": CalibrationMethod.Percentile}[method]
    with tempfile.TemporaryDirectory(prefix="edgeskel-q-") as td:
        src = onnx_in
        if preprocess:
            src = Path(td) / "pre.onnx"
            settings.update(preprocess_onnx(onnx_in, src))
        overrides = _per_tensor_matmul_weights(src, QuantType.QInt8)
        if overrides:
            extra["TensorQuantOverrides"] = overrides
            settings["per_tensor_weights"] = sorted(overrides)
        try:
            # ORT's entropy/percentile calibrators print progress to stdout: keep stdout clean
            # for CLI output (e.g. JSON).
            with atomic_path(onnx_out) as tmp, contextlib.redirect_stdout(io.StringIO()), quiet_ort_noise():
                quantize_static(
                    str(src), str(tmp), reader, quant_format=QuantFormat.QDQ,
                    calibration_cache_path=str(calibration_cache) if calibration_cache else None,
                    per_channel=per_channel,
                    activation_type=QuantType.QInt8 if symmetric_activations else QuantType.QUInt8,
                    weight_type=QuantType.QInt8, nodes_to_exclude=list(exclude_nodes) or None,
                    op_types_to_quantize=list(op_types) if op_types else None,
                    calibrate_method=calib_method, extra_options=extra,
                )
                _copy_metadata(onnx_in, tmp)
        except ExportError:
            raise
        except Exception as exc:  # noqa: BLE001
            raise ExportError(f"{onnx_in}: INT8 quantization failed: {type(exc).__name__}: {str(exc).splitlines()[0]}") from None
    proto = onnx.load(str(onnx_out), load_external_data=False)
    settings["quantized_tensors"] = sum(n.op_type == "QuantizeLinear" for n in proto.graph.node)
    settings["opset"] = max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx"))
    return settings


class _OrtNoiseFilter(logging.Filter):
    """ORT logs on the root logger, to every user's terminal: 'Axis 1 is out-of-range for weight
    ... with rank 1' for every 1-d weight (BatchNorm scales) it declines to quantize per channel
    (hundreds of lines per CTR-GCN export), and qdq_loss_debug's "Model Error ...: weight tensor
    '...' not found!" for weights the QDQ graph names differently from the float one (EfficientGCN:
    the weight-SQNR term of the fallback ranking then skips them; activations are still ranked).
    Neither says anything a user can act on."""

    NOISE = ("is out-of-range for weight", "' not found!")

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        return not any(n in msg for n in self.NOISE)


@contextlib.contextmanager
def quiet_ort_noise() -> Iterator[None]:
    root, flt = logging.getLogger(), _OrtNoiseFilter()
    root.addFilter(flt)
    try:
        yield
    finally:
        root.removeFilter(flt)


def _check_op_types(op_types: Sequence[str], where: Path) -> None:
    from onnxruntime.quantization.registry import QDQRegistry, QLinearOpsRegistry

    known = set(QDQRegistry) | set(QLinearOpsRegistry)
    bad = sorted(set(op_types) - known)
    if bad:
        raise ExportError(f"{where}: ONNX Runtime cannot quantize op type(s) {bad}; choose from {sorted(known)}")


def _per_tensor_matmul_weights(model_path: Path, qtype: Any) -> dict[str, list[dict[str, Any]]]:
    """Constant MatMul operands of rank != 2 (e.g. a GCN's (K, V, V) adjacency) must be
    quantized per tensor: ORT's QLinearMatMul rejects per-channel zero points on them
    ("weight zero point must be a scalar ...") and TensorRT gains nothing from it."""
    proto = onnx.load(str(model_path), load_external_data=False)
    inits = {t.name: len(t.dims) for t in proto.graph.initializer}
    out: dict[str, list[dict[str, Any]]] = {}
    for node in proto.graph.node:
        if node.op_type == "MatMul":
            for name in node.input:
                if name in inits and inits[name] != 2:
                    out[name] = [{"quant_type": qtype, "symmetric": True}]
    return out


def _copy_metadata(src: Path, dst: Path) -> None:
    """Keep the edgeskel metadata (classes, layout, ...) in the quantized file."""
    meta = {p.key: p.value for p in onnx.load(str(src), load_external_data=False).metadata_props}
    if not meta:
        return
    proto = onnx.load(str(dst))
    have = {p.key for p in proto.metadata_props}
    onnx.helper.set_model_props(proto, {**{p.key: p.value for p in proto.metadata_props},
                                        **{k: v for k, v in meta.items() if k not in have}})
    onnx.save(proto, str(dst))
