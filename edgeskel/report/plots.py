"""The report's figures (matplotlib, drawn headless), as base64 PNGs for report.html: kept
apart because matplotlib is heavy and only the HTML page and the screenshot tests draw them."""

from __future__ import annotations

import base64
import io
from typing import Any


def _png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode()


MARKERS = "osD^vP*Xph<>"


def _scatter_points(report: dict[str, Any]) -> list[tuple[str, str, float, float, bool]]:
    """(label, status, p99 at batch 1, top-1, is_baseline): the device's numbers only (host
    checks and unmeasured variants have none), then the uncompressed reference rows."""
    pts = [(v["name"], v["status"], v["latency_ms"]["p99"], v["top1"], False) for v in report["variants"]
           if (v.get("latency_ms") or {}).get("p99") is not None and v.get("top1") is not None]
    pts += [(b["name"], "uncompressed", b["latency_ms"]["p99"], b["top1"], True) for b in report.get("baselines") or []
            if (b.get("latency_ms") or {}).get("p99") is not None and b.get("top1") is not None]
    return pts


def scatter_figure(report: dict[str, Any]) -> Any:
    """The accuracy-vs-latency figure (matplotlib), or None when nothing has both numbers."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors = {"pass": "tab:green", "fail": "tab:red", "skipped": "tab:gray", "error": "black", "uncompressed": "tab:blue"}
    pts = _scatter_points(report)
    gates = report.get("gates") or {}
    if not pts:
        return None
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for i, (name, status, p99, top1, base) in enumerate(pts):
        c = colors.get(status, "black")
        ax.scatter(p99, top1, s=55, marker=MARKERS[i % len(MARKERS)], facecolors="none" if base else c,
                   edgecolors=c, linewidths=1.4, zorder=3,
                   label=f"{name} ({'uncompressed, not gated' if base else status.upper()})")
    ref = report["reference"]["top1"]
    drop = gates.get("max_top1_drop")
    ax.axhline(ref, ls="--", color="tab:blue", lw=1, label=f"fp32 reference {ref:.2f}%")
    ys = [t for *_, t, _ in pts] + [ref]
    if drop is not None:
        ax.axhline(ref - drop, ls=":", color="tab:red", lw=1.2, label=f"top-1 gate (-{drop:g} points)")
        ys.append(ref - drop)
    span = max(max(ys) - min(ys), 3 * (drop or 0.5))  # never zoom in below the gate's scale
    mid = (max(ys) + min(ys)) / 2
    top = min(100.0 + 0.1 * span, mid + 0.6 * span)  # top-1 never far above 100 %
    ax.set_ylim(top - 1.2 * span, top)
    xs = [p for _, _, p, _, _ in pts]
    budget = gates.get("p99_latency_ms")
    note = ""
    if budget is not None and budget <= 3 * max(xs):
        ax.axvline(budget, ls=":", color="tab:orange", lw=1.2, label=f"p99 budget {budget:g} ms")
        xs.append(budget)
    elif budget is not None:
        note = f" (p99 budget {budget:g} ms: far right of every point)"
    ax.set_xlim(0, max(xs) * 1.12)
    ax.set_xlabel("p99 latency at batch 1 (ms)" + note)
    ax.set_ylabel("top-1 (%)")
    ax.set_title(f"Accuracy vs latency measured on {report['device']}")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    return fig


def plots(report: dict[str, Any]) -> dict[str, str]:
    """Base64 PNGs, one per question. scatter: which variants meet the accuracy gate and the
    latency budget, and what compression bought (uncompressed rows hollow)? latency: how
    spread is each variant's timing? Names go in a legend (one marker each), never next to
    the points, so no label is clipped or drawn over another; the y-range always spans the
    reference and the top-1 gate, so differences inside the gate do not look large."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = {}
    gates = report.get("gates") or {}
    fig = scatter_figure(report)
    if fig is not None:
        out["scatter"] = _png(fig)
        plt.close(fig)
    dist = [(v["name"], v["latency_samples_ms"]) for v in report["variants"] if v.get("latency_samples_ms")]
    if dist:
        fig, ax = plt.subplots(figsize=(8, 0.9 + 0.45 * len(dist)))
        ax.boxplot([d for _, d in dist], orientation="horizontal", showfliers=True)
        ax.set_yticks(range(1, len(dist) + 1), [n for n, _ in dist])
        budget = gates.get("p99_latency_ms")
        hi = max(max(d) for _, d in dist)
        if budget is not None and budget <= 3 * hi:
            ax.axvline(budget, ls=":", color="tab:orange", lw=1.2, label=f"p99 budget {budget:g} ms")
            ax.legend(loc="lower right", fontsize=8)
        ax.set_xlim(0, max(hi, budget if budget is not None and budget <= 3 * hi else 0) * 1.08)
        ax.set_xlabel("latency per call at batch 1 (ms)")
        ax.set_title("Latency distribution per variant (box: middle half, whiskers: 1.5 IQR)")
        out["latency"] = _png(fig)
        plt.close(fig)
    return out
