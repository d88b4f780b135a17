"""Write report.json, report.md and a self-contained report.html: validate, redact, then write
each file atomically. The renderers live in report/markdown.py and report/html.py."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from edgeskel.errors import ConfigError
from edgeskel.io import atomic_write_json, atomic_write_text
from edgeskel.report.html import render_html
from edgeskel.report.markdown import render_markdown
from edgeskel.report.schema import validate_report


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
