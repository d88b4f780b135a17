"""Reports built from a real measurement of a tiny ONNX model (not hand-written numbers)."""

from __future__ import annotations

import json

import pytest
from test_devices_common import tiny_data, tiny_onnx

from edgeskel.devices import load_profile
from edgeskel.errors import ConfigError
from edgeskel.remote.ssh import SSHTarget
from edgeskel.report import make_variant_entry, validate_report, write_reports
from edgeskel.report.console import print_report
from edgeskel.report.lines import HEADER
from edgeskel.report.roofline import achieved_compute
from edgeskel.runtime import get_runner
from edgeskel.validate.accuracy import evaluate_runner
from edgeskel.validate.latency import measure_latency

SECRET_HOST, SECRET_USER, SECRET_KEY = "jetson-lab-7.corp.example", "alice", "/home/alice/.ssh/id_lab"


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    d = tmp_path_factory.mktemp("r")
    w, b = tiny_onnx(d / "m.onnx")
    x, y, ref = tiny_data(w, b)
    prof = load_profile("cpu")
    target = SSHTarget(name="jetson-orin", host=SECRET_HOST, user=SECRET_USER, identity_file=SECRET_KEY)
    variants = []
    with get_runner("ort", d / "m.onnx", threads=1) as r:
        acc = evaluate_runner(r, x, y, ref_logits=ref)
        lat = measure_latency(r, x[0], [1, 4], warmup=2, runs=100, progress=False)
    meas = {"status": "ok", "accuracy": acc, "latency_ms": lat}
    ref_top1 = acc["top1"]
    gflops = 2 * w.size / 1e9
    variants.append(make_variant_entry("ort-fp32", "ort", "fp32", meas, ref_top1, prof, "local",
                                       size_mb=(d / "m.onnx").stat().st_size / 1e6, params=w.size + b.size,
                                       gflops=gflops))
    variants[-1]["compute"] = achieved_compute(gflops, variants[-1]["latency_by_batch"], "fp32", prof.peak)
    # the same measurement judged against a better reference fails the accuracy gate
    variants.append(make_variant_entry("ort-int8", "ort", "int8", meas, ref_top1 + 5, prof, target.label,
                                       params=w.size + b.size))
    variants.append(make_variant_entry("tensorrt-fp16", "tensorrt", "fp16", None, ref_top1, prof, "none"))
    variants.append(make_variant_entry("openvino-bf16", "openvino", "bf16",
                                       {"status": "error", "error": target.redact(f"ssh {SECRET_USER}@{SECRET_HOST} failed")},
                                       ref_top1, prof, target.label))
    rep = {"device": "cpu", "recipe": "tiny", "dataset": {"name": "synthetic", "num_samples": len(x)},
           "reference": {"top1": ref_top1}, "variants": variants, "bundle": "bundle",
           "passed": all(v["status"] == "pass" for v in variants)}
    return rep, target, d


def test_entries_from_measurement(report):
    rep, _, _ = report
    v = {e["name"]: e for e in rep["variants"]}
    assert v["ort-fp32"]["status"] == "pass" and v["ort-fp32"]["top1_drop"] == 0
    assert v["ort-fp32"]["latency_ms"]["p99"] > 0 and len(v["ort-fp32"]["latency_samples_ms"]) == 100
    assert v["ort-int8"]["status"] == "fail" and "5.00 points" in v["ort-int8"]["reason"]
    assert v["tensorrt-fp16"]["status"] == "skipped" and v["tensorrt-fp16"]["measured_on"] == "none"
    assert v["openvino-bf16"]["status"] == "error"
    assert rep["passed"] is False
    validate_report(rep)


def test_write_reports(report, tmp_path):
    rep, target, _ = report
    paths = write_reports(rep, tmp_path / "out", redact=[SECRET_HOST, SECRET_USER, SECRET_KEY])
    assert set(paths) == {"json", "md", "html"} and all(p.is_file() for p in paths.values())
    data = json.loads(paths["json"].read_text())
    assert {"device", "recipe", "dataset", "reference", "variants", "passed"} <= set(data)
    md = paths["md"].read_text()
    assert HEADER == ("| Variant | Status | Size MB | Params | GFLOPs | Top-1 | ΔTop-1 | Agreement | p50 ms (batch 1) "
                      "| p99 ms (batch 1) | Best FPS (at batch) |")
    assert HEADER in md.splitlines()
    row = [line for line in md.splitlines() if line.startswith("| ort-fp32 |")][1]  # gates table, then measurements
    assert row.rstrip(" |").endswith(f"@ {data['variants'][0]['throughput_batch_size']}")  # FPS says at which batch
    assert "python3 device_runner.py . --out results.json" in md and "tensorrt-fp16" in md
    assert "Roofline" not in md and "## Achieved compute" in md  # measured rate, not a peak-based guess
    assert "GFLOP/s at batch 1" in md and "% of peak" not in md  # the cpu profile's peak is not this host's
    html = paths["html"].read_text()
    assert html.startswith("<!DOCTYPE html>") and html.count('<img alt=') == 2
    assert '<img alt="scatter" src="data:image/png;base64,' in html
    for p in paths.values():
        text = p.read_text()
        for secret in (SECRET_HOST, SECRET_USER, SECRET_KEY, "alice"):
            assert secret not in text, f"{secret} leaked into {p.name}"
    assert "ssh://jetson-orin" in paths["json"].read_text()
    print_report(data)


def test_redact_scrubs_leaks(report, tmp_path):
    rep, _, _ = report
    leaky = json.loads(json.dumps(rep))
    leaky["variants"][0]["reason"] = f"ran on {SECRET_HOST}"
    paths = write_reports(leaky, tmp_path, redact=[SECRET_HOST])
    assert SECRET_HOST not in paths["md"].read_text() and "<redacted>" in paths["json"].read_text()


def test_report_schema_rejects_login_in_measured_on(report, tmp_path):
    rep, _, _ = report
    bad = json.loads(json.dumps(rep))
    bad["variants"][0]["measured_on"] = f"ssh://{SECRET_USER}@{SECRET_HOST}"
    with pytest.raises(ConfigError, match="measured_on"):
        write_reports(bad, tmp_path)
    bad["variants"][0]["measured_on"] = "local"
    bad["variants"][0]["status"] = "ok"
    with pytest.raises(ConfigError, match="status"):
        validate_report(bad)


def test_ir_size_counts_its_own_bin():
    """model.fp16.xml's weights are model.fp16.bin (an earlier version counted only the .xml)."""
    from edgeskel.pipeline.validation import _size_mb

    files = [{"path": "model.onnx", "bytes": 3_000_000}, {"path": "model.fp16.xml", "bytes": 200_000},
             {"path": "model.fp16.bin", "bytes": 1_500_000}]
    assert _size_mb({"artifact": "model.fp16.xml", "files": files}) == 1.7
    assert _size_mb({"artifact": "model.onnx", "files": files}) == 3.0
    assert _size_mb({"artifact": None, "files": files}) is None


def test_int8_summary_names_the_float_modules_and_nncf_numbers():
    from edgeskel.pipeline.validation import int8_summary

    ort = {"accuracy_gate": {"rounds": [{}] * 14, "excluded_nodes": ["/l10/tcn1/Conv", "/l8/gcn1/Add", "/l5/Relu"]},
           "calibration": {"method": "percentile", "percentile": 99.99}}
    assert int8_summary(ort) == ("INT8 gate met after 14 quantization round(s), calibration percentile 99.99; "
                                 "3 nodes kept in float (in l5, l8, l10)")
    assert int8_summary({"accuracy_gate": {"rounds": [{}]}, "calibration": {"method": "minmax"}}).endswith(
        "every quantizable node in INT8")
    nncf = {"calibration": {"tool": "nncf.quantize_with_accuracy_control", "top1_fp32": 0.832, "top1_int8": 0.828,
                            "val_samples": 256, "fake_quantize_nodes": 456}}
    assert int8_summary(nncf) == "NNCF accuracy control: top-1 83.20 -> 82.80 on 256 gate samples, 456 FakeQuantize nodes"
    assert int8_summary({"calibration": {"tool": "x"}}) is None
    tail = {**nncf, "parity": {"n": 256, "scale": 6.2, "max_abs": 4.7, "quantile_abs": 1.0, "samples_over": 5,
                               "tol": {"quantile_bound": 3.1, "sample_quantile": 0.95}}}
    assert int8_summary(tail).endswith("; parity: 5 of 256 samples have a logit error above 0.5 x the logit scale "
                                       "(worst 0.76 x; p95 per-sample 0.16 x)")


def test_int8_slower_than_fp32_on_its_backend_gets_a_note():
    from edgeskel.pipeline.validation import _note_slow_int8
    from edgeskel.report.markdown import render_markdown

    def v(name, backend, precision, p50, summary=None):
        return {"name": name, "backend": backend, "precision": precision, "latency_ms": {"p50": p50},
                **({"int8_summary": summary} if summary else {})}

    variants = [v("ort-fp32", "ort", "fp32", 5.6), v("ort-int8", "ort", "int8", 9.96, "INT8 gate met"),
                v("openvino-fp32", "openvino", "fp32", 11.9), v("openvino-int8", "openvino", "int8", 5.7, "NNCF"),
                v("tensorrt-int8", "tensorrt", "int8", None)]
    _note_slow_int8(variants)
    assert variants[1]["int8_summary"] == "INT8 gate met"  # deterministic text stays apart from timings
    assert variants[1]["latency_note"].startswith("Not faster than ort-fp32 at batch 1 here (9.96 vs 5.60 ms")
    assert "ort-int8-study" in variants[1]["latency_note"]
    assert "latency_note" not in variants[3]  # faster: no note
    assert "latency_note" not in variants[4]  # not measured: nothing to compare
    report = {"device": "cpu", "recipe": "r", "passed": True, "dataset": {"num_samples": 4}, "reference": {"top1": 80.0},
              "variants": [{**v, "status": "pass", "measured_on": "local", "reason": "all gates passed"} for v in variants[:2]]}
    assert "Not faster than ort-fp32" in render_markdown(report)
