"""Numerics (issue 8): a variant whose outputs contain NaN/inf, or whose parity breaks, is
marked failed with the numbers, and the report never calls it passing.

Three paths: (1) a real ONNX artifact that emits NaN / -inf on some samples goes through a
bundle, the device runner, and the pipeline's report assembly; (2) a PyTorch model that
produces NaN goes through `export_variant` (every local backend/precision) and the pipeline's
per-variant error handling; (3) an export whose recorded parity failed cannot pass the gates.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import helper, numpy_helper
from test_devices_common import K, tiny_data, tiny_onnx
from test_export_onnx import TinyNet, make_spec

from edgeskel.devices import profile_from_dict
from edgeskel.errors import ParityError
from edgeskel.export import export_variant
from edgeskel.pipeline.steps import safe_call
from edgeskel.pipeline.validation import assemble_report
from edgeskel.remote.bundle import make_bundle
from edgeskel.remote.device_runner import run_bundle
from edgeskel.report import write_reports
from edgeskel.validate.parity import check_parity

PROFILE = profile_from_dict({
    "name": "numdev", "arch": "x86_64", "variants": [{"backend": "ort", "precision": "fp32"}], "batch_sizes": [1],
    "threads": 1, "measure": {"warmup": 0, "runs": 3}, "gates": {"max_top1_drop": 100.0},
    "peak": {"gflops_fp32": 10, "memory_bandwidth_gbs": 10, "source": "test"},
})


def poisoned_onnx(path: Path, kind: str) -> tuple[np.ndarray, np.ndarray]:
    """tiny_onnx's linear classifier plus a term of the first input feature g:
    nan: + sqrt(g) (NaN where g < 0); inf: + log|g| (-inf where g == 0)."""
    w, b = tiny_onnx(path)
    m = onnx.load(str(path))
    g = m.graph
    g.output[0].name = "logits"
    g.node[-1].output[0] = "clean"
    g.initializer.append(numpy_helper.from_array(np.array([0], dtype=np.int64), "idx0"))
    g.node.extend([helper.make_node("Gather", ["flat", "idx0"], ["g"], axis=1)])
    if kind == "nan":
        g.node.extend([helper.make_node("Sqrt", ["g"], ["term"])])
    else:
        g.node.extend([helper.make_node("Abs", ["g"], ["absg"]), helper.make_node("Log", ["absg"], ["term"])])
    g.node.extend([helper.make_node("Add", ["clean", "term"], ["logits"])])
    onnx.checker.check_model(m)
    onnx.save(m, str(path))
    return w, b


def _report(profile, exp_variants: dict, measured: dict, not_measured: dict | None = None) -> dict:
    return assemble_report(
        profile, "numerics",
        {"num_val": 40, "num_calib": 8, "layout": "tiny", "classes": [str(i) for i in range(K)]},
        {"top1": 90.0, "top5": 100.0, "params": 10, "gflops": 0.001, "source": "test"}, None,
        {"variants": exp_variants}, {"measured": measured, "not_measured": not_measured or {}},
        {"params": 10, "gflops": 0.001}, {"python": "test"})


@pytest.mark.parametrize("kind, bad, pattern", [("nan", 7, "nan"), ("inf", 5, "inf")])
def test_nonfinite_outputs_fail_the_variant_with_numbers(tmp_path, kind, bad, pattern):
    path = tmp_path / "model.onnx"
    w, b = poisoned_onnx(path, kind)
    x, y, ref = tiny_data(w, b)
    x[:, 0, 0, 0, 0] = np.abs(x[:, 0, 0, 0, 0]) + 0.5  # g > 0: finite everywhere ...
    x[:bad, 0, 0, 0, 0] = -1.0 if kind == "nan" else 0.0  # ... except on `bad` samples
    bundle = make_bundle(tmp_path / "bundle", [{"name": "ort-fp32", "backend": "ort", "precision": "fp32",
                                                "path": path}], x, y, ref, PROFILE, warmup=0, runs=3)
    doc = run_bundle(bundle, tmp_path / "results.json", isolate=False, log=lambda s: None)
    meas = doc["variants"][0]
    assert meas["status"] == "ok" and meas["accuracy"]["nonfinite"] == bad
    exp = {"ort-fp32": {"status": "passed", "artifact": "model.onnx", "files": [], "parity": None}}
    report = _report(PROFILE, exp, {"ort-fp32": {**meas, "measured_on": "local"}})
    v = report["variants"][0]
    assert v["status"] == "fail" and report["passed"] is False
    assert f"non-finite outputs (NaN/Inf) on {bad}/40 samples" in v["reason"]
    assert v["nonfinite"] == bad and v["num_samples"] == 40
    paths = write_reports(report, tmp_path / "report")  # the schema accepts it; the table says FAIL
    md = paths["md"].read_text()
    assert "FAIL" in md and "PASS" not in md.replace("FAILED", "")
    assert json.loads(paths["json"].read_text())["variants"][0]["status"] == "fail"


class NaNNet(TinyNet):
    """Logits + sqrt(first coordinate): NaN on every sample whose first coordinate is < 0."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x) + torch.sqrt(x[:, 0, 0, 0, :1])


@pytest.mark.parametrize("backend, precision", [("ort", "fp32"), ("ort", "int8"), ("openvino", "fp32")])
def test_model_with_nan_outputs_never_exports_as_passed(tmp_path, backend, precision):
    torch.manual_seed(0)
    model = NaNNet().eval()
    x = np.random.default_rng(0).standard_normal((16, 3, 16, 5, 1)).astype(np.float32)
    y = np.arange(16) % 4
    n_nan = int((x[:, 0, 0, 0, 0] < 0).sum())
    assert 0 < n_nan < 16
    out = tmp_path / f"{backend}-{precision}"
    with pytest.raises(ParityError) as ei:
        export_variant(model, make_spec(), backend, precision, out, calib=x, val=(x, y), options={"max_drop": 1.0})
    msg = str(ei.value)
    assert "parity check failed" in msg and "max_abs=nan" in msg
    assert f"reference (PyTorch) nonfinite={n_nan * 4}" in msg  # 4 logits per NaN sample
    rec = json.loads((out / "export.json").read_text())
    assert rec["status"] == "failed" and rec["parity"]["passed"] is False
    assert rec["parity"]["ref_nonfinite"] == n_nan * 4
    # the pipeline's export stage records the error and the report says error, not pass
    res, err = safe_call(export_variant, model, make_spec(), backend, precision, tmp_path / "again", calib=x,
                         val=(x, y), options={"max_drop": 1.0})
    assert res is None and "nonfinite" in err
    prof = profile_from_dict({**PROFILE.model_dump(mode="json"), "variants": [{"backend": backend, "precision": precision}]})
    report = _report(prof, {f"{backend}-{precision}": {"status": "error", "reason": err}}, {})
    v = report["variants"][0]
    assert v["status"] == "error" and "max_abs=nan" in v["reason"] and report["passed"] is False


def test_failed_parity_recorded_at_export_fails_the_gates(tmp_path):
    """Even if a variant was measured, a failed export parity (e.g. an edited or old
    export.json) cannot pass: the numbers are in the reason."""
    w, b = tiny_onnx(tmp_path / "m.onnx")
    x, y, ref = tiny_data(w, b)
    broken = ref.copy()
    broken[:, 0] += 3.0
    parity = check_parity(ref, broken, "fp32")
    assert parity["passed"] is False
    meas = {"status": "ok", "measured_on": "local",
            "accuracy": {"top1": 90.0, "agreement": 100.0, "nonfinite": 0, "num_samples": 40},
            "latency_ms": {"1": {"p50": 1.0, "p90": 1.0, "p99": 1.0, "throughput_fps": 1000.0}}}
    exp = {"ort-fp32": {"status": "passed", "artifact": "model.onnx", "files": [], "parity": parity}}
    v = _report(PROFILE, exp, {"ort-fp32": meas})["variants"][0]
    assert v["status"] == "fail"
    assert "parity failed: max_abs=3 (bound 0.000308)" in v["reason"] and "agreement=27.5%" in v["reason"]
    # the same measurement with a passing parity passes: the failure above is the parity's
    ok = {"ort-fp32": {**exp["ort-fp32"], "parity": check_parity(ref, ref, "fp32")}}
    assert _report(PROFILE, ok, {"ort-fp32": meas})["variants"][0]["status"] == "pass"


def test_parity_counts_nonfinite_reference_and_artifact_separately():
    ref = np.ones((4, 3), np.float32)
    out = ref.copy()
    out[1, 2] = np.inf
    r = check_parity(ref, out, "int8")
    assert (r["nonfinite"], r["ref_nonfinite"], r["passed"]) == (1, 0, False)
    ref2 = ref.copy()
    ref2[0, 0] = np.nan
    r = check_parity(ref2, ref2, "fp32")
    assert (r["nonfinite"], r["ref_nonfinite"], r["passed"]) == (1, 1, False)
    assert check_parity(ref, ref, "fp32")["passed"]
