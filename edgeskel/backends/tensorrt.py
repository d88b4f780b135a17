"""TensorRT: a build kit (TensorRT-ready ONNX + build script); engines are built and timed on the
device (one static engine per batch size), never on this host."""

from edgeskel.backends.spec import BackendSpec

BACKEND = BackendSpec(
    name="tensorrt",
    summary="TensorRT engines built on the device (Jetson / NVIDIA GPU)",
    precisions=("fp16", "int8"),
    runtime_modules=("tensorrt", "cuda"),
    dists=("tensorrt",),
    install_hints={
        "tensorrt": "the TensorRT Python bindings come with JetPack (sudo apt install python3-libnvinfer; "
                    "use the system python3)",
        "cuda": "pip install cuda-python (matching the device's CUDA major version)",
    },
    runner="tensorrt",
    streaming_precisions=("fp16", "int8"),  # step engines: build kits of the step ONNX / its QDQ graph (stream/export.py)
)
