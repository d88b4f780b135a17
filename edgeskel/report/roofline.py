"""Roofline ESTIMATE of latency from published peak numbers (never a measurement).

time = max(compute / peak compute, bytes moved / peak bandwidth). Real kernels reach a
fraction of peak (often 10-50% on small GCN layers), so this is a lower bound: use it to
rank variants on a device nobody has measured yet, and label it as an estimate.
"""

from __future__ import annotations

from typing import Any


def _get(peak: Any, key: str) -> float | None:
    v = peak.get(key) if isinstance(peak, dict) else getattr(peak, key, None)
    return None if v is None else float(v)


def roofline_ms(gflops: float, bytes_moved: float, peak: Any, precision: str = "fp32") -> float:
    """Estimated ms for `gflops` GFLOP (1e9 FLOP/ops) moving `bytes_moved` bytes on a device
    with `peak` (a profile's `peak` block or dict). int8 uses tops_int8, fp16/bf16 use
    gflops_fp16, each falling back to the next slower peak if the profile lacks it."""
    if gflops < 0 or bytes_moved < 0:
        raise ValueError("gflops and bytes_moved must be >= 0")
    fp32 = _get(peak, "gflops_fp32")
    fp16 = _get(peak, "gflops_fp16") or fp32
    int8 = (_get(peak, "tops_int8") or 0) * 1000 or fp16
    compute = {"int8": int8, "fp16": fp16, "bf16": fp16}.get(precision, fp32)
    bw = _get(peak, "memory_bandwidth_gbs")
    if not compute or not bw:
        raise ValueError("peak needs gflops_fp32 and memory_bandwidth_gbs")
    return 1000.0 * max(gflops / compute, bytes_moved / (bw * 1e9))
