"""The verdict, the decision and the gates in the report (issues 14.5, 16.6, 18.1-2, 18.7).

Report assembly is exercised through `assemble_report` (the pipeline's own function) on
device-runner-shaped measurements; the numbers are inputs to the logic under test.
"""

from __future__ import annotations

import json

from edgeskel.devices import profile_from_dict
from edgeskel.pipeline.validation import assemble_report
from edgeskel.report import write_reports
from edgeskel.report.console import print_report
from edgeskel.report.verdict import EXIT_CODES, decide

VARIANTS = [{"backend": "ort", "precision": "fp32"}, {"backend": "ort", "precision": "int8"},
            {"backend": "openvino", "precision": "fp32"},
            {"backend": "openvino", "precision": "int8", "name": "openvino-int8-accuracy-control"}]
PROFILE = profile_from_dict({
    "name": "gatedev", "arch": "x86_64", "variants": VARIANTS, "batch_sizes": [1, 16], "threads": 1,
    "measure": {"warmup": 0, "runs": 3},
    "gates": {"max_top1_drop": 1.0, "p99_latency_ms": 20.0, "max_memory_mb": 500.0},
    "peak": {"gflops_fp32": 10, "memory_bandwidth_gbs": 10, "source": "test"},
})


def meas(top1: float, p99: float, mem: float = 300.0) -> dict:
    lat = {"p50": p99 * 0.8, "p90": p99 * 0.9, "p99": p99, "mean": p99 * 0.8, "runs": 100, "throughput_fps": 1000 / p99}
    return {"status": "ok", "measured_on": "local",
            "accuracy": {"top1": top1, "top5": 100.0, "agreement": 99.0, "nonfinite": 0, "num_samples": 100},
            "latency_ms": {"1": lat, "16": {**lat, "p99": 8 * p99, "throughput_fps": 16000 / (8 * p99)}},
            "memory": {"peak_rss_mb": mem}}


def exported(size_bytes: int) -> dict:
    return {"status": "passed", "artifact": "model.onnx", "files": [{"path": "model.onnx", "bytes": size_bytes}]}


def report_for(exp: dict, measured: dict, not_measured: dict | None = None) -> dict:
    return assemble_report(
        PROFILE, "gates", {"num_val": 100, "num_calib": 8, "layout": "tiny", "classes": ["a", "b"]},
        {"top1": 90.0, "top5": 100.0, "params": 10, "gflops": 0.001, "source": "test"}, None,
        {"variants": exp}, {"measured": measured, "not_measured": not_measured or {}},
        {"params": 10, "gflops": 0.001}, {"python": "test"})


def test_variant_in_error_fails_the_run_and_the_headline_says_so(tmp_path):
    exp = {"ort-fp32": exported(4_000_000), "ort-int8": {"status": "error", "reason": "INT8 accuracy gate not met"},
           "openvino-fp32": exported(4_000_000), "openvino-int8-accuracy-control": exported(1_000_000)}
    m = {"ort-fp32": meas(90.0, 5.0), "openvino-fp32": meas(90.0, 6.0), "openvino-int8-accuracy-control": meas(89.5, 4.0)}
    rep = report_for(exp, m)
    assert rep["verdict"] == "FAILED" and rep["passed"] is False and rep["exit_code"] == EXIT_CODES["FAILED"] == 1
    assert "1 of 4 in ERROR (ort-int8)" in rep["headline"] and "3 passed" in rep["headline"]
    md = write_reports(rep, tmp_path)["md"].read_text()
    assert md.splitlines()[0] == "# gates on gatedev: FAILED" and "in ERROR (ort-int8)" in md.splitlines()[2]
    # a failed variant never stops the decision: ship the best of those that passed
    assert rep["decision"]["recommended"] == "openvino-int8-accuracy-control"


def test_passed_only_when_every_variant_passed_on_the_device():
    exp = {v: exported(1_000_000) for v in ("ort-fp32", "ort-int8", "openvino-fp32", "openvino-int8-accuracy-control")}
    all_ok = {v: meas(90.0, 5.0) for v in exp}
    assert report_for(exp, all_ok)["verdict"] == "PASSED"
    one_fails = {**all_ok, "ort-int8": meas(85.0, 5.0)}
    rep = report_for(exp, one_fails)
    assert rep["verdict"] == "FAILED" and "failed their gates (ort-int8)" in rep["headline"]
    missing = {k: v for k, v in all_ok.items() if k != "openvino-fp32"}
    rep = report_for(exp, missing, {"openvino-fp32": "device unreachable"})
    assert rep["verdict"] == "NOT MEASURED" and rep["exit_code"] == 3 and "openvino-fp32" in rep["headline"]


def test_decision_lowest_p99_then_size_with_runner_up():
    def v(name: str, p99: float, size: float, status: str = "pass") -> dict:
        return {"name": name, "status": status, "latency_ms": {"p99": p99}, "size_mb": size, "measured_on": "local"}

    d = decide([v("a", 5.0, 4.0), v("b", 3.0, 4.0), v("c", 3.1, 1.0), v("d", 1.0, 0.5, "fail")], "dev")
    assert d["recommended"] == "c"  # 3.1 ms is within 5% of 3.0 ms: a tie, broken by size (1.0 < 4.0 MB)
    assert "within 5% of the lowest (b 3.00 ms)" in d["why"] and d["runner_up"] == "b"  # never "lowest" (issue 27)
    d = decide([v("a", 5.0, 1.0), v("b", 3.0, 4.0)], "dev")
    assert d["recommended"] == "b" and d["runner_up"] == "a" and "lowest p99 at batch 1 (3.00 ms)" in d["why"]
    assert decide([v("a", 5.0, 1.0, "fail")], "dev")["recommended"] is None


def test_every_gate_threshold_and_measured_value_in_all_three_formats(tmp_path):
    exp = {v: exported(2_000_000) for v in ("ort-fp32", "ort-int8", "openvino-fp32", "openvino-int8-accuracy-control")}
    m = {"ort-fp32": meas(90.0, 5.0, 321.0), "ort-int8": meas(89.5, 4.0, 612.0),
         "openvino-fp32": meas(90.0, 25.0), "openvino-int8-accuracy-control": meas(88.0, 3.0)}
    rep = report_for(exp, m)
    gates = {c["gate"]: c for c in rep["variants"][0]["gates"]}
    assert gates["max_memory_mb"] == {**gates["max_memory_mb"], "threshold": 500.0, "measured": 321.0, "passed": True}
    assert gates["p99_latency_ms"]["threshold"] == 20.0 and gates["p99_latency_ms"]["measured"] == 5.0
    assert gates["max_top1_drop"]["measured"] == 0.0 and gates["max_top1_drop"]["threshold"] == 1.0
    by = {v["name"]: {c["gate"]: c["passed"] for c in v["gates"]} for v in rep["variants"]}
    assert by["ort-int8"]["max_memory_mb"] is False and by["openvino-fp32"]["p99_latency_ms"] is False
    assert by["openvino-int8-accuracy-control"]["max_top1_drop"] is False
    assert rep["decision"]["recommended"] == "ort-fp32"
    paths = write_reports(rep, tmp_path)
    md, html = paths["md"].read_text(), paths["html"].read_text()
    for text in (md, html):
        for cell in ("peak memory (max 500 MB)", "p99 latency, batch 1 (max 20 ms)", "top-1 drop (max 1 points)",
                     "321 pass", "612 FAIL", "25.00 FAIL", "2.00 FAIL", "Ship", "ort-fp32"):
            assert cell in text, cell
    assert json.loads(paths["json"].read_text())["variants"][1]["gates"][-1]["measured"] == 612.0


def test_terminal_summary_fits_80_columns_and_never_cuts_a_name(capsys):
    exp = {v: exported(2_000_000) for v in ("ort-fp32", "ort-int8", "openvino-fp32", "openvino-int8-accuracy-control")}
    rep = report_for(exp, {v: meas(90.0, 5.0) for v in exp})
    capsys.readouterr()
    print_report(rep)  # not a terminal here, as in CI logs
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert max(len(ln) for ln in lines) <= 80, "\n".join(ln for ln in lines if len(ln) > 80)
    for name in exp:
        assert any(name in ln for ln in lines), name
    assert "PASSED" in out and "ship " in out
