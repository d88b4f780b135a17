"""Write report.json, report.md and a self-contained report.html (plots embedded as PNG)."""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path
from typing import Any

from edgeskel.errors import ConfigError
from edgeskel.io import atomic_write_json, atomic_write_text
from edgeskel.report.schema import validate_report

HEADER = ("| Variant | Status | Size MB | Params | GFLOPs | Top-1 | ΔTop-1 | Agreement | p50 ms (batch 1) "
          "| p99 ms (batch 1) | Best FPS (at batch) |")


def _f(v: Any, fmt: str = "{:.2f}") -> str:
    return "-" if v is None else fmt.format(v)


def _params(v: Any) -> str:
    if v is None:
        return "-"
    return f"{v / 1e6:.2f}M" if v >= 1e6 else f"{v / 1e3:.1f}k" if v >= 1e3 else str(v)


def table_rows(report: dict[str, Any]) -> list[list[str]]:
    rows = []
    for v in report["variants"]:
        lat = v.get("latency_ms") or {}
        delta = None if v.get("top1_drop") is None else 0.0 - float(v["top1_drop"])
        rows.append([v["name"], v["status"].upper(), _f(v.get("size_mb")), _params(v.get("params")),
                     _f(v.get("gflops"), "{:.3f}"), _f(v.get("top1")), _f(delta, "{:+.2f}"),
                     _f(v.get("agreement"), "{:.1f}%"), _f(lat.get("p50")) + (" (noisy)" if v.get("latency_noisy") else ""),
                     _f(lat.get("p99")), _fps(v)])
    return rows


def _fps(v: dict[str, Any]) -> str:
    """Samples/s at the batch size that gave the most, and which batch that was."""
    if v.get("throughput_fps") is None:
        return "-"
    b = v.get("throughput_batch_size")
    return f"{v['throughput_fps']:.0f}" + (f" @ {b}" if b is not None else "")


BASELINE_HEADER = ["Variant", "Uncompressed p50 ms", "Compressed p50 ms", "Speedup", "Size", "Params", "GFLOPs",
                   "Top-1 uncompressed", "Top-1 compressed"]
BASELINE_TEXT = ("The uncompressed reference exported on each variant's backend and precision and measured in the "
                 "same run (same bundle, timed with the variants). Speedup = uncompressed p50 / compressed p50 at "
                 "batch 1; Size, Params, GFLOPs = compressed / uncompressed. Reference rows: never gated; the "
                 "decision recommends shipping one only when compression did not measure more than 5% faster.")


def _baseline_host_check(b: dict[str, Any], v: dict[str, Any]) -> bool:
    """Was this uncompressed row measured only as a host check (not on the device)? Older
    report.json files lack the flag: their row is a host check when its variant is one."""
    return bool(b.get("host_check")) or (bool(v.get("host_check")) and b.get("measured_on") == "local"
                                         and b["latency_ms"].get("p50") is None)


def baseline_table(report: dict[str, Any]) -> list[list[str]]:
    """One row per variant: its uncompressed twin's numbers and the ratios (report['baselines']).
    A cell never holds a reason (baseline_notes gives each once) and the device columns never
    hold a host check's top-1 (that goes to the host-check table)."""
    by = {v["name"]: v for v in report["variants"]}
    rows = []
    for b in report.get("baselines") or []:
        v, r = by.get(b["of"]) or {}, b.get("ratios") or {}
        p50 = b["latency_ms"].get("p50")
        rows.append([b["of"], _f(p50) if p50 is not None else "not measured" if b.get("note") else "-",
                     _f((v.get("latency_ms") or {}).get("p50")), _f(r.get("latency_speedup"), "{:.2f}x"),
                     _f(r.get("size"), "{:.2f}x"), _f(r.get("params"), "{:.2f}x"), _f(r.get("gflops"), "{:.2f}x"),
                     "-" if _baseline_host_check(b, v) else _f(b.get("top1")), _f(v.get("top1"))])
    return rows


def baseline_notes(report: dict[str, Any]) -> list[str]:
    """Why uncompressed rows have no device latency: each distinct reason once, with the
    variants it applies to (a skip reason repeated in every cell buried the table)."""
    by = {v["name"]: v for v in report["variants"]}
    reasons: dict[str, list[str]] = {}
    hosts = [b["of"] for b in report.get("baselines") or [] if _baseline_host_check(b, by.get(b["of"]) or {})]
    for b in report.get("baselines") or []:
        if b.get("note") and b["latency_ms"].get("p50") is None and b["of"] not in hosts:
            reasons.setdefault(b["note"], []).append(b["of"])
    out = [f"Uncompressed not measured on {report['device']} ({', '.join(names)}): {note}."
           for note, names in reasons.items()]
    if hosts:
        out.append(f"Uncompressed {', '.join(hosts)}: checked on this host only, not on a {report['device']} (no "
                   "device latency, so no speedup); its top-1 is with the host checks below.")
    return out


def conditions_lines(report: dict[str, Any]) -> list[str]:
    """How the latencies were taken (interleaved or not) and on what host: CPU model, cores,
    threads, load average before and after; and which variants' timing was noisy."""
    m = report.get("measurement") or {}
    out = []
    t = m.get("timing") or {}
    if t.get("method"):
        out.append(f"Timing: {t['method']}" + (f" ({', '.join(t['variants'])})" if t.get("variants") else "") + ".")
    h = m.get("host") or {}
    if h:
        load = h.get("load_avg_1_5_15")
        out.append(f"Host: {h.get('cpu_model') or '?'} ({m.get('machine') or '?'}), {h.get('logical_cores')} logical cores, "
                   f"{h.get('usable_cores')} usable, {_threads_text(report, h)}; load average "
                   f"(1/5/15 min) {' / '.join(f'{x:.2f}' for x in load) if load else '?'} before"
                   + (f", {h['load_avg_after'][0]:.2f} after" if h.get("load_avg_after") else "") + ".")
    noisy = [v["name"] for v in report["variants"] if v.get("latency_noisy")]
    if noisy:
        out.append(f"Noisy timing (p99/p50 > 2 or IQR/p50 > 0.25 at batch 1): {', '.join(noisy)}; a close pair "
                   "may swap places on a rerun.")
    return out


def _threads_text(report: dict[str, Any], h: dict[str, Any]) -> str:
    """'runtime threads N', saying when N is the profile's setting for another device (a
    report for a Jetson checked on this host) and when it exceeds the cores this host let
    the runner use (then threads share cores and latency suffers)."""
    threads, usable = h.get("threads"), h.get("usable_cores")
    text = f"runtime threads {threads or 'default'}"
    notes = []
    foreign = any(v.get("host_check") for v in report["variants"]) or any(
        b.get("host_check") for b in report.get("baselines") or [])
    if threads and foreign:
        notes.append(f"the {report['device']} profile's setting for the device, not chosen for this host")
    if threads and usable and int(threads) > int(usable):
        notes.append(f"more than the {usable} usable cores{' here' if foreign else ''}: threads shared cores")
    return text + (f" ({'; '.join(notes)})" if notes else "")


def compute_lines(report: dict[str, Any]) -> list[str]:
    """Achieved GFLOP/s per variant at batch 1 and at its best batch (report/roofline.py)."""
    out = []
    for v in report["variants"]:
        c = v.get("compute")
        if not c:
            continue
        which = c.get("peak_precision")  # older reports: not recorded
        label = f"{which} peak" if which else "peak"
        if which and which != v["precision"]:
            label += f"; the profile gives no {v['precision']} peak"

        def part(r: dict[str, Any], label: str = label) -> str:
            frac = f" ({100 * r['fraction_of_peak']:.1f}% of {label})" if r.get("fraction_of_peak") is not None else ""
            return f"{r['gflops_per_s']:.3g} GFLOP/s at batch {r['batch']}{frac}"
        out.append(f"- {v['name']} ({v['precision']}): {part(c['batch1'])}"
                   + (f"; {part(c['best'])}" if c["best"]["batch"] != c["batch1"]["batch"] else ""))
    if out:
        notes = {v["compute"]["peak_note"] for v in report["variants"] if v.get("compute")}
        out.append(f"- {'; '.join(sorted(notes))}.")
    return out


def device_command(report: dict[str, Any]) -> str:
    bundle = report.get("bundle", "bundle")
    return report.get("device_command") or f"cd {bundle} && python3 device_runner.py . --out results.json"


def device_steps(report: dict[str, Any]) -> list[str]:
    """Commands (run in the report's folder) that measure the bundle on the device and bring
    the results back into this report."""
    from edgeskel.invocation import edgeskel_command

    return report.get("device_steps") or [device_command(report), f"{edgeskel_command()} results import . results.json"]


def _gate_cell(c: dict[str, Any] | None) -> str:
    if c is None:
        return "-"
    if c["measured"] is None:
        return "not measured" if c["passed"] is None else "FAIL"
    value = f"{c['measured']:.0f}" if c["unit"] == "MB" else f"{c['measured']:.3g}" if c["gate"] == "parity" \
        else f"{c['measured']:.2f}"
    if c["gate"] == "parity" and c.get("threshold") is not None:  # the bound depends on precision and logit scale
        value += f" (max {c['threshold']:.3g})"
    return f"{value} {'pass' if c['passed'] else 'FAIL' if c['passed'] is False else '?'}"


def gate_columns(report: dict[str, Any]) -> list[str]:
    """Gate keys any variant was judged by, in GATES order (non-finite folded into parity/top-1)."""
    from edgeskel.validate.gates import GATES

    seen = {c["gate"] for v in report["variants"] for c in v.get("gates") or []}  # host checks: their own table
    for key, val in (report.get("gates") or {}).items():
        if key in GATES and val is not None:
            seen.add(key)
    return [g for g in GATES if g in seen and g != "finite"]


def gate_header(report: dict[str, Any], key: str) -> str:
    from edgeskel.validate.gates import GATES

    label, unit, bound = GATES[key]
    thr = next((c["threshold"] for v in report["variants"] for c in (v.get("gates") or []) if c["gate"] == key
                and c["threshold"] is not None), (report.get("gates") or {}).get(key))
    if key == "parity":  # max |artifact logit - PyTorch logit| over the parity set; each cell gives its bound
        return f"{label} (max abs logit diff)"
    if thr is None:
        return label
    return f"{label} ({'max' if bound == 'max' else 'min'} {thr:g}{' ' + unit if unit else ''})"


def gate_rows(report: dict[str, Any]) -> list[list[str]]:
    """Per variant: name, status, then measured value + pass/FAIL for each gate column."""
    cols = gate_columns(report)
    rows = []
    for v in report["variants"]:
        by = {c["gate"]: c for c in v.get("gates") or []}
        fin = by.get("finite")
        row = [v["name"], v["status"].upper()]
        for k in cols:
            cell = _gate_cell(by.get(k))
            if k == "max_top1_drop" and fin is not None and fin["passed"] is False:
                cell += f" ({fin['measured']} non-finite)"
            row.append(cell)
        rows.append(row)
    return rows


def _md_table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + ["| " + " | ".join(r) + " |" for r in rows]


def decision_lines(report: dict[str, Any]) -> list[str]:
    d = report.get("decision") or {}
    if d.get("recommended") and d.get("ship_uncompressed"):
        out = [f"**Ship the uncompressed `{d['recommended']}`** (`{d.get('uncompressed')}`, the reference without "
               f"compression): {d['why']}."]
        if d.get("runner_up"):
            out.append(f"Runner-up among the compressed variants: `{d['runner_up']}` ({d['runner_up_why']}).")
    elif d.get("recommended"):
        out = [f"**Ship `{d['recommended']}`**: {d['why']}."]
        if d.get("runner_up"):
            out.append(f"Runner-up: `{d['runner_up']}` ({d['runner_up_why']}).")
        else:
            out.append(f"Runner-up: none ({d.get('runner_up_why') or 'no other variant met every gate'}).")
    else:
        out = [f"**No variant to ship yet**: {d.get('why', 'nothing measured')}."]
    out.append(f"Rule: {d.get('rule', '')}.")
    return out


def _host_baselines(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Uncompressed rows measured only as host checks, by variant name."""
    by = {v["name"]: v for v in report["variants"]}
    return {b["of"]: b for b in report.get("baselines") or [] if _baseline_host_check(b, by.get(b["of"]) or {})}


def host_rows(report: dict[str, Any]) -> list[list[str]]:
    rows = []
    base = _host_baselines(report)
    for v in report["variants"]:
        h = v.get("host_check")
        if not h:
            continue
        delta = None if h.get("top1_drop") is None else 0.0 - float(h["top1_drop"])
        rows.append([v["name"], h["status"].upper(), _f(h.get("top1")), _f(delta, "{:+.2f}"),
                     _f(h.get("agreement"), "{:.1f}%"), h.get("arch") or "this host"]
                    + ([_f((base.get(v["name"]) or {}).get("top1"))] if base else []))
    return rows


HOST_HEADER = ["Variant", "Host check", "Top-1", "ΔTop-1", "Agreement", "Host arch"]


def host_header(report: dict[str, Any]) -> list[str]:
    """HOST_HEADER, plus the uncompressed twin's host-check top-1 when the report has one."""
    return HOST_HEADER + (["Uncompressed top-1 (host)"] if _host_baselines(report) else [])


def emulated_rows(report: dict[str, Any]) -> list[list[str]]:
    """Variants run by the device's own binaries under CPU emulation (validate/emulation.py):
    their accuracy is real, their timing is the emulator's, so it is shown only here."""
    rows = []
    for v in report["variants"]:
        m = v.get("emulation")
        if not m:
            continue
        lat = m.get("latency_ms") or {}
        rows.append([v["name"], f"{m.get('emulator')} ({m.get('machine') or '?'})", _f(v.get("top1")),
                     _f(v.get("agreement"), "{:.1f}%"), _f(v.get("max_abs_vs_ref"), "{:.3g}"), _f(lat.get("p50")),
                     _f(lat.get("p99")), _f(m.get("peak_memory_mb"), "{:.0f}")])
    return rows


EMU_HEADER = ["Variant", "Emulator (arch)", "Top-1", "Agreement", "Max abs logit err", "EMULATED p50 ms",
              "EMULATED p99 ms", "Emulator RSS MB"]
EMU_TEXT = ("Run by the device architecture's own Python, numpy and runtime binaries under CPU emulation: top-1, "
            "agreement and logit error are those kernels' real results; latency and memory are the emulator's, "
            "NOT the device's, and are never gated.")


def selection_lines(report: dict[str, Any]) -> list[str]:
    """Which compressed model shipped and why (chosen on the validation split), and where the
    accuracy numbers come from (the test split only)."""
    lines = []
    sel = (report.get("compressed") or {}).get("selection")
    if sel:
        lines.append(f"- Deployed model: **{sel['deployed']}** ({sel['note']}; chosen on the validation split).")
    lines += [f"- **Warning:** {w}." for w in report.get("validation_warnings") or []]
    ranks = (report.get("compressed") or {}).get("ranks") or {}
    if ranks.get("timed_on"):  # policy 'latency': ranks from measured layer latencies
        dense = ranks.get("kept_dense") or []
        lines.append(f"- Ranks: policy `{ranks['policy']}`, layer latencies timed on {ranks['timed_on']} with "
                     f"{ranks.get('backend')} ({ranks.get('measured')} forms measured, {ranks.get('cache_hits')} from "
                     f"the cache); {len(dense)} layer(s) kept dense where factorizing did not measure faster.")
    ds = report.get("dataset") or {}
    if ds.get("accuracy_split") == "test":
        val = ds.get("validation") or {}
        lines.append(f"- Accuracy is on the test split only ({ds.get('num_test')} samples); epochs, models and INT8 "
                     f"gates were chosen on the validation split ({val.get('source', 'validation')}, "
                     f"{val.get('samples', ds.get('num_val'))} samples).")
    return lines


def render_markdown(report: dict[str, Any]) -> str:
    from edgeskel.report.verdict import verdict_of

    report = verdict_of(report)
    ref = report["reference"]
    lines = [f"# {report['recipe']} on {report['device']}: {report['verdict']}", "",
             f"**{report['headline']}** (exit code {report['exit_code']}).", "",
             "## Decision", "", *[x for line in decision_lines(report) for x in (line, "")], *selection_lines(report), "",
             f"## Gates of `{report['device']}` and what each variant measured", "",
             "Each cell: the measured value, then whether it met the gate (latency at batch 1, memory = peak RSS "
             "of the runner process).", "",
             *_md_table(["Variant", "Status"] + [gate_header(report, k) for k in gate_columns(report)], gate_rows(report)),
             "", f"## Measurements on {report['device']}", "",
             f"Reference (fp32 PyTorch) top-1: {ref['top1']:.2f}% on {report['dataset'].get('name', 'the dataset')}"
             f" ({report['dataset'].get('num_samples', '?')} samples). Latency at batch 1; Best FPS = samples/s at"
             " the batch size that gave the most (after @). Variants not measured on the device show `-`.", "",
             *[x for line in conditions_lines(report) for x in (line, "")], HEADER, "|" + "---|" * 11]
    lines += ["| " + " | ".join(r) + " |" for r in table_rows(report)]
    if report.get("baselines"):
        lines += ["", "## Compressed vs uncompressed", "", BASELINE_TEXT, "",
                  *_md_table(BASELINE_HEADER, baseline_table(report)),
                  *[x for line in baseline_notes(report) for x in ("", line)]]
    hrows = host_rows(report)
    if hrows:
        lines += ["", "## Host checks (NOT device numbers)", "",
                  f"Checked on this host, not on a {report['device']}: accuracy only. These rows say the artifact "
                  "computes the right thing; they say nothing about the device's latency or memory.", "",
                  *_md_table(host_header(report), hrows)]
    erows = emulated_rows(report)
    if erows:
        lines += ["", "## Emulated device runs (latency NOT the device's)", "", EMU_TEXT, "",
                  *_md_table(EMU_HEADER, erows)]
    lines += ["", "## Reasons", ""]
    lines += [f"- **{v['name']}** ({v['status']}, measured on `{v['measured_on']}`): {v.get('reason') or '-'}"
              + (f". {v['int8_summary']}" if v.get("int8_summary") else "")
              + (f". {v['latency_note']}" if v.get("latency_note") else "") for v in report["variants"]]
    comp = compute_lines(report)
    if comp:
        lines += ["", "## Achieved compute", "", "Model GFLOPs per sample x samples per second at the p50 latency.", "",
                  *comp]
    skipped = [v for v in report["variants"] if v["status"] == "skipped"]
    if skipped:
        lines += ["", "## To measure on the device", "",
                  f"{', '.join(v['name'] for v in skipped)} were not measured on {report['device']}. In this report's "
                  "folder, copy the bundle to the device, run it there (needs only numpy + the runtime) and import "
                  "its results; the report is then re-gated and rewritten:", "", "```", *device_steps(report), "```"]
    return "\n".join(lines) + "\n"


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


def _html_table(header: list[str], rows: list[list[str]]) -> str:
    e = html.escape
    return ("<table><tr>" + "".join(f"<th>{e(h)}</th>" for h in header) + "</tr>"
            + "".join("<tr>" + "".join(f"<td>{e(c)}</td>" for c in r) + "</tr>" for r in rows) + "</table>")


def render_html(report: dict[str, Any]) -> str:
    from edgeskel.report.verdict import verdict_of

    report = verdict_of(report)
    e = html.escape
    import re

    def md_inline(t: str) -> str:  # the decision lines' **bold** and `code`, as HTML
        return re.sub(r"`([^`]+)`", r"<code>\1</code>", re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", e(t)))

    decision = "".join(f"<p>{md_inline(line)}</p>" for line in decision_lines(report))
    sel = selection_lines(report)  # the same lines report.md has under the decision
    decision += ("<ul>" + "".join(f"<li>{md_inline(line.removeprefix('- '))}</li>" for line in sel) + "</ul>") if sel else ""
    gates = _html_table(["Variant", "Status"] + [gate_header(report, k) for k in gate_columns(report)], gate_rows(report))
    meas = _html_table([h.strip() for h in HEADER.strip("|").split("|")], table_rows(report))
    hrows = host_rows(report)
    host = (f"<h2>Host checks (NOT device numbers)</h2><p>Checked on this host, not on a {e(report['device'])}: accuracy "
            f"only; nothing here describes the device's latency or memory.</p>{_html_table(host_header(report), hrows)}") if hrows else ""
    erows = emulated_rows(report)
    host += (f"<h2>Emulated device runs (latency NOT the device's)</h2><p>{e(EMU_TEXT)}</p>"
             f"{_html_table(EMU_HEADER, erows)}") if erows else ""
    reasons = "".join(f"<li><b>{e(v['name'])}</b> ({e(v['status'])}, {e(v['measured_on'])}): {e(v.get('reason') or '-')}"
                      f"{e('. ' + v['int8_summary']) if v.get('int8_summary') else ''}"
                      f"{e('. ' + v['latency_note']) if v.get('latency_note') else ''}</li>"
                      for v in report["variants"])
    imgs = "".join(f'<p><img alt="{k}" src="data:image/png;base64,{b64}"></p>' for k, b64 in plots(report).items())
    skipped = [v["name"] for v in report["variants"] if v["status"] == "skipped"]
    note = (f"<h2>To measure on the device</h2><p>{e(', '.join(skipped))} were not measured on {e(report['device'])}. "
            "In this report's folder, run:</p>"
            f"<pre>{e(chr(10).join(device_steps(report)))}</pre>") if skipped else ""
    status = report["verdict"]
    color = {"PASSED": "#1a7f37", "FAILED": "#cf222e"}.get(status, "#9a6700")
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{e(report['recipe'])} on {e(report['device'])}</title>"
            "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
            "td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}td:first-child{text-align:left}</style></head>"
            f"<body><h1>{e(report['recipe'])} on {e(report['device'])}: <span style='color:{color}'>{e(status)}</span></h1>"
            f"<p><b>{e(report['headline'])}</b> (exit code {report['exit_code']}).</p>"
            f"<h2>Decision</h2>{decision}"
            f"<h2>Gates of {e(report['device'])} and what each variant measured</h2>{gates}"
            f"<h2>Measurements on {e(report['device'])}</h2>"
            f"<p>Reference top-1: {report['reference']['top1']:.2f}%. Latency at batch 1; Best FPS = samples/s at the "
            "batch size that gave the most (after @). Variants not measured on the device show -.</p>"
            + "".join(f"<p>{e(line)}</p>" for line in conditions_lines(report))
            + meas
            + (f"<h2>Compressed vs uncompressed</h2><p>{e(BASELINE_TEXT)}</p>"
               f"{_html_table(BASELINE_HEADER, baseline_table(report))}"
               + "".join(f"<p>{e(line)}</p>" for line in baseline_notes(report)) if report.get("baselines") else "")
            + f"{host}<h2>Reasons</h2><ul>{reasons}</ul>"
            + ("<h2>Achieved compute</h2><ul>" + "".join(f"<li>{e(x[2:])}</li>" for x in compute_lines(report)) + "</ul>"
               if compute_lines(report) else "")
            + f"{imgs}{note}"
            f"<details><summary>report.json</summary><pre>{e(json.dumps(report, indent=1, default=str))}</pre></details>"
            "</body></html>\n")


def write_reports(report: dict[str, Any], out_dir: str | Path, redact: list[str] | tuple[str, ...] = ()) -> dict[str, Path]:
    """Validate and write report.json / report.md / report.html atomically into `out_dir`.

    `redact`: strings that must never appear (host, user, key paths); if any does, it is
    replaced by `<redacted>` before anything is written."""
    from edgeskel.report.verdict import verdict_of

    validate_report(verdict_of(report))
    text = json.dumps(report, default=str)
    if any(s and s in text for s in redact):
        for s in redact:
            if s:
                text = text.replace(json.dumps(s)[1:-1], "<redacted>")
        report = json.loads(text)
    bad = [v["measured_on"] for v in report["variants"] if "@" in v["measured_on"]]
    if bad:
        raise ConfigError(f"report: measured_on must name a profile, not a login: {bad}")
    out_dir = Path(out_dir)
    paths = {"json": out_dir / "report.json", "md": out_dir / "report.md", "html": out_dir / "report.html"}
    atomic_write_json(paths["json"], report)
    atomic_write_text(paths["md"], render_markdown(report))
    atomic_write_text(paths["html"], render_html(report))
    return paths


SUMMARY_COLUMNS = ("Variant", "Status", "Top-1", "ΔTop-1", "p99 ms", "MB")


def summary_rows(report: dict[str, Any]) -> list[list[str]]:
    """The terminal table: what fits 80 columns (the full tables are in report.md)."""
    rows = []
    for v, r in zip(report["variants"], table_rows(report), strict=True):
        rows.append([r[0], r[1], r[5], r[6], r[9], _f(v.get("peak_memory_mb"), "{:.0f}")])
    return rows


def print_report(report: dict[str, Any], console: Any = None, run_dir: str | Path | None = None) -> None:
    """Summary for a terminal or a log: fits 80 columns, never cuts a variant name. `run_dir`:
    the run folder as the user can `cd` to it (the device steps are typed there)."""
    from rich.console import Console
    from rich.table import Table

    from edgeskel.report.verdict import verdict_of

    report = verdict_of(report)
    style = {"PASS": "green", "FAIL": "red", "SKIPPED": "dim", "ERROR": "bold red"}
    c = console or Console(width=min(Console().width, 100) if Console().is_terminal else 80)
    t = Table(title=f"{report['recipe']} on {report['device']} (reference top-1 {report['reference']['top1']:.2f}%)",
              caption="p99 at batch 1; MB = peak memory; full tables: report.md")
    names = [v["name"] for v in report["variants"]]
    t.add_column("Variant", no_wrap=True, min_width=max(map(len, names), default=7))
    for h in SUMMARY_COLUMNS[1:]:
        t.add_column(h, justify="left" if h == "Status" else "right", no_wrap=True)
    for r in summary_rows(report):
        t.add_row(r[0], f"[{style.get(r[1], '')}]{r[1]}[/]", *r[2:])
    c.print(t)
    for v in report["variants"]:
        if v["status"] != "pass":
            c.print(f"  {v['name']}: {v.get('reason')}", markup=False, highlight=False)
    speed = [f"{b['of']} {b['ratios']['latency_speedup']:.2f}x" for b in report.get("baselines") or []
             if (b.get("ratios") or {}).get("latency_speedup") is not None]
    if speed:  # what compression bought, measured in the same run (report.md: every ratio)
        c.print("vs uncompressed (p50 speedup at batch 1): " + ", ".join(speed), markup=False, highlight=False)
    d = report.get("decision") or {}
    if d.get("recommended") and d.get("ship_uncompressed"):
        c.print(f"ship the uncompressed {d['recommended']}: compression gave {d['compression_speedup']:.2f}x here",
                markup=False, highlight=False)
    elif d.get("recommended"):
        c.print(f"ship {d['recommended']}" + (f" (runner-up {d['runner_up']})" if d.get("runner_up") else ""),
                markup=False, highlight=False)
    for w in report.get("validation_warnings") or []:
        c.print(f"warning: {w}", markup=False, highlight=False)
    if any(v["status"] == "skipped" for v in report["variants"]) and report.get("bundle"):
        c.print("to measure on the device, in the run folder:", markup=False, highlight=False)
        for step in ([f"cd {run_dir}"] if run_dir is not None else []) + device_steps(report):
            c.print(f"  {step}", markup=False, highlight=False, soft_wrap=True)
    from rich.text import Text

    color = {"PASSED": "green", "FAILED": "red"}.get(report["verdict"], "yellow")
    c.print(Text.assemble((report["verdict"], f"bold {color}"),
                          f" (exit {report['exit_code']}): {report['headline'].split(': ', 1)[-1]}"))
