"""report.md: the report's lines and tables as Markdown (readable as text, rendered on any
forge). Only layout lives here; the words come from report/lines.py."""

from __future__ import annotations

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


def _md_table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + ["| " + " | ".join(r) + " |" for r in rows]


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
             *[x for line in conditions_lines(report) for x in (line, "")],
             *[x for line in ensemble_lines(report) for x in (line, "")], HEADER, "|" + "---|" * 11]
    lines += ["| " + " | ".join(r) + " |" for r in table_rows(report)]
    if report.get("baselines"):
        lines += ["", "## Compressed vs uncompressed", "", BASELINE_TEXT, "",
                  *_md_table(BASELINE_HEADER, baseline_table(report)),
                  *[x for line in baseline_notes(report) for x in ("", line)]]
    if report.get("streaming"):
        lines += ["", "## Streaming", "", stream_text(report), "", *_md_table(STREAM_HEADER, stream_rows(report)), "",
                  *[f"- {line}" for line in stream_reasons(report)]]
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
