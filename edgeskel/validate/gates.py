"""Gates: did one measured variant meet the device profile? Every failure says the numbers.

`variant_result` is a measured variant as produced by `evaluate_runner` / `measure_latency`
or a device's results.json entry: keys `accuracy` (or the accuracy keys at top level),
`latency_ms` ({"1": {"p99": ...}, ...}), optional `memory` ({"peak_rss_mb": ...}) and
optional `parity` (edgeskel.validate.parity result with `passed`). A missing measurement is
not a failure (e.g. latency of a Jetson variant measured nowhere); it is named in the reason.
"""

from __future__ import annotations

import math
from typing import Any

from edgeskel.devices import DeviceProfile
from edgeskel.validate.parity import format_tail


def _num(v: Any) -> float | None:
    return None if v is None else float(v)


def apply_gates(variant_result: dict[str, Any], profile: DeviceProfile, reference_top1: float) -> tuple[str, str]:
    """Returns ('pass' | 'fail', reason). Checks, in order: non-finite outputs, parity, top-1
    drop (points), agreement (%), p99 latency at batch 1 (ms), peak memory (MB)."""
    g = profile.gates
    acc = variant_result.get("accuracy") or variant_result
    fails: list[str] = []
    notes: list[str] = []

    nonfinite = int(acc.get("nonfinite") or 0)
    n = acc.get("num_samples")
    if nonfinite:
        fails.append(f"non-finite outputs (NaN/Inf) on {nonfinite}/{n} samples")
    parity = variant_result.get("parity")
    if isinstance(parity, dict) and parity.get("passed") is False:
        tol = parity.get("tol") or {}
        fails.append(
            f"parity failed: max_abs={parity.get('max_abs', float('nan')):.3g} (bound {tol.get('bound', float('nan')):.3g}), "
            + format_tail(parity)
            + f"agreement={100 * float(parity.get('agreement', 0)):.1f}% (min {100 * float(tol.get('min_agreement', 0)):.0f}%), "
            f"nonfinite={parity.get('nonfinite', 0)}"
        )

    top1 = _num(acc.get("top1"))
    if top1 is None or not math.isfinite(top1):
        fails.append("top-1 was not measured")
    elif not math.isfinite(reference_top1):
        fails.append(f"reference top-1 is {reference_top1}")
    else:
        drop = reference_top1 - top1
        if drop > g.max_top1_drop + 1e-9:
            fails.append(f"top-1 {top1:.2f}% is {drop:.2f} points below the reference {reference_top1:.2f}% "
                         f"(max drop {g.max_top1_drop:g})")

    agreement = _num(acc.get("agreement"))
    if g.min_agreement is not None:
        if agreement is None:
            notes.append("agreement not measured (no reference logits)")
        elif agreement < g.min_agreement:
            fails.append(f"top-1 agreement with the reference {agreement:.1f}% < {g.min_agreement:g}%")

    if g.p99_latency_ms is not None:
        lat1 = (variant_result.get("latency_ms") or {}).get("1") or (variant_result.get("latency_ms") or {}).get(1)
        p99 = _num(lat1.get("p99")) if lat1 else None
        if p99 is None:
            notes.append(f"p99 latency at batch 1 not measured (budget {g.p99_latency_ms:g} ms)")
        elif not math.isfinite(p99) or p99 > g.p99_latency_ms:
            fails.append(f"p99 latency at batch 1 {p99:.2f} ms > budget {g.p99_latency_ms:g} ms")

    if g.max_memory_mb is not None:
        mem = _num((variant_result.get("memory") or {}).get("peak_rss_mb"))
        if mem is None:
            notes.append(f"peak memory not measured (budget {g.max_memory_mb:g} MB)")
        elif mem > g.max_memory_mb:
            fails.append(f"peak memory {mem:.0f} MB > budget {g.max_memory_mb:g} MB")

    if fails:
        return "fail", "; ".join(fails + notes)
    return "pass", "; ".join(notes) if notes else "all gates passed"
