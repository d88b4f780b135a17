#!/usr/bin/env python3
"""SBU Kinect Interaction, all five folds of the subject-pair protocol, through the whole pipeline.

Why: one SBU fold has 55 test clips (one clip = 1.8 points), too few to say whether compression
and INT8 hold on this dataset; the protocol's answer is the mean over its five folds. Each fold
is `edgeskel export --device cpu --recipe recipes/stgcn-sbu.yaml --data sbu:...?fold=K` in its
own run folder (resumable: rerun to continue), then this script reads each fold's report.json
and writes the per-fold rows and their mean/std (docs/bench/sbu-folds.json and a markdown table
on stdout).

    .venv/bin/python scripts/sbu_folds.py [--data ../shared/data/sbu-kinect] [--out runs/sbu-folds]
        [--folds 1,2,3,4,5] [--summary-only]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


def run_fold(data: str, fold: int, out: Path) -> int:
    cmd = [sys.executable, "-m", "edgeskel", "export", "--device", "cpu", "--recipe", str(REPO / "recipes" / "stgcn-sbu.yaml"),
           "--data", f"sbu:{data}?fold={fold}", "--out", str(out / f"fold{fold}"), "--quiet"]
    print("+", " ".join(cmd), flush=True)
    return subprocess.run(cmd, cwd=REPO).returncode


def fold_row(out: Path, fold: int) -> dict[str, Any] | None:
    path = out / f"fold{fold}" / "stgcn-sbu" / "cpu" / "report.json"
    if not path.is_file():
        return None
    rep = json.loads(path.read_text())
    comp = rep.get("compressed") or {}
    row: dict[str, Any] = {"fold": fold, "test_clips": rep["dataset"].get("num_samples"),
                           "reference": rep["reference"]["top1"],
                           "factorized": (comp.get("top1") or {}).get("after_compression"),
                           "finetuned": (comp.get("top1") or {}).get("after_finetune"),
                           "deployed": (comp.get("top1") or {}).get("deployed"),
                           "shipped": (comp.get("selection") or {}).get("deployed"),
                           "params_ratio": (comp.get("totals") or {}).get("param_ratio"),
                           "verdict": rep.get("verdict"), "variants": {}}
    for v in rep["variants"]:
        row["variants"][v["name"]] = {"status": v.get("status"), "top1": v.get("top1"),
                                      "drop": None if v.get("top1") is None else round(rep["reference"]["top1"] - v["top1"], 2),
                                      "p50_ms": (v.get("latency_ms") or {}).get("p50"),
                                      "speedup": (v.get("vs_uncompressed") or {}).get("latency_speedup")}
    return row


def summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    def stats(vals: list[float]) -> dict[str, float] | None:
        vals = [v for v in vals if v is not None]
        if not vals:
            return None
        return {"mean": round(statistics.mean(vals), 2), "std": round(statistics.stdev(vals), 2) if len(vals) > 1 else 0.0,
                "n": len(vals)}

    names = sorted({n for r in rows for n in r["variants"]})
    return {"reference": stats([r["reference"] for r in rows]),
            "factorized": stats([r["factorized"] for r in rows]),
            "finetuned": stats([r["finetuned"] for r in rows]),
            "deployed": stats([r["deployed"] for r in rows]),
            "variants": {n: {"top1": stats([r["variants"].get(n, {}).get("top1") for r in rows]),
                             "drop": stats([r["variants"].get(n, {}).get("drop") for r in rows]),
                             "speedup": stats([r["variants"].get(n, {}).get("speedup") for r in rows]),
                             "passed": sum(1 for r in rows if (r["variants"].get(n) or {}).get("status") == "pass")}
                         for n in names}}


def markdown(rows: list[dict[str, Any]], summ: dict[str, Any]) -> str:
    names = sorted(summ["variants"])
    head = ["fold", "test clips", "reference", "factorized", "fine-tuned", "shipped", *names]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    fmt = lambda v: "-" if v is None else f"{v:.2f}"  # noqa: E731
    for r in rows:
        cells = [str(r["fold"]), str(r["test_clips"]), fmt(r["reference"]), fmt(r["factorized"]), fmt(r["finetuned"]),
                 str(r["shipped"])]
        cells += [f"{fmt(r['variants'].get(n, {}).get('top1'))} ({r['variants'].get(n, {}).get('status', '-')})" for n in names]
        lines.append("| " + " | ".join(cells) + " |")
    ms = lambda s: "-" if not s else f"{s['mean']:.2f} ± {s['std']:.2f}"  # noqa: E731
    cells = ["mean ± std", "", ms(summ["reference"]), ms(summ["factorized"]), ms(summ["finetuned"]), ""]
    cells += [f"{ms(summ['variants'][n]['top1'])} ({summ['variants'][n]['passed']}/{len(rows)} pass)" for n in names]
    lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "Batch-1 p50 speedup over the uncompressed model on the same backend (same interleaved run), "
              "mean ± std over the folds:", "",
              "| " + " | ".join(names) + " |", "|" + "---|" * len(names),
              "| " + " | ".join(f"{ms(summ['variants'][n]['speedup'])}x" for n in names) + " |"]
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "sbu-kinect"))
    ap.add_argument("--out", default=str(REPO / "runs" / "sbu-folds"))
    ap.add_argument("--folds", default="1,2,3,4,5")
    ap.add_argument("--summary-only", action="store_true", help="only read the finished folds' reports")
    ap.add_argument("--json", default=str(REPO / "docs" / "bench" / "sbu-folds.json"))
    a = ap.parse_args()
    out, folds = Path(a.out), [int(f) for f in a.folds.split(",")]
    if not a.summary_only:
        for f in folds:
            rc = run_fold(a.data, f, out)
            if rc not in (0, 1):  # 1 = a variant failed its gates: still a finished fold
                print(f"fold {f}: export exited {rc}", file=sys.stderr)
                return rc
    rows = [r for r in (fold_row(out, f) for f in folds) if r is not None]
    if not rows:
        print("no finished fold", file=sys.stderr)
        return 1
    summ = summary(rows)
    Path(a.json).write_text(json.dumps({"recipe": "recipes/stgcn-sbu.yaml", "folds": rows, "summary": summ}, indent=2) + "\n")
    print(markdown(rows, summ))
    return 0


if __name__ == "__main__":
    sys.exit(main())
