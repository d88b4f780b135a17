#!/usr/bin/env python3
"""Per fold, how the INT8 gates decided on SBU (issue 26 item 3): test top-1 of each INT8 variant
against the reference and against the same model in fp32, the flip rate on the unlabelled clips
and how many search rounds the gate needed; then how many folds held within 1 point.

    .venv/bin/python scripts/sbu_int8_summary.py [--out runs/sbu-folds] [--json FILE]
(reads the run folders `scripts/sbu_folds.py` wrote)."""

from __future__ import annotations

import argparse
import json
import statistics as st
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def fold_rows(out: Path) -> list[dict]:
    rows = []
    for f in range(1, 6):
        run = out / f"fold{f}" / "stgcn-sbu" / "cpu"
        if not (run / "report.json").is_file():
            continue
        r = json.loads((run / "report.json").read_text())
        ref = r["reference"]["top1"]
        fp32 = {v["backend"]: v.get("top1") for v in r["variants"] if v["precision"] == "fp32"}
        row = {"fold": f, "test_clips": r["dataset"].get("num_samples"), "reference": round(ref, 2)}
        for v in r["variants"]:
            if v["precision"] != "int8":
                continue
            e = json.loads((run / "export" / v["name"] / "export.json").read_text())
            g = e.get("accuracy_gate") or {}
            u = g.get("unlabelled") or (g.get("gate") or {}).get("unlabelled") or {}
            attempts = (e.get("calibration") or {}).get("attempts") or g.get("rounds") or []
            row[v["name"]] = {"status": v["status"], "top1": round(v["top1"], 2),
                              "drop_vs_reference": round(ref - v["top1"], 2),
                              "drop_vs_fp32": round(fp32[v["backend"]] - v["top1"], 2),
                              "unlabelled_flip_pct": round(100 * u["flip_rate"], 2) if u else None,
                              "search_steps": len(attempts)}
        rows.append(row)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(REPO / "runs" / "sbu-folds"))
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    rows = fold_rows(Path(a.out))
    summary = {}
    for name in ("ort-int8", "openvino-int8"):
        got = [r[name] for r in rows if name in r]
        passed = [g for g in got if g["status"] == "pass"]
        summary[name] = {"folds": len(got), "passed": len(passed),
                         "held_1pt_vs_reference": sum(g["drop_vs_reference"] <= 1.0 for g in passed),
                         "held_1pt_vs_fp32": sum(g["drop_vs_fp32"] <= 1.0 for g in passed),
                         "mean_drop_vs_fp32": round(st.mean(g["drop_vs_fp32"] for g in got), 2) if got else None}
    doc = {"rows": rows, "summary": summary}
    print(json.dumps(doc, indent=2))
    if a.json:
        Path(a.json).write_text(json.dumps(doc, indent=2) + "\n")


if __name__ == "__main__":
    main()
