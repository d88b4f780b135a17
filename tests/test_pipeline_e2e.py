"""The main job end to end on a tiny recipe: `edgeskel export --device D --recipe R`.

cpu: every stage runs, reports are written and a second run skips every stage.
jetson-orin (no device here): the TensorRT bundle and scripts are produced, the TensorRT
variants are reported as not measured with the command to run on the device, and the
CPU-side ORT variant is checked on this host.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from edgeskel.cli import main
from edgeskel.pipeline import run_pipeline

REPO = Path(__file__).resolve().parents[1]

TINY_RECIPE = {
    "name": "tiny",
    "model": {"name": "stgcn", "width": 0.25, "kwargs": {"num_stages": 3}},
    "data": {"spec": "synthetic?classes=4&per_class=8&test_per_class=4&frames=16", "frames": 16},
    "train": {"epochs": 2, "batch_size": 8, "optimizer": "adamw", "lr": 0.003, "warmup_epochs": 0, "threads": 1},
    "compress": {"policy": "budget", "target": "params", "budget": 0.8, "data_aware": True, "calib_batches": 1,
                 "min_params": 256},
    "finetune": {"epochs": 1, "batch_size": 8, "optimizer": "adamw", "lr": 0.001, "warmup_epochs": 0,
                 "kd_weight": 0.5, "threads": 1},
    "export": {"calib_samples": 16},
}


def tiny_profile(tmp_path: Path, base: str = "cpu", **over) -> Path:
    prof = yaml.safe_load((REPO / "devices" / f"{base}.yaml").read_text())
    prof.update(over)
    path = tmp_path / f"{base}-tiny.yaml"
    path.write_text(yaml.safe_dump(prof))
    return path


@pytest.fixture()
def recipe(tmp_path: Path) -> Path:
    p = tmp_path / "tiny.yaml"
    p.write_text(yaml.safe_dump(TINY_RECIPE))
    return p


def test_cpu_pipeline_end_to_end_and_resume(tmp_path: Path, recipe: Path, capsys):
    prof = tiny_profile(tmp_path, variants=[{"backend": "ort", "precision": "fp32"},
                                            {"backend": "ort", "precision": "int8"},
                                            {"backend": "openvino", "precision": "fp32"}], batch_sizes=[1, 4])
    out = tmp_path / "runs"
    rc = main(["export", "--device", str(prof), "--recipe", str(recipe), "--out", str(out), "--quiet"])
    assert rc == 0
    run_dir = out / "tiny" / "cpu"
    for name in ("report.json", "report.md", "report.html", "manifest.json", "compress/compression.json"):
        assert (run_dir / name).is_file(), name
    rep = json.loads((run_dir / "report.json").read_text())
    assert rep["device"] == "cpu" and rep["recipe"] == "tiny" and rep["passed"] is True
    names = [v["name"] for v in rep["variants"]]
    assert names == ["ort-fp32", "ort-int8", "openvino-fp32"]
    for v in rep["variants"]:
        assert v["measured_on"] == "local"
        assert v["status"] in ("pass", "fail")
        assert v["latency_ms"]["p50"] > 0 and v["latency_ms"]["p99"] >= v["latency_ms"]["p50"]
        assert v["latency_by_batch"]["1"]["runs"] >= 100
        assert 0 <= v["agreement"] <= 100 and v["size_mb"] > 0 and v["params"] > 0
        assert v["top1_drop"] == pytest.approx(rep["reference"]["top1"] - v["top1"])
    fp32 = rep["variants"][0]
    assert fp32["agreement"] == 100.0  # fp32 ONNX Runtime == PyTorch on every sample
    comp = json.loads((run_dir / "compress" / "compression.json").read_text())
    assert comp["totals"]["params_after"] < comp["totals"]["params_before"]
    assert rep["deployed_model"]["params"] == comp["totals"]["params_after"]
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert [k for k, s in manifest["stages"].items() if s["status"] == "done"] == [
        "data", "check", "reference", "compress", "export", "baseline", "validate", "report"]
    assert manifest["libraries"]["onnxruntime"] and manifest["inputs"]["recipe"]["sha256"]
    html = (run_dir / "report.html").read_text()
    assert "data:image/png;base64," in html
    md = (run_dir / "report.md").read_text()
    assert ("| Variant | Status | Size MB | Params | GFLOPs | Top-1 | ΔTop-1 | Agreement | p50 ms (batch 1) "
            "| p99 ms (batch 1) | Best FPS (at batch) |") in md
    int8 = rep["variants"][1]  # how the INT8 gate was met is in the report, not only in export.json
    assert int8["int8_summary"].startswith("INT8 gate met after") and int8["int8_summary"] in md
    from test_report_baselines import check_baseline_rows

    check_baseline_rows(rep, run_dir)  # the uncompressed reference's rows, measured in the same bundle

    # second run: nothing changed -> every stage skipped, same report
    capsys.readouterr()
    rep2 = run_pipeline(str(prof), str(recipe), out_root=out, quiet=True,
                        log=lambda s: print(s))
    logged = capsys.readouterr().out
    assert logged.count("up to date, skipped") == 8  # data, check, reference, compress, export, baseline, validate, report
    assert rep2 == rep


def test_jetson_without_device_builds_bundle_and_marks_tensorrt_not_measured(tmp_path: Path, recipe: Path):
    prof = tiny_profile(tmp_path, base="jetson-orin", batch_sizes=[1, 2], rank_multiple=8)
    out = tmp_path / "runs"
    rep = run_pipeline(str(prof), str(recipe), out_root=out, quiet=True, log=lambda s: None)
    by = {v["name"]: v for v in rep["variants"]}
    for name in ("tensorrt-fp16", "tensorrt-int8", "tensorrt-int8-dla"):
        assert by[name]["status"] == "skipped", by[name]
        assert by[name]["measured_on"] == "none"
        assert "not measured on device" in by[name]["reason"]
    ort = by["ort-fp32"]  # checked on this x86 host: a host check, never a Jetson number
    assert ort["measured_on"] == "none" and ort["status"] == "skipped" and ort["host_check"]["status"] == "pass"
    assert ort["top1"] is None and ort["latency_ms"]["p99"] is None and "host check passed" in ort["reason"]
    assert rep["passed"] is False and rep["verdict"] == "NOT MEASURED" and rep["exit_code"] == 3
    run_dir = out / "tiny" / "jetson-orin"
    bundle = run_dir / rep["bundle"]
    meta = json.loads((bundle / "bundle.json").read_text())
    trt = [v for v in meta["variants"] if v["backend"] == "tensorrt" and not v["name"].startswith("baseline-")]
    assert len(trt) == 3 and len([v for v in meta["variants"] if v["backend"] == "tensorrt"]) == 6  # + uncompressed and all(v["build"]["script"].endswith("build_engine.sh") for v in trt)
    script = (bundle / trt[1]["build"]["script"]).read_text()
    # TensorRT 10.3 (JetPack 6.2) route: strongly typed Q/DQ graph, one static engine per batch size
    assert "trtexec" in script and "--stronglyTyped" in script and "--int8" not in script
    assert "--minShapes=skeleton:2x" in script and "--maxShapes=skeleton:2x" in script
    lint = json.loads((run_dir / "export" / "tensorrt-int8" / "export.json").read_text())["lint"]
    assert lint["passed"] is True
    md = (run_dir / "report.md").read_text()
    assert "device_runner.py" in md  # the exact command to run on the device
    assert "jetson" not in json.dumps(rep).lower().replace("jetson-orin", "")  # no host details leak


def test_bad_device_and_recipe_are_clear_errors(tmp_path: Path, recipe: Path, capsys):
    assert main(["export", "--device", "no-such-device", "--recipe", str(recipe), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "no-such-device" in err and "cpu" in err  # lists the available profiles
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({**TINY_RECIPE, "compres": {}}))
    assert main(["export", "--device", "cpu", "--recipe", str(bad), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and "compres" in err and "Traceback" not in err
