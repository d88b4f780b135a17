"""Where the time goes: per-op-type time share of one variant.

ONNX Runtime variants use ORT's own profiler (`SessionOptions.enable_profiling`, node events
`*_kernel_time`); OpenVINO variants use the plugin's performance counters (`PERF_COUNT`,
`InferRequest.profiling_info`), which report per executed node after OpenVINO's fusions.
Shares are of the summed kernel time (framework overhead between kernels is not included).
"""

from __future__ import annotations

import json
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np


def _summarise(per_op: dict[str, list[float]], runs: int, tool: str) -> dict[str, Any]:
    total = sum(sum(v) for v in per_op.values())
    ops = [{"op_type": k, "ms_per_run": sum(v) / runs, "share": (sum(v) / total) if total else 0.0,
            "nodes_per_run": len(v) / runs} for k, v in per_op.items()]
    ops.sort(key=lambda o: -o["ms_per_run"])
    return {"tool": tool, "runs": runs, "kernel_ms_per_run": total / runs, "ops": ops}


def ort_op_profile(onnx_path: Path, x: np.ndarray, threads: int = 2, runs: int = 30, warmup: int = 5) -> dict[str, Any]:
    """Per-op-type kernel time of an ONNX model in ONNX Runtime (CPU EP, all optimizations)."""
    import onnxruntime as ort

    from edgeskel.runtime.ort import cpu_session_options

    with tempfile.TemporaryDirectory(prefix="edgeskel-prof-") as td:
        so = cpu_session_options(threads)
        so.enable_profiling = True
        so.profile_file_prefix = str(Path(td) / "ort")
        sess = ort.InferenceSession(str(onnx_path), so, providers=["CPUExecutionProvider"])
        feed = {sess.get_inputs()[0].name: np.ascontiguousarray(x, np.float32)}
        for _ in range(warmup):
            sess.run(None, feed)
        for _ in range(runs):
            sess.run(None, feed)
        events = json.loads(Path(sess.end_profiling()).read_text())
    per_op: dict[str, list[float]] = defaultdict(list)
    node_events = [e for e in events if e.get("cat") == "Node" and str(e.get("name", "")).endswith("_kernel_time")]
    # drop the warm-up runs: keep the last `runs` x (nodes per run) kernel events
    n_total = warmup + runs
    per_run = len(node_events) // n_total if n_total else 0
    kept = node_events[-per_run * runs:] if per_run else node_events
    for e in kept:
        per_op[(e.get("args") or {}).get("op_name", "?")].append(float(e.get("dur", 0)) / 1000.0)
    return _summarise(per_op, runs, "onnxruntime SessionOptions.enable_profiling")


def openvino_op_profile(xml_path: Path, x: np.ndarray, precision: str = "fp32", threads: int = 2, runs: int = 30,
                        warmup: int = 5) -> dict[str, Any]:
    """Per-node-type time of an OpenVINO model from the CPU plugin's performance counters."""
    import openvino as ov

    from edgeskel.runtime.openvino import HINTS

    core = ov.Core()
    cfg = {"INFERENCE_PRECISION_HINT": HINTS.get(precision, "f32"), "PERF_COUNT": True,
           "INFERENCE_NUM_THREADS": int(threads), "PERFORMANCE_HINT": "LATENCY"}
    req = core.compile_model(core.read_model(str(xml_path)), "CPU", cfg).create_infer_request()
    xb = np.ascontiguousarray(x, np.float32)
    for _ in range(warmup):
        req.infer({0: xb})
    per_op: dict[str, list[float]] = defaultdict(list)
    for _ in range(runs):
        req.infer({0: xb})
        for info in req.profiling_info:
            if info.status == info.Status.EXECUTED:
                us = info.real_time.total_seconds() * 1e6 if hasattr(info.real_time, "total_seconds") else float(info.real_time)
                per_op[f"{info.node_type} ({info.exec_type})"].append(us / 1000.0)
    return _summarise(per_op, runs, "OpenVINO CPU plugin PERF_COUNT")


def artifact_op_profile(backend: str, artifact: Path, precision: str, x: np.ndarray, threads: int,
                        runs: int) -> dict[str, Any]:
    """Profile one artifact with the tool of its backend."""
    if backend == "ort":
        return ort_op_profile(artifact, x, threads, runs)
    if backend == "openvino":
        return openvino_op_profile(artifact, x, precision, threads, runs)
    raise ValueError(f"no per-op profiler for backend {backend!r}")


def op_profile(variant: Any, x: np.ndarray, threads: int, runs: int) -> dict[str, Any]:
    """Profile one BenchVariant with the tool of its backend."""
    return artifact_op_profile(variant.backend, variant.artifact, variant.precision, x, threads, runs)
