"""Issue 18 item 3: the uncompressed reference is exported on the same backends and precisions
as the profile's variants, measured in the same bundle (timed interleaved with them), and
shown as reference rows with compressed/uncompressed ratios; never gated (the decision may recommend
shipping one instead of its compressed variant: tests/test_report_decision_baseline.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_pipeline_e2e import TINY_RECIPE, tiny_profile

from edgeskel.pipeline import run_pipeline


@pytest.mark.slow  # the same checks run on test_pipeline_e2e's CPU run (check_baseline_rows), which measures baselines anyway
def test_baseline_rows_measured_in_the_same_run(tmp_path: Path):
    import yaml

    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(yaml.safe_dump({**TINY_RECIPE, "compress": {**TINY_RECIPE["compress"], "budget": 0.8}}))
    prof = tiny_profile(tmp_path, variants=[{"backend": "ort", "precision": "fp32"},
                                            {"backend": "openvino", "precision": "fp32"}],
                        batch_sizes=[1, 4], measure={"warmup": 1, "runs": 10})
    rep = run_pipeline(str(prof), str(recipe), out_root=tmp_path / "runs", quiet=True)
    check_baseline_rows(rep, tmp_path / "runs" / "tiny" / "cpu")


def check_baseline_rows(rep: dict, run_dir: Path) -> None:
    """The report of a finished local CPU run with compression: one baseline row per variant."""
    names = [v["name"] for v in rep["variants"]]
    assert names and all(not n.startswith("baseline-") for n in names)
    rows = {b["of"]: b for b in rep["baselines"]}
    assert set(rows) == set(names)
    for name, b in rows.items():
        assert b["name"] == f"baseline-{name}" and b["measured_on"] == "local" and b["timing"] == "interleaved"
        assert b["params"] == rep["reference"]["params"] and b["latency_ms"]["p50"] > 0 and b["top1"] is not None
        assert "gates" not in b and "status" not in b  # a reference row, never judged
        r = b["ratios"]
        assert 0 < r["params"] < 1 and 0 < r["gflops"] < 1 and 0 < r["size"]  # compressed is smaller
        if name.endswith("-fp32"):  # on disk too; an INT8 file's Q/DQ scales of the extra factor layers can outweigh it
            assert r["size"] < 1
        assert r["latency_speedup"] > 0
        v = next(v for v in rep["variants"] if v["name"] == name)
        assert v["vs_uncompressed"] == r
        assert r["params"] == round(v["params"] / rep["reference"]["params"], 4)
    # every variant and every baseline went through ONE bundle and ONE interleaved timing pass
    bundle = json.loads((run_dir / rep["bundle"] / "bundle.json").read_text())
    assert sorted(v["name"] for v in bundle["variants"]) == sorted(names + [f"baseline-{n}" for n in names])
    results = json.loads((run_dir / "validate" / "results.json").read_text())
    assert len(results["timing"]["variants"]) == 2 * len(names)
    assert rep["decision"].get("recommended") in (None, *names)  # never a baseline
    md = (run_dir / "report.md").read_text()
    assert "## Compressed vs uncompressed" in md and "| Speedup |" in md
    html = (run_dir / "report.html").read_text()
    assert "<h2>Compressed vs uncompressed</h2>" in html
    from rich.console import Console

    from edgeskel.report import print_report

    con = Console(width=80, record=True, file=open("/dev/null", "w"))  # noqa: SIM115
    print_report(rep, con)
    text = con.export_text()
    assert f"vs uncompressed (p50 speedup at batch 1): {names[0]} " in text.replace("\n", " ")
    assert max(map(len, text.splitlines())) <= 80
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["stages"]["baseline"]["status"] == "done"
