"""Measured candidates -> gates, Pareto front, the choice with its reason, and the outputs
(80-column table, JSON, plot, a recipe that reproduces the choice with `make export`).

A candidate is a dict: id, compression (option key: 'none', 'budget-0.5', 'latency-ort', ...),
variant (profile variant key), backend, precision, status ('ok' | 'error' | 'skipped'),
top1 (validation), size_bytes, latency_ms {str(batch): {p50, p99, ...}}; a step graph of a stream
workload also has form 'streaming' (top1: streaming top-1; latency: one step call = one decision).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

TIE = 0.05  # p50 values within 5% count as a tie (this machine's timing noise)


def p50(c: dict[str, Any], batch: str = "1") -> float | None:
    return ((c.get("latency_ms") or {}).get(batch) or {}).get("p50")


def p99(c: dict[str, Any], batch: str = "1") -> float | None:
    return ((c.get("latency_ms") or {}).get(batch) or {}).get("p99")


def judge(c: dict[str, Any], ref_top1: float, max_drop: float, p99_budget: float | None) -> dict[str, Any]:
    """The profile's gates that tune can measure here: top-1 drop and p99 at batch 1 (memory is
    judged by `make export` on the chosen variant)."""
    gates: dict[str, Any] = {}
    if c.get("status") != "ok" or c.get("top1") is None or p50(c) is None:
        return {"passed": False, "why": c.get("reason") or "not measured"}
    drop = ref_top1 - c["top1"]
    gates["top1_drop"] = {"threshold": max_drop, "measured": round(drop, 3), "passed": drop <= max_drop + 1e-9}
    if p99_budget is not None:
        gates["p99_ms_b1"] = {"threshold": p99_budget, "measured": round(p99(c) or 0.0, 4),
                              "passed": (p99(c) or 0.0) <= p99_budget}
    failed = [k for k, g in gates.items() if not g["passed"]]
    return {"passed": not failed, "gates": gates, "why": ", ".join(failed) if failed else ""}


def pareto(cands: list[dict[str, Any]]) -> list[str]:
    """Ids of measured candidates no other one beats on p50 (batch 1), top-1 and size at once."""
    ok = [c for c in cands if c.get("status") == "ok" and p50(c) is not None and c.get("top1") is not None]

    def dominates(a: dict[str, Any], b: dict[str, Any]) -> bool:
        ka = (p50(a), -a["top1"], a.get("size_bytes") or 0)
        kb = (p50(b), -b["top1"], b.get("size_bytes") or 0)
        return all(x <= y for x, y in zip(ka, kb, strict=True)) and ka != kb

    return [c["id"] for c in ok if not any(dominates(o, c) for o in ok if o is not c)]


def choose(cands: list[dict[str, Any]], ref_top1: float, max_drop: float,
           p99_budget: float | None) -> dict[str, Any]:
    """Lowest p50 at batch 1 among candidates meeting every gate. Within TIE of the fastest,
    an uncompressed candidate wins (compression that does not measure faster is not worth its
    accuracy risk), then higher top-1, then smaller size. Returns {chosen, why, ...}."""
    for c in cands:
        c["judged"] = judge(c, ref_top1, max_drop, p99_budget)
    ok = [c for c in cands if c["judged"]["passed"]]
    base = [c for c in ok if c["compression"] == "none" and c.get("form") != "streaming"]
    best_base = min(base, key=lambda c: p50(c)) if base else None
    if not ok:
        return {"chosen": None, "why": "no candidate met the profile's gates (see each candidate's gates)",
                "best_uncompressed": None, "speedup_vs_best_uncompressed": None}
    fastest = min(p50(c) for c in ok)
    tied = [c for c in ok if p50(c) <= fastest * (1 + TIE)]
    pick = min(tied, key=lambda c: (c["compression"] != "none", c.get("form") == "streaming", -c["top1"],
                                    c.get("size_bytes") or 0, p50(c)))
    gates = f"top-1 drop <= {max_drop:g}" + (f", p99 <= {p99_budget:g} ms at batch 1" if p99_budget else "")
    why = (f"{pick['id']}: lowest p50 at batch 1 ({p50(pick):.3f} ms) among {len(ok)} of {len(cands)} candidates "
           f"meeting the gates ({gates})")
    speed = None
    if best_base is not None:
        speed = p50(best_base) / p50(pick)
        if pick["compression"] == "none":
            why += (f"; no compressed candidate was more than {TIE:.0%} faster than the best uncompressed one: "
                    f"recommend no compression")
        else:
            why += f"; {speed:.2f}x lower p50 than the best uncompressed candidate {best_base['id']} ({p50(best_base):.3f} ms)"
    else:
        why += "; no uncompressed candidate met the gates"
    if pick.get("form") == "streaming":
        why += (f"; a step graph: {pick.get('stride', 1)} new frame(s) per call, one decision per call (a windowed "
                "candidate's p50 is one window per decision)")
    if len(tied) > 1:
        why += (f"; {len(tied) - 1} other candidate(s) within {TIE:.0%} (tie broken: uncompressed, then windowed, "
                "then top-1, then size)")
    return {"chosen": pick["id"], "why": why, "best_uncompressed": best_base["id"] if best_base else None,
            "speedup_vs_best_uncompressed": speed}


def table(cands: list[dict[str, Any]], front: list[str], chosen: str | None, ref_top1: float) -> str:
    """80-column text table, fastest first; '*' marks the front, '>' the choice."""
    head = f"  {'candidate':<30} {'p50 ms':>7} {'p99 ms':>7} {'top-1':>6} {'drop':>5} {'MB':>6}  {'gates':<9}"
    lines = [head, "  " + "-" * (len(head) - 2)]
    order = sorted(cands, key=lambda c: (p50(c) is None, p50(c) or 0.0))
    for c in order:
        mark = ">" if c["id"] == chosen else ("*" if c["id"] in front else " ")
        name = c["id"] if len(c["id"]) <= 30 else c["id"][:29] + "~"
        if c.get("status") != "ok" or p50(c) is None:
            lines.append(f"{mark} {name:<30} {(c.get('status') or '')[:7]:>7} {(c.get('reason') or '')[:36]}")
            continue
        size = f"{c['size_bytes'] / 1e6:6.2f}" if c.get("size_bytes") else f"{'-':>6}"
        gates = "pass" if c.get("judged", {}).get("passed") else ("FAIL " + c.get("judged", {}).get("why", ""))[:9]
        lines.append(f"{mark} {name:<30} {p50(c):7.3f} {p99(c) or 0.0:7.3f} {c['top1']:6.2f} "
                     f"{ref_top1 - c['top1']:5.2f} {size}  {gates:<9}")
    lines.append("  > chosen   * Pareto front (p50 at batch 1, validation top-1, size)")
    return "\n".join(line.rstrip() for line in lines)


def plot(cands: list[dict[str, Any]], front: list[str], chosen: str | None, title: str, path: Path) -> Path:
    """Latency (p50, batch 1) vs validation top-1; marker area ~ size; the front as a line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from edgeskel.io import save_figure_png

    ok = [c for c in cands if c.get("status") == "ok" and p50(c) is not None and c.get("top1") is not None]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for comp in sorted({c["compression"] for c in ok}):
        pts = [c for c in ok if c["compression"] == comp]
        sizes = [max(12.0, 40.0 * (c.get("size_bytes") or 1e6) / 1e6) for c in pts]
        ax.scatter([p50(c) for c in pts], [c["top1"] for c in pts], s=sizes, alpha=0.6,
                   label="no compression" if comp == "none" else comp)
    fr = sorted((c for c in ok if c["id"] in front), key=lambda c: p50(c))
    if fr:
        ax.plot([p50(c) for c in fr], [c["top1"] for c in fr], "k--", linewidth=0.8, label="Pareto front")
    for c in ok:
        if c["id"] == chosen:
            ax.scatter([p50(c)], [c["top1"]], marker="*", s=220, color="red", label=f"chosen: {c['id']}")
    ax.set_xlabel("p50 latency at batch 1 (ms)")
    ax.set_ylabel("validation top-1 (%)")
    ax.set_title(title)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return save_figure_png(fig, path)
