"""Gates: did one measured variant meet the device profile? Every failure says the numbers.

`variant_result` is a measured variant as produced by `evaluate_runner` / `measure_latency`
or a device's results.json entry: keys `accuracy` (or the accuracy keys at top level),
`latency_ms` ({"1": {"p99": ...}, ...}), optional `memory` ({"peak_rss_mb": ...}) and
optional `parity` (edgeskel.validate.parity result with `passed`). A missing measurement is
not a failure (e.g. latency of a Jetson variant measured nowhere); it is named in the reason.

`gate_checks` returns every gate as data (threshold, measured value, pass/fail), so a report
can print each number next to the gate that judged it: PASS must be checkable by reading.
"""

from __future__ import annotations

import math
from typing import Any

from edgeskel.devices import DeviceProfile
from edgeskel.validate.parity import format_tail

# Gate key -> (label for people, unit, "max" | "min" bound). Order = the order reports show.
GATES: dict[str, tuple[str, str, str]] = {
    "finite": ("non-finite outputs", "samples", "max"),
    "parity": ("parity vs PyTorch", "", "max"),
    "max_top1_drop": ("top-1 drop", "points", "max"),
    "min_agreement": ("top-1 agreement", "%", "min"),
    "p99_latency_ms": ("p99 latency, batch 1", "ms", "max"),
    "max_memory_mb": ("peak memory", "MB", "max"),
    # streaming rows (profile `streaming:`, `streaming_checks`)
    "stream_min_streams": ("streams sustained", "streams", "min"),
    "stream_p99_latency_ms": ("p99 per step call", "ms", "max"),
    "stream_max_top1_drop": ("streaming vs windowed top-1", "points", "max"),
    "stream_precision_drop": ("stream vs the fp32 stream, top-1", "points", "max"),
}


def _num(v: Any) -> float | None:
    return None if v is None else float(v)


def _check(gate: str, threshold: float | None, measured: float | None, passed: bool | None,
           detail: str = "") -> dict[str, Any]:
    label, unit, bound = GATES[gate]
    return {"gate": gate, "label": label, "unit": unit, "bound": bound, "threshold": threshold,
            "measured": measured, "passed": passed, "detail": detail}


def gate_checks(variant_result: dict[str, Any], profile: DeviceProfile, reference_top1: float,
                accuracy_only: bool = False) -> list[dict[str, Any]]:
    """Every gate of the profile for one measured variant: {gate, label, unit, bound, threshold,
    measured, passed (True / False / None = not measured), detail (the failure in words)}.
    `accuracy_only` leaves out latency and memory (a host check: those are not the device's)."""
    g = profile.gates
    acc = variant_result.get("accuracy") or variant_result
    checks: list[dict[str, Any]] = []

    nonfinite = int(acc.get("nonfinite") or 0)
    n = acc.get("num_samples")
    checks.append(_check("finite", 0, nonfinite, nonfinite == 0,
                         f"non-finite outputs (NaN/Inf) on {nonfinite}/{n} samples" if nonfinite else ""))
    parity = variant_result.get("parity")
    if isinstance(parity, dict) and "passed" in parity:
        tol = parity.get("tol") or {}
        detail = ""
        if parity.get("passed") is False:
            detail = (
                f"parity failed: max_abs={parity.get('max_abs', float('nan')):.3g} (bound {tol.get('bound', float('nan')):.3g}), "
                + format_tail(parity)
                + f"agreement={100 * float(parity.get('agreement', 0)):.1f}% (min {100 * float(tol.get('min_agreement', 0)):.0f}%), "
                f"nonfinite={parity.get('nonfinite', 0)}")
        checks.append(_check("parity", _num(tol.get("bound")), _num(parity.get("max_abs")), bool(parity["passed"]), detail))

    top1 = _num(acc.get("top1"))
    if top1 is None or not math.isfinite(top1):
        checks.append(_check("max_top1_drop", g.max_top1_drop, None, False, "top-1 was not measured"))
    elif not math.isfinite(reference_top1):
        checks.append(_check("max_top1_drop", g.max_top1_drop, None, False, f"reference top-1 is {reference_top1}"))
    else:
        drop = reference_top1 - top1
        ok = drop <= g.max_top1_drop + 1e-9
        checks.append(_check("max_top1_drop", g.max_top1_drop, round(drop, 4), ok, "" if ok else
                             f"top-1 {top1:.2f}% is {drop:.2f} points below the reference {reference_top1:.2f}% "
                             f"(max drop {g.max_top1_drop:g})"))

    if g.min_agreement is not None:
        agreement = _num(acc.get("agreement"))
        if agreement is None:
            checks.append(_check("min_agreement", g.min_agreement, None, None,
                                 "agreement not measured (no reference logits)"))
        else:
            ok = agreement >= g.min_agreement
            checks.append(_check("min_agreement", g.min_agreement, agreement, ok, "" if ok else
                                 f"top-1 agreement with the reference {agreement:.1f}% < {g.min_agreement:g}%"))
    if accuracy_only:
        return checks
    # Under CPU emulation (qemu-user: results' environment.emulation) latency and memory are the
    # emulator's: reported as not measured on the device, with the emulated value, never gated.
    emu = variant_result.get("emulated")

    if g.p99_latency_ms is not None:
        lat = variant_result.get("latency_ms") or {}
        lat1 = lat.get("1") or lat.get(1)
        p99 = _num(lat1.get("p99")) if lat1 else None
        if p99 is None:
            checks.append(_check("p99_latency_ms", g.p99_latency_ms, None, None,
                                 f"p99 latency at batch 1 not measured (budget {g.p99_latency_ms:g} ms)"))
        elif emu:
            checks.append(_check("p99_latency_ms", g.p99_latency_ms, None, None,
                                 f"p99 latency at batch 1 not measured on the device ({p99:.2f} ms under emulation, "
                                 f"{emu}: not gated)"))
        else:
            ok = math.isfinite(p99) and p99 <= g.p99_latency_ms
            checks.append(_check("p99_latency_ms", g.p99_latency_ms, p99, ok, "" if ok else
                                 f"p99 latency at batch 1 {p99:.2f} ms > budget {g.p99_latency_ms:g} ms"))

    if g.max_memory_mb is not None:
        mem = _num((variant_result.get("memory") or {}).get("peak_rss_mb"))
        if mem is None:
            checks.append(_check("max_memory_mb", g.max_memory_mb, None, None,
                                 f"peak memory not measured (budget {g.max_memory_mb:g} MB)"))
        elif emu:
            checks.append(_check("max_memory_mb", g.max_memory_mb, None, None,
                                 f"peak memory not measured on the device ({mem:.0f} MB RSS of the emulator "
                                 f"process: not gated)"))
        else:
            ok = mem <= g.max_memory_mb
            checks.append(_check("max_memory_mb", g.max_memory_mb, mem, ok, "" if ok else
                                 f"peak memory {mem:.0f} MB > budget {g.max_memory_mb:g} MB"))
    return checks


def verdict_of_checks(checks: list[dict[str, Any]]) -> tuple[str, str]:
    """('pass' | 'fail', reason) from `gate_checks`: failures first, then what was not measured."""
    fails = [c["detail"] for c in checks if c["passed"] is False]
    notes = [c["detail"] for c in checks if c["passed"] is None]
    if fails:
        return "fail", "; ".join(fails + notes)
    return "pass", "; ".join(notes) if notes else "all gates passed"


def apply_gates(variant_result: dict[str, Any], profile: DeviceProfile, reference_top1: float) -> tuple[str, str]:
    """Returns ('pass' | 'fail', reason). Checks, in order: non-finite outputs, parity, top-1
    drop (points), agreement (%), p99 latency at batch 1 (ms), peak memory (MB)."""
    return verdict_of_checks(gate_checks(variant_result, profile, reference_top1))


def streams_sustained(call_ms_mean: float | None, stride: int, fps: float, batch: int = 1) -> int | None:
    """Streams at `fps` one runner keeps up with, step calls back to back: each stream needs
    fps / stride calls per second, a call serves `batch` streams and takes the mean call time."""
    if not call_ms_mean or call_ms_mean <= 0:
        return None
    return int(batch * stride * 1000.0 / (fps * call_ms_mean))


def streaming_checks(row: dict[str, Any], profile: DeviceProfile) -> list[dict[str, Any]]:
    """The profile's streaming gates for one streaming row (report `streaming`): non-finite
    decisions; a reduced-precision stream's top-1 vs the fp32 stream of the same model (the
    profile's gates.max_top1_drop, always); and with a `streaming:` block, streams sustained at
    the profile's fps, p99 per step call, and streaming top-1 vs the same variant windowed.
    Latency gates are not judged on a host check or an emulator."""
    sg = profile.streaming
    nonfinite = int(row.get("nonfinite") or 0)
    checks = [_check("finite", 0, nonfinite, nonfinite == 0,
                     f"non-finite decisions on {nonfinite} sequences" if nonfinite else "")]
    ref, top1_now, limit = _num(row.get("fp32_stream_top1")), _num(row.get("top1")), profile.gates.max_top1_drop
    if ref is not None and top1_now is not None and limit is not None:  # reduced precision vs the fp32 stream
        drop = round(ref - top1_now, 4)
        ok = drop <= limit + 1e-9
        checks.append(_check("stream_precision_drop", limit, drop, ok, "" if ok else
                             f"{row.get('precision')} stream top-1 {top1_now:.2f}% is {drop:.2f} points below the fp32 "
                             f"stream's {ref:.2f}% (max drop {limit:g})"))
    if sg is None:
        return checks
    device_latency = not (row.get("host_check") or row.get("emulated"))
    top1, win = _num(row.get("top1")), _num(row.get("windowed_top1"))
    n, p99 = row.get("streams_sustained"), _num((row.get("latency_ms") or {}).get("p99"))
    # (gate, threshold, measured or None when not measured here, passed, why it failed, why not measured)
    judged = [
        ("stream_min_streams", sg.min_streams, n if device_latency else None, lambda v: v >= sg.min_streams,
         lambda v: f"{v} streams at {sg.fps:g} fps < {sg.min_streams} required",
         "streams sustained not measured on the device"),
        ("stream_p99_latency_ms", sg.p99_latency_ms, p99 if device_latency else None, lambda v: v <= sg.p99_latency_ms,
         lambda v: f"p99 per step call {v:.2f} ms > budget {sg.p99_latency_ms:g} ms",
         "p99 per step call not measured on the device"),
        ("stream_max_top1_drop", sg.max_top1_drop, None if top1 is None or win is None else round(win - top1, 4),
         lambda v: v <= sg.max_top1_drop + 1e-9,
         lambda v: f"streaming top-1 {top1:.2f}% is {v:.2f} points below windowed {win:.2f}% (max drop {sg.max_top1_drop:g})",
         "streaming or windowed top-1 not measured"),
    ]
    for gate, threshold, measured, passes, fail_text, missing in judged:
        if threshold is None:
            continue
        if measured is None:
            checks.append(_check(gate, threshold, None, None, missing))
        else:
            ok = bool(passes(measured))
            checks.append(_check(gate, threshold, measured, ok, "" if ok else fail_text(measured)))
    return checks
