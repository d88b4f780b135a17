"""Per-backend quantization: ORT static QDQ INT8, OpenVINO FP16/NNCF INT8, TensorRT build kits.

Submodules are imported on demand so that ORT-only users never import openvino/nncf.
"""
