"""Why is an ONNX Runtime INT8 graph slower than its fp32 source on this CPU?

A QDQ graph only runs in integer arithmetic where ORT's graph optimizer fuses a
DequantizeLinear -> op -> QuantizeLinear group into a QLinear* kernel; an unfused group runs
the float kernel *plus* a runtime DequantizeLinear of its weights on every call. On x86, ORT
fuses symmetric int8 (s8) activations only where it can first rewrite them to u8 (zero point
128), which it does not do for tensors with several consumers, and every QLinearConv runs
channels-last, so ORT inserts Transposes around it. This study quantizes the same fp32 model
with s8 symmetric activations (the portable `onnx`/TensorRT graph) and with u8 asymmetric
activations (what edgeskel's `ort` backend uses on CPU), with and without ORT's NHWC rewrite,
counts what ORT actually fused, and times all of them interleaved against fp32 at batch 1.
"""

from __future__ import annotations

import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from edgeskel.io import atomic_write_json
from edgeskel.validate.latency import interleaved_latency


def _session(path: Path, threads: int, disabled: list[str], optimized_out: Path | None = None) -> Any:
    import onnxruntime as ort

    from edgeskel.runtime.ort import cpu_session_options

    so = cpu_session_options(threads)
    if optimized_out is not None:
        so.optimized_model_filepath = str(optimized_out)
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"], disabled_optimizers=disabled)


def fused_graph_counts(path: Path, disabled: list[str] | None = None) -> dict[str, int]:
    """Node counts of the graph ORT really runs: integer kernels, float Convs/MatMuls, runtime
    dequantization of weights (DequantizeLinear on an initializer) and layout Transposes."""
    import onnx

    with tempfile.TemporaryDirectory(prefix="edgeskel-ortopt-") as td:
        out = Path(td) / "optimized.onnx"
        _session(path, 1, disabled or [], out)
        graph = onnx.load(str(out)).graph
    inits = {i.name for i in graph.initializer}
    ops = Counter(n.op_type for n in graph.node)
    return {"QLinearConv": ops["QLinearConv"], "QLinearMatMul": ops["QLinearMatMul"], "float Conv": ops["Conv"],
            "float MatMul": ops["MatMul"] + ops["FusedMatMul"], "Transpose": ops["Transpose"],
            "runtime weight DequantizeLinear": sum(1 for n in graph.node if n.op_type == "DequantizeLinear" and n.input[0] in inits)}


def ort_int8_study(onnx_fp32: Path, calib: np.ndarray, x: np.ndarray, out_dir: Path, *, percentile: float = 99.95,
                   extra: dict[str, Path] | None = None, op_type_sets: list[list[str]] | None = None, threads: int = 2,
                   rounds: int = 3, runs: int = 30, max_seconds: float = 10.0, progress: bool = True) -> dict[str, Any]:
    """Quantize `onnx_fp32` both ways into `out_dir`, count fusions, time everything interleaved
    (batch 1 = `x[:1]`). `extra`: more ONNX models to time (e.g. the pipeline's INT8 artifact);
    `op_type_sets`: more u8 quantizations limited to those op types (the recipe's
    `int8_op_types`). Writes and returns `out_dir/ort_int8_study.json`.

    Each variant is timed in consecutive runs after its own warm-up (`interleaved_latency`), never
    call-by-call alternation: ORT's idle worker threads spin for a while after a run and would
    steal the cores from the next session."""
    from edgeskel.quantize.ort_qdq import quantize_ort_int8

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    models: dict[str, Path] = {"fp32": Path(onnx_fp32)}
    for name, symmetric in (("int8 s8 symmetric", True), ("int8 u8 asymmetric", False)):
        dst = out_dir / f"model.{'s8' if symmetric else 'u8'}.onnx"
        quantize_ort_int8(onnx_fp32, dst, calib, method="percentile", percentile=percentile, symmetric_activations=symmetric)
        models[name] = dst
    for i, ops in enumerate(op_type_sets or []):
        dst = out_dir / f"model.u8.ops{i}.onnx"
        quantize_ort_int8(onnx_fp32, dst, calib, method="percentile", percentile=percentile, symmetric_activations=False,
                          op_types=ops)
        models[f"int8 u8 asymmetric, only {','.join(ops)}"] = dst
    models.update({k: Path(v) for k, v in (extra or {}).items()})
    configs = {f"{name}{' (no NHWC rewrite)' if dis else ''}": (path, dis)
               for name, path in models.items() for dis in ([], ["NhwcTransformer"]) if name != "fp32" or not dis}
    sessions = {k: _session(p, threads, d) for k, (p, d) in configs.items()}
    feed_name = {k: s.get_inputs()[0].name for k, s in sessions.items()}
    x1 = np.ascontiguousarray(x[:1], np.float32)
    infers = {k: (lambda b, s=s, n=feed_name[k]: s.run(None, {n: b})[0]) for k, s in sessions.items()}
    lat = interleaved_latency(infers, {1: x1}, rounds, runs, warmup=5, max_seconds=max_seconds, progress=progress,
                              label="ORT INT8 study")
    fp32_p50 = lat["fp32"]["1"]["p50"]
    rows = []
    for k, (path, dis) in configs.items():
        p50 = lat[k]["1"]["p50"]
        rows.append({"variant": k, "p50_ms": p50, "p99_ms": lat[k]["1"]["p99"], "vs_fp32": fp32_p50 / p50,
                     "graph": fused_graph_counts(path, dis), "file": str(path)})
    res = {"onnx_fp32": str(onnx_fp32), "percentile": percentile, "threads": threads, "rounds": rounds, "rows": rows}
    atomic_write_json(out_dir / "ort_int8_study.json", res)
    return res


def study_table(res: dict[str, Any]) -> list[str]:
    """Markdown table of a study result."""
    keys = list(res["rows"][0]["graph"])
    lines = ["| Variant | p50 ms | p99 ms | speed vs fp32 | " + " | ".join(keys) + " |", "|" + "---|" * (4 + len(keys))]
    for r in res["rows"]:
        lines.append(f"| {r['variant']} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['vs_fp32']:.2f}x | "
                     + " | ".join(str(r["graph"][k]) for k in keys) + " |")
    return lines
