"""Export: PyTorch -> self-describing ONNX, and per-backend variants (`export_variant`)."""

from edgeskel.export.onnx import INPUT_NAME, OUTPUT_NAME, export_onnx, read_onnx_metadata

__all__ = ["INPUT_NAME", "OUTPUT_NAME", "export_onnx", "export_variant", "read_onnx_metadata"]


def __getattr__(name: str):  # lazy: api pulls in the quantizers (openvino, nncf) only when used
    if name == "export_variant":
        from edgeskel.export.api import export_variant

        return export_variant
    raise AttributeError(name)
