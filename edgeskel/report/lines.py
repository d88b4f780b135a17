"""The words and table cells of a report, in no format: what report.md, report.html and the
terminal summary all say (decision, selection, gates, measurements, baselines, host checks,
device steps). Kept apart from the renderers so the three outputs cannot drift apart."""

from __future__ import annotations

from typing import Any

HEADER = ("| Variant | Status | Size MB | Params | GFLOPs | Top-1 | ΔTop-1 | Agreement | p50 ms (batch 1) "
          "| p99 ms (batch 1) | Best FPS (at batch) |")


def fmt(v: Any, spec: str = "{:.2f}") -> str:
    """A number as table text: `spec` applied, '-' when missing."""
    return "-" if v is None else spec.format(v)


def _params(v: Any) -> str:
    if v is None:
        return "-"
    return f"{v / 1e6:.2f}M" if v >= 1e6 else f"{v / 1e3:.1f}k" if v >= 1e3 else str(v)


def table_rows(report: dict[str, Any]) -> list[list[str]]:
    rows = []
    for v in report["variants"]:
        lat = v.get("latency_ms") or {}
        delta = None if v.get("top1_drop") is None else 0.0 - float(v["top1_drop"])
        rows.append([v["name"], v["status"].upper(), fmt(v.get("size_mb")), _params(v.get("params")),
                     fmt(v.get("gflops"), "{:.3f}"), fmt(v.get("top1")), fmt(delta, "{:+.2f}"),
                     fmt(v.get("agreement"), "{:.1f}%"), fmt(lat.get("p50")) + (" (noisy)" if v.get("latency_noisy") else ""),
                     fmt(lat.get("p99")), _fps(v)])
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
        rows.append([b["of"], fmt(p50) if p50 is not None else "not measured" if b.get("note") else "-",
                     fmt((v.get("latency_ms") or {}).get("p50")), fmt(r.get("latency_speedup"), "{:.2f}x"),
                     fmt(r.get("size"), "{:.2f}x"), fmt(r.get("params"), "{:.2f}x"), fmt(r.get("gflops"), "{:.2f}x"),
                     "-" if _baseline_host_check(b, v) else fmt(b.get("top1")), fmt(v.get("top1"))])
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
        rows.append([v["name"], h["status"].upper(), fmt(h.get("top1")), fmt(delta, "{:+.2f}"),
                     fmt(h.get("agreement"), "{:.1f}%"), h.get("arch") or "this host"]
                    + ([fmt((base.get(v["name"]) or {}).get("top1"))] if base else []))
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
        rows.append([v["name"], f"{m.get('emulator')} ({m.get('machine') or '?'})", fmt(v.get("top1")),
                     fmt(v.get("agreement"), "{:.1f}%"), fmt(v.get("max_abs_vs_ref"), "{:.3g}"), fmt(lat.get("p50")),
                     fmt(lat.get("p99")), fmt(m.get("peak_memory_mb"), "{:.0f}")])
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


STREAM_HEADER = ["Stream", "Status", "Stride", "Streams/call", "Window", "State KB", "Top-1 stream", "Top-1 windowed",
                 "p50 ms/call", "p99 ms/call", "Speed-up/decision", "Streams @fps (windowed)"]


def stream_text(report: dict[str, Any]) -> str:
    rows = report.get("streaming") or []
    fps = rows[0].get("fps", 30.0) if rows else 30.0
    model = rows[0].get("model", "the deployed model") if rows else "the deployed model"
    return (f"Step graphs of {model} (docs/STREAMING.md): `stride` new frames + the state in, the decision for the stream so far "
            "out. Top-1 stream = the decision at each recorded test sequence's last frame (raw frames fed, stream "
            "ended and flushed); Top-1 windowed = the windowed variant of the same backend and precision. Latency per step call at "
            "batch 1, timed in the same run as the windowed variants; Speed-up/decision = windowed p50 / step p50; "
            f"Streams @{fps:g} fps = streams one runner keeps up with, calls back to back (the windowed variant "
            "recomputing its window at the same cadence in brackets). Streams/call: a batched step graph serves that many "
            "independent streams per call. State = what a deployment keeps per stream.")


def stream_rows(report: dict[str, Any]) -> list[list[str]]:
    rows = []
    for r in report.get("streaming") or []:
        lat = r.get("latency_ms") or {}
        streams = fmt(r.get("streams_sustained"), "{:d}")
        if r.get("windowed_streams_sustained") is not None:
            streams += f" ({r['windowed_streams_sustained']})"
        label = " (host check)" if r.get("host_check") else " (emulated)" if r.get("emulated") else ""
        rows.append([r["name"], r["status"].upper() + label, fmt(r.get("stride"), "{:d}"), fmt(r.get("batch", 1), "{:d}"),
                     fmt(r.get("window"), "{:d}"),
                     fmt(r.get("state_kb"), "{:.1f}"), fmt(r.get("top1")), fmt(r.get("windowed_top1")),
                     fmt(lat.get("p50")), fmt(lat.get("p99")), fmt(r.get("speedup_per_decision"), "{:.1f}x"), streams])
    return rows


def stream_reasons(report: dict[str, Any]) -> list[str]:
    return [f"{r['name']} ({r['status']}): {r.get('reason') or '-'}" for r in report.get("streaming") or []]


def ensemble_lines(report: dict[str, Any]) -> list[str]:
    """An ensemble's per-stream and fused test top-1 (PyTorch), for the reference and, when it
    was compressed, the deployed model: what fusion buys over the best single stream."""
    lines = []
    for what, e in (("reference", (report.get("reference") or {}).get("ensemble")),
                     ("deployed (compressed)" if report.get("compressed") else None,
                      (report.get("deployed_model") or {}).get("ensemble"))):
        if not what or not e:
            continue
        fusion = "weighted sum of softmax scores" if e["fusion"] == "softmax" else "weighted sum of logits"
        per = ", ".join(f"{s['name']} ({s['input']}, weight {s['weight']:g}) {s['top1']:.2f}" for s in e["streams"])
        lines.append(f"Ensemble, {what}: fused top-1 {e['fused_top1']:.2f} ({fusion}); per stream: {per}; best single "
                     f"stream {e['best_stream']}: fused {e['gain_over_best_stream']:+.2f} points.")
    return lines
