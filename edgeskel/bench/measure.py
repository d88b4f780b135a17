"""Measure variants side by side: accuracy on the test split, then latency INTERLEAVED
(round-robin over variants, repeated rounds, start rotated each round, all samples pooled,
medians), on the same inputs, with the shared timing code of the device runner.

Why interleave: this machine's speed drifts by up to 2x over minutes (shared cores), so
timing variant A for a minute and then variant B would measure the drift, not the variants.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edgeskel.validate.latency import batch_from, interleaved_latency, progress_bar  # noqa: F401 - bench's timing is validate's

TARGETS = {"speedup_vs_torch": 3.0, "speedup_vs_best_baseline": 1.5, "max_top1_drop": 1.0, "size_reduction_vs_onnx": 4.0}


def ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return float(a) / float(b)


def add_derived(rows: dict[str, dict[str, Any]], torch_key: str, best_baseline: str | None, onnx_key: str,
                peak_gflops: float, tb: int) -> None:
    """Ratios vs PyTorch eager and the best baseline, size ratio vs the fp32 ONNX, GFLOP/s."""
    def p50(k: str | None, b: str = "1") -> float | None:
        return ((rows.get(k) or {}).get("latency_ms") or {}).get(b, {}).get("p50") if k else None

    onnx_size = (rows.get(onnx_key) or {}).get("size_bytes")
    for _k, r in rows.items():
        lat = r.get("latency_ms") or {}
        mine, mine_tb = p50(_k), p50(_k, str(tb))
        r["speedup_vs_torch"] = ratio(p50(torch_key), mine)
        r["speedup_vs_best_baseline"] = ratio(p50(best_baseline), mine)
        r["size_reduction_vs_onnx"] = ratio(onnx_size, r.get("size_bytes"))
        g = r.get("gflops")
        if g is not None and mine:
            r["gflops_per_s_b1"] = g / (mine / 1000.0)
            r["fraction_of_peak_b1"] = r["gflops_per_s_b1"] / peak_gflops
        if g is not None and mine_tb:
            r[f"gflops_per_s_b{tb}"] = g * tb / (mine_tb / 1000.0)
            r[f"fraction_of_peak_b{tb}"] = r[f"gflops_per_s_b{tb}"] / peak_gflops
        r["throughput_fps"] = (lat.get(str(tb)) or {}).get("throughput_fps")


def baseline_parity(ref: np.ndarray, out: np.ndarray, precision: str) -> dict[str, Any] | None:
    """A baseline judged by the parity rule of edgeskel's own `precision` artifacts, in units of
    the reference's logit scale (None for a precision without a rule, e.g. OpenVINO's default)."""
    from edgeskel.validate.parity import DEFAULT_TOLERANCES, check_parity

    if precision not in DEFAULT_TOLERANCES:
        return None
    res = check_parity(ref, out, precision)
    unit = max(1.0, res["scale"])
    return {"precision": precision, "passed": res["passed"], "max_abs_x_scale": res["max_abs"] / unit,
            "quantile_abs_x_scale": res["quantile_abs"] / unit if "quantile_abs" in res else None,
            "samples_over": res.get("samples_over"), "agreement": res["agreement"]}


def pick_best(rows: dict[str, dict[str, Any]], keys: list[str]) -> str | None:
    """Lowest batch-1 p50 among `keys` whose status is 'pass'."""
    ok = [k for k in keys if rows[k].get("status") == "pass" and (rows[k].get("latency_ms") or {}).get("1")]
    return min(ok, key=lambda k: rows[k]["latency_ms"]["1"]["p50"]) if ok else None


def check_targets(best: dict[str, Any] | None, ref_top1: float) -> list[dict[str, Any]]:
    """The issue's targets for the best edgeskel variant: met or missed, and by how much."""
    out = []
    specs = [("speedup_vs_torch", ">=", TARGETS["speedup_vs_torch"], "x lower p50 (batch 1) than PyTorch eager fp32"),
             ("speedup_vs_best_baseline", ">=", TARGETS["speedup_vs_best_baseline"], "x lower p50 (batch 1) than the best uncompressed baseline"),
             ("top1_drop", "<=", TARGETS["max_top1_drop"], " points top-1 below PyTorch eager fp32"),
             ("size_reduction_vs_onnx", ">=", TARGETS["size_reduction_vs_onnx"], "x smaller on disk than the fp32 ONNX")]
    for key, op, target, what in specs:
        if best is None:
            out.append({"target": key, "goal": f"{op} {target:g}{what}", "value": None, "met": False,
                        "gap": "no edgeskel variant passed the device profile's gates"})
            continue
        val = (ref_top1 - best["top1"]) if key == "top1_drop" and best.get("top1") is not None else best.get(key)
        if val is None:
            out.append({"target": key, "goal": f"{op} {target:g}{what}", "value": None, "met": False, "gap": "not measured"})
            continue
        met = val >= target if op == ">=" else val <= target + 1e-9
        if met:
            gap = None
        elif op == ">=":
            gap = f"{val:.2f}x vs {target:g}x: short by {target - val:.2f}x ({100 * (target - val) / target:.0f}% of the target)"
        else:
            gap = f"{val:.2f} points vs {target:g}: over by {val - target:.2f} points"
        out.append({"target": key, "goal": f"{op} {target:g}{what}", "value": val, "met": bool(met), "gap": gap})
    return out
