"""Portable ONNX: the graph any ONNX consumer reads (INT8: s8 symmetric activations, zero-point 0).
Exported and checked with ONNX Runtime; not a profile backend (profiles name the runtime: ort)."""

from edgeskel.backends.spec import BackendSpec

BACKEND = BackendSpec(
    name="onnx",
    summary="portable ONNX (INT8: s8 symmetric QDQ), checked with ONNX Runtime",
    precisions=("fp32", "int8"),
    runtime_modules=("onnxruntime",),
    dists=("onnxruntime", "onnxruntime-gpu"),
    install_hints={"onnxruntime": "pip install onnxruntime"},
    runner="ort",
    in_profiles=False,
    streaming_precisions=("fp32",),
)
