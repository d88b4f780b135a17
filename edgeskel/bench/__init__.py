"""Side-by-side benchmarks of edgeskel's variants against what users would use instead
(PyTorch eager, plain ONNX Runtime / OpenVINO, dynamic INT8, NNCF INT8); `edgeskel bench`."""

from edgeskel.bench.machine import cpu_peak, machine_description
from edgeskel.bench.report import insert_between_markers
from edgeskel.bench.settings import BEGIN_MARKER, END_MARKER, BenchSettings, full_settings, quick_settings

__all__ = ["BEGIN_MARKER", "END_MARKER", "BenchSettings", "cpu_peak", "full_settings", "insert_between_markers",
           "machine_description", "quick_settings", "run_bench"]


def __getattr__(name: str):  # lazy: the runner stack (torch, ORT, OpenVINO) loads only when benchmarking
    if name == "run_bench":
        from edgeskel.bench.api import run_bench

        return run_bench
    raise AttributeError(name)
