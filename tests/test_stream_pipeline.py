"""Issue 30 (CPU half): `make export` with a streaming recipe puts each variant's step graph in
the run's bundle; the device runner replays recorded test sequences frame by frame; the report
has streaming top-1 beside windowed, per-call p50/p99, streams sustained at the profile's fps,
state memory, and the profile's `streaming:` gates can fail the run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from test_pipeline_e2e import TINY_RECIPE, tiny_profile

from edgeskel.cli import main
from edgeskel.errors import ConfigError

RECIPE = {k: v for k, v in TINY_RECIPE.items() if k not in ("compress", "finetune")}


def _recipe(tmp_path: Path, **streaming) -> Path:
    p = tmp_path / "tiny-stream.yaml"
    p.write_text(yaml.safe_dump({**RECIPE, "name": "tiny-stream", "streaming": {"max_sequences": 8, **streaming}}))
    return p


def _profile(tmp_path: Path, **gates) -> Path:
    return tiny_profile(tmp_path, variants=[{"backend": "ort", "precision": "fp32"},
                                            {"backend": "openvino", "precision": "fp32"}],
                        measure={"warmup": 2, "runs": 20}, streaming={"fps": 30, **gates})


def test_streaming_variants_measured_reported_and_gated(tmp_path: Path, capsys):
    out = tmp_path / "runs"
    prof = _profile(tmp_path, min_streams=1, max_top1_drop=100)
    rc = main(["export", "--device", str(prof), "--recipe", str(_recipe(tmp_path)), "--out", str(out)])
    log = capsys.readouterr().out
    assert rc == 0, log
    run_dir = out / "tiny-stream" / "cpu"
    rep = json.loads((run_dir / "report.json").read_text())
    rows = {r["name"]: r for r in rep["streaming"]}
    assert set(rows) == {"ort-fp32-stream", "openvino-fp32-stream"}
    windowed = {v["name"]: v for v in rep["variants"]}
    for name, r in rows.items():
        assert r["status"] == "pass" and r["measured_on"] == "local", r
        assert r["of"] == name.removesuffix("-stream") and r["windowed_top1"] == windowed[r["of"]]["top1"]
        assert r["sequences"] == 8 and 0 <= r["top1"] <= 100 and r["state_kb"] > 0
        assert r["stride"] >= 1 and r["window"] >= 16
        assert 0 < r["latency_ms"]["p50"] <= r["latency_ms"]["p99"]
        assert r["streams_sustained"] >= 1 and r["speedup_per_decision"] > 0 and r["timing"] == "interleaved"
        assert {g["gate"] for g in r["gates"]} == {"finite", "stream_min_streams", "stream_max_top1_drop"}
    # the step graphs went through the run's one bundle, with the recorded sequences
    bundle = run_dir / rep["bundle"]
    meta = json.loads((bundle / "bundle.json").read_text())
    streams = [v for v in meta["variants"] if v.get("form") == "streaming"]
    assert len(streams) == 2 and all((bundle / v["contract"]).is_file() for v in streams)
    ov_stream = next(v for v in streams if v["backend"] == "openvino")  # the form that measured faster at export
    preferred = json.loads((bundle / ov_stream["contract"]).read_text())["openvino_stateful"]["preferred"]
    assert ov_stream["stateful"] == preferred and ov_stream["artifact"].endswith(
        "model.stateful.xml" if preferred else "model.xml")
    assert meta["data"]["stream"]["num_sequences"] == 8
    assert int(np.load(bundle / "stream_len.npy").sum()) == np.load(bundle / "stream_x.npy").shape[1]
    results = json.loads((run_dir / "validate" / "results.json").read_text())
    timed = set(results["timing"]["variants"])
    assert timed == {"ort-fp32", "openvino-fp32", "ort-fp32-stream", "openvino-fp32-stream"}  # one interleaved pass
    md = (run_dir / "report.md").read_text()
    assert "## Streaming" in md and "| ort-fp32-stream | PASS |" in md
    assert "Streaming" in (run_dir / "report.html").read_text()
    assert "stream ort-fp32-stream: PASS" in log

    # a streaming gate the device cannot meet fails the run (re-gated, the exports kept)
    prof = _profile(tmp_path, min_streams=10**6)
    rc = main(["export", "--device", str(prof), "--recipe", str(_recipe(tmp_path)), "--out", str(out), "--quiet"])
    assert rc == 1
    rep = json.loads((run_dir / "report.json").read_text())
    assert rep["verdict"] == "FAILED" and set(rep["verdict_detail"]["failed"]) == {"ort-fp32-stream", "openvino-fp32-stream"}
    assert all("streams at 30 fps < 1000000 required" in r["reason"] for r in rep["streaming"])


def test_unknown_or_unstreamable_streaming_variants_refused_before_training(tmp_path: Path):
    from edgeskel.pipeline import run_pipeline

    prof = _profile(tmp_path)
    with pytest.raises(ConfigError, match=r"streaming.variants \['tensorrt-fp16'\] are not variants"):
        run_pipeline(str(prof), str(_recipe(tmp_path, variants=["tensorrt-fp16"])), out_root=tmp_path / "runs", quiet=True)
    assert not (tmp_path / "runs" / "tiny-stream" / "cpu" / "reference").exists()


def test_jetson_streaming_step_engine_built_and_run_by_the_tensorrt_doubles(tmp_path: Path):
    """Issue 30: `make export DEVICE=jetson-orin` with a streaming recipe puts a batch-1 step
    engine's build kit in the bundle (static shapes: no shape flags); the device runner builds it
    with the trtexec double and streams the recorded sequences through the TensorRT double (multi
    input/output: frame, valid, every state); imported results give the streaming row its top-1,
    labelled as not TensorRT's timing."""
    import subprocess

    from trt_doubles import install

    prof = yaml.safe_load((Path(__file__).resolve().parents[1] / "devices" / "jetson-orin.yaml").read_text())
    prof.update(arch="x86_64", batch_sizes=[1], measure={"warmup": 2, "runs": 10},
                variants=[v for v in prof["variants"] if v["backend"] == "tensorrt"],  # fp16, int8, DLA int8
                streaming={"fps": 30, "min_streams": 1})
    path = tmp_path / "jetson-orin.yaml"
    path.write_text(yaml.safe_dump(prof))
    out = tmp_path / "runs"
    rc = main(["export", "--device", str(path), "--recipe", str(_recipe(tmp_path, max_sequences=4)), "--out", str(out),
               "--quiet"])
    run_dir = out / "tiny-stream" / "jetson-orin"
    rep = json.loads((run_dir / "report.json").read_text())
    assert rc == 3 and [r["name"] for r in rep["streaming"]] == ["tensorrt-fp16-stream", "tensorrt-int8-stream",
                                                                  "tensorrt-int8-dla-stream"]
    assert {r["status"] for r in rep["streaming"]} == {"skipped"}  # not measured yet
    exp = json.loads((run_dir / "manifest.json").read_text())["stages"]["stream"]["result"]["variants"]
    par = exp["tensorrt-fp16-stream"]["parity"]
    assert par["ort"]["passed"] and par["ort (tensorrt/model.onnx)"]["passed"]  # the kit's fp16-typed graph, replayed
    q = exp["tensorrt-int8-stream"]  # explicit quantization: s8 symmetric Q/DQ, judged by the INT8 rule
    assert q["quantization"]["symmetric_activations"] and q["parity"]["ort (tensorrt/model.onnx)"]["passed"]
    bundle = run_dir / rep["bundle"]
    meta = json.loads((bundle / "bundle.json").read_text())
    v = next(v for v in meta["variants"] if v["name"] == "tensorrt-fp16-stream")
    assert v["form"] == "streaming" and v["build"]["engines"] == {"1": "artifacts/tensorrt-fp16-stream/model.b1.engine"}
    script = (bundle / v["build"]["script"]).read_text()
    assert "--stronglyTyped" in script and "Shapes=" not in script
    assert any(x["name"] == "tensorrt-int8-stream" for x in meta["variants"])

    dbl = install(tmp_path, "10.3.0")
    proc = subprocess.run([str(dbl.python), "device_runner.py", ".", "--out", str(tmp_path / "results.json")],
                          cwd=bundle, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = json.loads((tmp_path / "results.json").read_text())
    for name in ("tensorrt-fp16-stream", "tensorrt-int8-stream", "tensorrt-int8-dla-stream"):
        res = {r["name"]: r for r in doc["variants"]}[name]
        assert res["status"] == "ok" and res["streaming"]["sequences"] == 4 and res["latency_ms"]["1"]["p50"] > 0
        assert "contract double" in res["tensorrt"]["runtime"]
    assert main(["results", "import", str(run_dir), str(tmp_path / "results.json")]) in (0, 3)
    for row in json.loads((run_dir / "report.json").read_text())["streaming"]:
        assert row["measured_on"] == "imported://jetson-orin" and row["top1"] is not None and row["emulated"]
        assert row["status"] == "skipped" and row["latency_ms"]["p50"] is None  # a double's timing is never TensorRT's


def test_stream_checkpoint_fine_tuned_for_streams_beside_the_windowed_model(tmp_path: Path, capsys):
    """`streaming.checkpoint`: the windowed variants come from the recipe's model, the step graphs
    from its copy fine-tuned at native rate (what a user ships for a live stream), in one run and
    one report (here upsampled 2x inside the step graph: 2 camera frames per call). A native-rate
    checkpoint also runs as the pipeline's model (its windowed arrays are the last T frames, short
    clips zero-padded), and a checkpoint of other classes is refused."""
    data = TINY_RECIPE["data"]["spec"]
    common = ["--data", data, "--epochs", "1", "--batch-size", "8", "--optimizer", "adamw", "--threads", "1", "--json"]
    assert main(["train", "--model", "stgcn", "--width", "0.25", "--frames", "16", "--out", str(tmp_path / "w"),
                 *common]) == 0
    assert main(["train", "--init", str(tmp_path / "w" / "best.ckpt"), "--native-rate", "--upsample", "2",
                 "--frames", "32", "--out", str(tmp_path / "s"), *common]) == 0
    capsys.readouterr()
    rec = {**RECIPE, "name": "tiny-stream-ckpt", "model": {"name": "stgcn", "checkpoint": str(tmp_path / "w" / "best.ckpt")},
           "streaming": {"max_sequences": 6, "checkpoint": str(tmp_path / "s" / "best.ckpt")}}
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(rec))
    prof = tiny_profile(tmp_path, variants=[{"backend": "ort", "precision": "fp32"}], measure={"warmup": 1, "runs": 5})
    assert main(["export", "--device", str(prof), "--recipe", str(path), "--out", str(tmp_path / "runs"), "--quiet"]) == 0
    rep = json.loads((tmp_path / "runs" / "tiny-stream-ckpt" / "cpu" / "report.json").read_text())
    (row,) = rep["streaming"]
    assert row["model"] == "best.ckpt" and row["status"] == "pass" and row["sequences"] == 6
    assert row["stride"] == 2  # keep-stride ST-GCN: 4 network frames per call = 2 upsampled camera frames
    assert "Step graphs of best.ckpt" in (tmp_path / "runs" / "tiny-stream-ckpt" / "cpu" / "report.md").read_text()

    # the native-rate checkpoint as the pipeline's own model: fixed windowed arrays, no crash
    rec2 = {**rec, "name": "tiny-native", "model": {"name": "stgcn", "checkpoint": str(tmp_path / "s" / "best.ckpt")}}
    rec2.pop("streaming")
    path.write_text(yaml.safe_dump(rec2))
    assert main(["export", "--device", str(prof), "--recipe", str(path), "--out", str(tmp_path / "runs"), "--quiet"]) == 0

    assert main(["train", "--model", "stgcn", "--width", "0.25", "--frames", "16", "--out", str(tmp_path / "o"),
                 "--data", "synthetic?classes=3&per_class=6", *common[2:]]) == 0
    rec["streaming"]["checkpoint"] = str(tmp_path / "o" / "best.ckpt")
    path.write_text(yaml.safe_dump(rec))
    capsys.readouterr()
    assert main(["export", "--device", str(prof), "--recipe", str(path), "--out", str(tmp_path / "runs"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "best.ckpt" in err and "Traceback" not in err


def test_streaming_gates_judge_each_number_and_never_a_host_checks_latency():
    from edgeskel.devices import load_profile
    from edgeskel.validate.gates import streaming_checks, streams_sustained, verdict_of_checks

    prof = load_profile("cpu").model_copy(update={"streaming": None})
    from edgeskel.devices import StreamingGates

    prof = prof.model_copy(update={"streaming": StreamingGates(fps=30, min_streams=10, p99_latency_ms=5.0, max_top1_drop=2.0)})
    assert streams_sustained(2.0, 4, 30) == 66 and streams_sustained(None, 1, 30) is None
    row = {"top1": 80.0, "windowed_top1": 85.0, "streams_sustained": 12, "latency_ms": {"p99": 6.0}, "nonfinite": 0}
    checks = {c["gate"]: c for c in streaming_checks(row, prof)}
    assert checks["stream_min_streams"]["passed"] and checks["stream_min_streams"]["measured"] == 12
    assert checks["stream_p99_latency_ms"]["passed"] is False and "6.00 ms > budget 5 ms" in checks["stream_p99_latency_ms"]["detail"]
    assert checks["stream_max_top1_drop"]["passed"] is False and checks["stream_max_top1_drop"]["measured"] == 5.0
    status, reason = verdict_of_checks(list(checks.values()))
    assert status == "fail" and "5.00 points below windowed 85.00%" in reason
    host = {c["gate"]: c for c in streaming_checks({**row, "host_check": True, "top1": 84.0}, prof)}
    assert host["stream_min_streams"]["passed"] is None and host["stream_p99_latency_ms"]["passed"] is None
    assert host["stream_max_top1_drop"]["passed"] is True  # accuracy is judged on a host check, latency never
    # a reduced-precision stream answers to the fp32 stream (gates.max_top1_drop), with or without streaming gates
    for p in (prof, prof.model_copy(update={"streaming": None})):
        int8 = {c["gate"]: c for c in streaming_checks({**row, "precision": "int8", "top1": 78.66,
                                                        "fp32_stream_top1": 84.70}, p)}
        assert int8["stream_precision_drop"]["passed"] is False and int8["stream_precision_drop"]["measured"] == 6.04
        assert "int8 stream top-1 78.66% is 6.04 points below the fp32 stream's 84.70%" in \
            int8["stream_precision_drop"]["detail"]
    assert "stream_precision_drop" not in {c["gate"] for c in streaming_checks(row, prof)}  # fp32: nothing to compare


def test_batched_streams_in_make_export(tmp_path: Path):
    """`streaming.batch: 2`: one step call serves two streams; the device runner replays the
    recorded sequences two per call (an odd count leaves a row idle), the top-1 equals the
    batch-1 graph's, and streams sustained count both streams of a call."""
    prof = tiny_profile(tmp_path, variants=[{"backend": "ort", "precision": "fp32"}], measure={"warmup": 2, "runs": 10},
                        streaming={"fps": 30})
    rows = {}
    for batch in (1, 2):
        rec = tmp_path / f"b{batch}.yaml"
        rec.write_text(yaml.safe_dump({**RECIPE, "name": f"tiny-b{batch}", "streaming": {"max_sequences": 5, "batch": batch}}))
        assert main(["export", "--device", str(prof), "--recipe", str(rec), "--out", str(tmp_path / "runs"), "--quiet"]) == 0
        (rows[batch],) = json.loads((tmp_path / "runs" / f"tiny-b{batch}" / "cpu" / "report.json").read_text())["streaming"]
    one, two = rows[1], rows[2]
    assert two["batch"] == 2 and two["sequences"] == 5 and two["top1"] == one["top1"]
    mean = two["mean_ms"]
    assert two["streams_sustained"] == int(2 * two["stride"] * 1000 / (30 * mean))
    assert abs(two["decisions_per_s"] - round(2000 / mean, 1)) < 0.11 and two["state_kb"] == one["state_kb"]
