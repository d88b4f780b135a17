"""Achieved compute: GFLOP/s a variant reached in its measured latency, and, only when the
peak of the machine that measured it is known, the fraction of that peak.

Why not a roofline estimate any more: a latency predicted from published peaks was 30-100x
below what was measured on small GCN layers (dispatch and memory traffic dominate), and the
`cpu` profile's peak describes some CPU, not the host that ran the measurement. The achieved
rate (work / measured time) is a fact; a fraction of peak is shown only when the profile's
peak describes the measuring device (a run on the profile's own device: ssh or imported).
"""

from __future__ import annotations

from typing import Any


def _get(peak: Any, key: str) -> float | None:
    v = peak.get(key) if isinstance(peak, dict) else getattr(peak, key, None)
    return None if v is None else float(v)


def peak_for(peak: Any, precision: str = "fp32") -> tuple[float | None, str | None]:
    """(the profile's peak GFLOP/s, GOP/s for int8, for `precision`; which precision's peak that
    is). A profile without that precision's peak falls back to the next slower one it has
    (int8 -> fp16 -> fp32; bf16 -> fp16 -> fp32), and the label says which: an INT8 rate
    divided by an fp32 peak can exceed 100%, so the report must say which peak it divided by."""
    if peak is None:
        return None, None
    fp32 = _get(peak, "gflops_fp32")
    fp16 = _get(peak, "gflops_fp16")
    int8 = (_get(peak, "tops_int8") or 0) * 1000 or None
    order = {"int8": (("int8", int8), ("fp16", fp16), ("fp32", fp32)),
             "fp16": (("fp16", fp16), ("fp32", fp32)), "bf16": (("fp16", fp16), ("fp32", fp32))}
    for which, value in order.get(precision, (("fp32", fp32),)):
        if value:
            return value, which
    return None, None


def peak_gflops(peak: Any, precision: str = "fp32") -> float | None:
    """The profile's peak GFLOP/s (GOP/s for int8) for `precision`, falling back to the next
    slower peak the profile has; None when it has none (see peak_for)."""
    return peak_for(peak, precision)[0]


def achieved_compute(gflops_per_sample: float | None, latency_by_batch: dict[str, dict[str, Any]] | None,
                     precision: str, peak: Any = None, peak_applies: bool = False) -> dict[str, Any] | None:
    """{batch1: {batch, gflops_per_s, fraction_of_peak}, best: {...}, peak_gflops, peak_precision
    (which precision's peak fraction_of_peak divides by), peak_note}
    from the p50 latency per batch (`latency_by_batch`: {str(batch): {p50, ...}}). batch1 is
    the smallest measured batch; best is the batch with the highest rate. fraction_of_peak is
    None unless `peak_applies` (the peak describes the machine that measured)."""
    if not gflops_per_sample or not latency_by_batch:
        return None
    rates = {}
    for b, st in latency_by_batch.items():
        p50 = (st or {}).get("p50")
        if p50:
            rates[int(b)] = gflops_per_sample * int(b) / (float(p50) / 1000.0)
    if not rates:
        return None
    top, which = peak_for(peak, precision) if peak_applies else (None, None)

    def row(b: int) -> dict[str, Any]:
        return {"batch": b, "gflops_per_s": round(rates[b], 3),
                "fraction_of_peak": round(rates[b] / top, 5) if top else None}

    return {"batch1": row(min(rates)), "best": row(max(rates, key=rates.get)), "peak_gflops": top,
            "peak_precision": which if top else None,
            "peak_note": ("peak of the profile's device, which measured this" if top else
                          "no fraction of peak: the peak of the machine that measured is not known")}


def roofline_ms(gflops: float, bytes_moved: float, peak: Any, precision: str = "fp32") -> float:
    """Lower-bound ESTIMATE (never a measurement) of ms for `gflops` GFLOP moving `bytes_moved`
    bytes: max(compute / peak compute, bytes / peak bandwidth). Kept for ranking devices nobody
    has measured; reports no longer show it (see the module docstring)."""
    if gflops < 0 or bytes_moved < 0:
        raise ValueError("gflops and bytes_moved must be >= 0")
    compute = peak_gflops(peak, precision)
    bw = _get(peak, "memory_bandwidth_gbs")
    if not compute or not bw:
        raise ValueError("peak needs gflops_fp32 and memory_bandwidth_gbs")
    return 1000.0 * max(gflops / compute, bytes_moved / (bw * 1e9))
