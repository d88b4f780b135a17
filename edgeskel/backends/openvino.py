"""OpenVINO (CPU): an IR converted from the ONNX; fp16 = fp16 weights, bf16 = fp32 IR with the
bf16 inference hint, INT8 by NNCF."""

from edgeskel.backends.spec import BackendSpec

BACKEND = BackendSpec(
    name="openvino",
    summary="OpenVINO IR on the CPU (fp16 weights / bf16 hint / NNCF INT8)",
    precisions=("fp32", "fp16", "bf16", "int8"),
    runtime_modules=("openvino",),
    dists=("openvino",),
    install_hints={"openvino": "pip install openvino"},
    runner="openvino",
    runs_here=True,
    layer_timing=True,
    interleavable=True,
    streaming_precisions=("fp32", "bf16", "int8"),
)
