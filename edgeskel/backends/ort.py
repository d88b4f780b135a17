"""ONNX Runtime (CPU): the ONNX graph, INT8 as a QDQ graph with u8 asymmetric activations."""

from edgeskel.backends.spec import BackendSpec

BACKEND = BackendSpec(
    name="ort",
    summary="ONNX Runtime on the CPU (INT8: u8 asymmetric activations, measured faster on x86)",
    precisions=("fp32", "int8"),
    runtime_modules=("onnxruntime",),
    dists=("onnxruntime", "onnxruntime-gpu"),
    install_hints={"onnxruntime": "pip install onnxruntime"},
    runner="ort",
    runs_here=True,
    layer_timing=True,
    interleavable=True,
    streaming_precisions=("fp32", "int8"),
)
