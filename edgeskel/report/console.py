"""The terminal summary (rich): what a run prints at its end or into a log, within 80 columns;
the full tables are in report.md."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgeskel.report.lines import device_steps, ensemble_lines, fmt, table_rows

SUMMARY_COLUMNS = ("Variant", "Status", "Top-1", "ΔTop-1", "p99 ms", "MB")


def summary_rows(report: dict[str, Any]) -> list[list[str]]:
    """The terminal table: what fits 80 columns (the full tables are in report.md)."""
    rows = []
    for v, r in zip(report["variants"], table_rows(report), strict=True):
        rows.append([r[0], r[1], r[5], r[6], r[9], fmt(v.get("peak_memory_mb"), "{:.0f}")])
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
    for line in ensemble_lines(report):  # per-stream vs fused top-1 (report.md: the same line)
        c.print(line, markup=False, highlight=False)
    for r in report.get("streaming") or []:  # step graphs: one line each (report.md: the table)
        lat = (r.get("latency_ms") or {}).get("p50")
        text = (f"stream {r['name']}: {r['status'].upper()}, top-1 {fmt(r.get('top1'))} "
                f"(windowed {fmt(r.get('windowed_top1'))})")
        if lat is not None:
            text += f", {lat:.2f} ms/call"
            if r.get("speedup_per_decision"):
                text += f" ({r['speedup_per_decision']:.1f}x per decision)"
            if r.get("streams_sustained") is not None:
                text += f", {r['streams_sustained']} streams @{r.get('fps', 30):g} fps"
        if r["status"] not in ("pass",):
            text += f"; {r.get('reason')}"
        c.print(text, markup=False, highlight=False)
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
