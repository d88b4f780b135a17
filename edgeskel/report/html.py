"""report.html: one self-contained page (styles inline, plots embedded as PNG) with the same
lines and tables as report.md, plus the figures and the raw report.json."""

from __future__ import annotations

import html
import json
from typing import Any

from edgeskel.report.lines import (
    BASELINE_HEADER,
    BASELINE_TEXT,
    EMU_HEADER,
    EMU_TEXT,
    HEADER,
    STREAM_HEADER,
    baseline_notes,
    baseline_table,
    compute_lines,
    conditions_lines,
    decision_lines,
    device_steps,
    emulated_rows,
    ensemble_lines,
    gate_columns,
    gate_header,
    gate_rows,
    host_header,
    host_rows,
    selection_lines,
    stream_reasons,
    stream_rows,
    stream_text,
    table_rows,
)
from edgeskel.report.plots import plots


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
            + "".join(f"<p>{e(line)}</p>" for line in conditions_lines(report) + ensemble_lines(report))
            + meas
            + (f"<h2>Compressed vs uncompressed</h2><p>{e(BASELINE_TEXT)}</p>"
               f"{_html_table(BASELINE_HEADER, baseline_table(report))}"
               + "".join(f"<p>{e(line)}</p>" for line in baseline_notes(report)) if report.get("baselines") else "")
            + (f"<h2>Streaming</h2><p>{e(stream_text(report))}</p>{_html_table(STREAM_HEADER, stream_rows(report))}<ul>"
               + "".join(f"<li>{e(line)}</li>" for line in stream_reasons(report)) + "</ul>" if report.get("streaming") else "")
            + f"{host}<h2>Reasons</h2><ul>{reasons}</ul>"
            + ("<h2>Achieved compute</h2><ul>" + "".join(f"<li>{e(x[2:])}</li>" for x in compute_lines(report)) + "</ul>"
               if compute_lines(report) else "")
            + f"{imgs}{note}"
            f"<details><summary>report.json</summary><pre>{e(json.dumps(report, indent=1, default=str))}</pre></details>"
            "</body></html>\n")
