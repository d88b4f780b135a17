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

HEADER = "| Variant | Status | Size MB | Params | GFLOPs | Top-1 | ΔTop-1 | Agreement | p50 ms | p99 ms | FPS |"


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
                     _f(v.get("agreement"), "{:.1f}%"), _f(lat.get("p50")), _f(lat.get("p99")),
                     _f(v.get("throughput_fps"), "{:.0f}")])
    return rows


def device_command(report: dict[str, Any]) -> str:
    bundle = report.get("bundle", "bundle")
    return report.get("device_command") or f"cd {bundle} && python3 device_runner.py . --out results.json"


def render_markdown(report: dict[str, Any]) -> str:
    ref = report["reference"]
    lines = [f"# {report['recipe']} on {report['device']}: {'PASSED' if report['passed'] else 'FAILED'}", "",
             f"Reference (fp32 PyTorch) top-1: {ref['top1']:.2f}% on {report['dataset'].get('name', 'the dataset')}"
             f" ({report['dataset'].get('num_samples', '?')} samples). Latency at batch 1, FPS = samples/s at the best"
             " batch size.", "", HEADER, "|" + "---|" * 11]
    lines += ["| " + " | ".join(r) + " |" for r in table_rows(report)]
    lines += ["", "## Reasons", ""]
    lines += [f"- **{v['name']}** ({v['status']}, measured on `{v['measured_on']}`): {v.get('reason') or '-'}"
              + (f". {v['int8_summary']}" if v.get("int8_summary") else "")
              + (f". {v['latency_note']}" if v.get("latency_note") else "") for v in report["variants"]]
    est = [v for v in report["variants"] if v.get("roofline_estimate_ms") is not None]
    if est:
        lines += ["", "## Roofline estimates (NOT measurements)", ""]
        lines += [f"- {v['name']}: >= {v['roofline_estimate_ms']:.3g} ms at batch 1 (from published peak numbers)"
                  for v in est]
    skipped = [v for v in report["variants"] if v["status"] == "skipped"]
    if skipped:
        lines += ["", "## Not measured on the device", "",
                  f"{', '.join(v['name'] for v in skipped)} were not measured on {report['device']}. Copy the bundle "
                  "to the device and run there (needs only numpy + the runtime):", "", "```",
                  device_command(report), "```", "",
                  "then copy `results.json` back next to this report and re-run the export to gate them."]
    return "\n".join(lines) + "\n"


def _png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode()


def plots(report: dict[str, Any]) -> dict[str, str]:
    """Base64 PNGs: accuracy vs latency scatter, per-variant latency distributions."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors = {"pass": "tab:green", "fail": "tab:red", "skipped": "tab:gray", "error": "black"}
    out = {}
    fig, ax = plt.subplots(figsize=(6, 4))
    for v in report["variants"]:
        p50, top1 = (v.get("latency_ms") or {}).get("p50"), v.get("top1")
        if p50 is not None and top1 is not None:
            ax.scatter(p50, top1, color=colors[v["status"]], s=40)
            ax.annotate(v["name"], (p50, top1), fontsize=8, xytext=(4, 4), textcoords="offset points")
    ax.axhline(report["reference"]["top1"], ls="--", color="tab:blue", lw=1, label="fp32 reference")
    ax.set_xlabel("p50 latency at batch 1 (ms)")
    ax.set_ylabel("top-1 (%)")
    ax.set_title(f"Accuracy vs latency on {report['device']}")
    ax.legend(loc="lower right", fontsize=8)
    out["scatter"] = _png(fig)
    plt.close(fig)
    dist = [(v["name"], v["latency_samples_ms"]) for v in report["variants"] if v.get("latency_samples_ms")]
    if dist:
        fig, ax = plt.subplots(figsize=(6, 0.5 + 0.5 * len(dist)))
        ax.boxplot([d for _, d in dist], orientation="horizontal", showfliers=True)
        ax.set_yticks(range(1, len(dist) + 1), [n for n, _ in dist])
        ax.set_xlabel("latency per call at batch 1 (ms)")
        ax.set_title("Latency distribution")
        out["latency"] = _png(fig)
        plt.close(fig)
    return out


def render_html(report: dict[str, Any]) -> str:
    e = html.escape
    head = "".join(f"<th>{e(h.strip())}</th>" for h in HEADER.strip("|").split("|"))
    body = "".join("<tr>" + "".join(f"<td>{e(c)}</td>" for c in r) + "</tr>" for r in table_rows(report))
    reasons = "".join(f"<li><b>{e(v['name'])}</b> ({e(v['status'])}, {e(v['measured_on'])}): {e(v.get('reason') or '-')}"
                      f"{e('. ' + v['int8_summary']) if v.get('int8_summary') else ''}"
                      f"{e('. ' + v['latency_note']) if v.get('latency_note') else ''}</li>"
                      for v in report["variants"])
    imgs = "".join(f'<p><img alt="{k}" src="data:image/png;base64,{b64}"></p>' for k, b64 in plots(report).items())
    skipped = [v["name"] for v in report["variants"] if v["status"] == "skipped"]
    note = (f"<h2>Not measured on the device</h2><p>{e(', '.join(skipped))}: run on the device</p>"
            f"<pre>{e(device_command(report))}</pre>") if skipped else ""
    status = "PASSED" if report["passed"] else "FAILED"
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{e(report['recipe'])} on {e(report['device'])}</title>"
            "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
            "td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}td:first-child{text-align:left}</style></head>"
            f"<body><h1>{e(report['recipe'])} on {e(report['device'])}: {status}</h1>"
            f"<p>Reference top-1: {report['reference']['top1']:.2f}%</p>"
            f"<table><tr>{head}</tr>{body}</table><h2>Reasons</h2><ul>{reasons}</ul>{imgs}{note}"
            f"<details><summary>report.json</summary><pre>{e(json.dumps(report, indent=1, default=str))}</pre></details>"
            "</body></html>\n")


def write_reports(report: dict[str, Any], out_dir: str | Path, redact: list[str] | tuple[str, ...] = ()) -> dict[str, Path]:
    """Validate and write report.json / report.md / report.html atomically into `out_dir`.

    `redact`: strings that must never appear (host, user, key paths); if any does, it is
    replaced by `<redacted>` before anything is written."""
    validate_report(report)
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


def print_report(report: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    style = {"PASS": "green", "FAIL": "red", "SKIPPED": "dim", "ERROR": "bold red"}
    t = Table(title=f"{report['recipe']} on {report['device']} (reference top-1 {report['reference']['top1']:.2f}%)")
    for h in HEADER.strip("|").split("|"):
        t.add_column(h.strip(), justify="left" if h.strip() in ("Variant", "Status") else "right")
    for r in table_rows(report):
        t.add_row(r[0], f"[{style.get(r[1], '')}]{r[1]}[/]", *r[2:])
    c = Console() if Console().is_terminal else Console(width=140)  # logs/CI: don't squeeze the table
    c.print(t)
    for v in report["variants"]:
        if v["status"] != "pass":
            c.print(f"  {v['name']}: {v.get('reason')}")
    c.print("[green]PASSED[/]" if report["passed"] else "[red]FAILED[/]")
