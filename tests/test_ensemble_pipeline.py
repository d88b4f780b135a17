"""Ensembles through compression, export and the pipeline (issue 31, docs/ENSEMBLES.md): one
budget over every stream's layers, one graph per backend (ORT, OpenVINO, the TensorRT route's
lint), and a recipe with `model.streams` through `edgeskel export` / `edgeskel check`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from edgeskel import models
from edgeskel.checkpoint import ModelSpec, Preprocess, build_from_spec, load_checkpoint
from edgeskel.cli import main
from edgeskel.compress.api import compress_model
from edgeskel.compress.config import CompressionConfig
from edgeskel.layouts import get_layout

REPO = Path(__file__).resolve().parents[1]
TINY_STGCN = {"width": 0.25, "num_stages": 3}
DATA = "synthetic?classes=4&per_class=6&test_per_class=3&frames=16"
TRAIN = {"epochs": 1, "batch_size": 8, "optimizer": "adamw", "lr": 0.003, "warmup_epochs": 0, "threads": 1}
ENS_RECIPE = {
    "name": "tiny-ens",
    "model": {"streams": [
        {"name": "joint", "model": "stgcn", "input": "joint", "train": True, "width": 0.25, "kwargs": {"num_stages": 3}},
        {"name": "bone", "model": "stgcn", "input": "bone", "train": True, "width": 0.25, "kwargs": {"num_stages": 3}},
    ]},
    "data": {"spec": DATA, "frames": 16},
    "train": TRAIN,
    "compress": {"policy": "budget", "target": "params", "budget": 0.8, "data_aware": True, "calib_batches": 1,
                 "min_params": 256},
    "export": {"calib_samples": 8, "agreement_samples": 0},
}


def _ensemble(views=("joint", "bone", "motion", "bone_motion"), fusion="softmax", seed=0):
    torch.manual_seed(seed)
    streams = [{"name": v, "model": "stgcn", "input": v, "weight": w, "kwargs": dict(TINY_STGCN)}
               for v, w in zip(views, (2, 2, 1, 1), strict=False)]
    kw = {"num_person": 2, "fusion": fusion, "streams": streams}
    net = models.build("ensemble", 5, "ntu25", **kw)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():  # non-trivial weights and BN statistics, different per stream
        for p in net.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.2)
        for m in net.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.reset_running_stats()
                m.momentum = None
        net.train()
        net(torch.randn(6, 3, 16, 25, 2, generator=g))
    return net.eval(), ModelSpec("ensemble", 5, get_layout("ntu25"), kw, preprocess=Preprocess(16, 2))


def test_one_budget_is_shared_by_every_stream_and_the_plan_rebuilds():
    net, spec = _ensemble(("joint", "bone"))
    cfg = CompressionConfig(policy="budget", target="params", budget=0.85, min_params=256, data_aware=True,
                            calib_batches=1)
    calib = [torch.randn(4, 3, 16, 25, 2, generator=torch.Generator().manual_seed(3))]
    small, rep = compress_model(net, cfg, (1, 3, 16, 25, 2), calib=calib)
    done = [e["name"] for e in rep["layers"] if e["status"] == "factorized"]
    assert any(n.startswith("streams.joint.") for n in done) and any(n.startswith("streams.bone.") for n in done)
    assert rep["totals"]["param_ratio"] <= 0.85 + 1e-9  # the budget holds for the whole ensemble
    # the sensitivity allocation ranks layers of both streams against each other: the same layer is
    # factorized in one stream and kept dense in the other (a budget per stream would treat them alike)
    kept = {n: {e["name"].split(".", 2)[2] for e in rep["layers"] if e["name"].startswith(f"streams.{n}.")
                and e["status"] == "factorized"} for n in ("joint", "bone")}
    assert kept["joint"] != kept["bone"], kept
    rebuilt = build_from_spec(ModelSpec(**{**spec.__dict__, "compression": rep["plan"]}))
    rebuilt.load_state_dict(small.state_dict())
    x = torch.randn(2, 3, 16, 25, 2)
    with torch.no_grad():
        torch.testing.assert_close(rebuilt.eval()(x), small(x), rtol=0, atol=0)


@pytest.mark.parametrize("fusion", ["softmax", "logits"])
def test_ensemble_exports_as_one_graph_with_ort_and_openvino_parity(fusion, tmp_path):
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    from edgeskel.export.onnx import export_onnx

    net, spec = _ensemble(fusion=fusion)
    path = export_onnx(net, spec, tmp_path / "ens.onnx")
    graph = onnx.load(str(path)).graph
    assert len(graph.input) == 1 and len(graph.output) == 1  # one input of raw joints, one fused score
    ops = {n.op_type for n in graph.node}
    assert "Gather" in ops and "Einsum" not in ops  # the bone view is in the graph
    x = np.random.default_rng(1).standard_normal((3, 3, 16, 25, 2)).astype(np.float32)
    with torch.no_grad():
        ref = net(torch.from_numpy(x)).numpy()
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = sess.run(None, {sess.get_inputs()[0].name: x})[0]
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-4 * max(1.0, np.abs(ref).max()))
    ov = pytest.importorskip("openvino")
    compiled = ov.Core().compile_model(str(path), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    got = compiled(x)[compiled.output(0)]
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-4 * max(1.0, np.abs(ref).max()))


def _profile(tmp_path: Path, base: str, **over) -> Path:
    prof = yaml.safe_load((REPO / "devices" / f"{base}.yaml").read_text())
    prof.update(over)
    path = tmp_path / f"{base}-tiny.yaml"
    path.write_text(yaml.safe_dump(prof))
    return path


def _recipe(tmp_path: Path, **over) -> Path:
    p = tmp_path / "tiny-ens.yaml"
    p.write_text(yaml.safe_dump({**ENS_RECIPE, **over}))
    return p


def test_ensemble_recipe_checks_every_route_including_tensorrt(tmp_path, capsys):
    """`edgeskel check` on a Jetson profile: the ensemble graph goes through the TensorRT route
    (export + lint) and ONNX Runtime, before any stream is trained."""
    prof = _profile(tmp_path, "jetson-orin", batch_sizes=[1, 2])
    rc = main(["check", "--device", str(prof), "--recipe", str(_recipe(tmp_path)), "--out", str(tmp_path / "chk"),
               "--json"])
    out = capsys.readouterr().out
    assert rc == 0, out
    summary = json.loads(out)
    assert summary["model"] == "ensemble" and summary["passed"] is True
    routes = summary["routes"]
    assert "tensorrt" in routes and all(r["status"] == "passed" for r in routes.values()), routes
    assert routes["tensorrt"]["lint_warnings"] == []


def test_ensemble_recipe_end_to_end_cpu(tmp_path):
    prof = _profile(tmp_path, "cpu", variants=[{"backend": "ort", "precision": "fp32"},
                                               {"backend": "openvino", "precision": "fp32"}], batch_sizes=[1])
    out = tmp_path / "runs"
    rc = main(["export", "--device", str(prof), "--recipe", str(_recipe(tmp_path)), "--out", str(out), "--quiet"])
    run_dir = out / "tiny-ens" / "cpu"
    rep = json.loads((run_dir / "report.json").read_text())
    assert rc == 0 and rep["passed"] is True, rep.get("variants")
    assert [v["name"] for v in rep["variants"]] == ["ort-fp32", "openvino-fp32"]
    net, spec, extra = load_checkpoint(run_dir / "reference" / "reference.ckpt")
    assert spec.name == "ensemble" and [s["input"] for s in spec.kwargs["streams"]] == ["joint", "bone"]
    assert set(extra["trained_streams"]) == {"joint", "bone"}
    comp = json.loads((run_dir / "compress" / "compression.json").read_text())
    done = [e["name"] for e in comp["layers"] if e["status"] == "factorized"]
    assert {n.split(".")[1] for n in done} == {"joint", "bone"}  # one budget over both streams
    # per-stream and fused top-1 of the reference and of the compressed ensemble (PyTorch, test split)
    for e in (rep["reference"]["ensemble"], rep["deployed_model"]["ensemble"]):
        assert [x["name"] for x in e["streams"]] == ["joint", "bone"] and e["best_stream"] in ("joint", "bone")
        best = max(x["top1"] for x in e["streams"])
        assert abs(e["gain_over_best_stream"] - (e["fused_top1"] - best)) < 1e-6
    assert abs(rep["reference"]["ensemble"]["fused_top1"] - rep["reference"]["top1"]) < 1e-6
    md = (run_dir / "report.md").read_text()
    assert "Ensemble, reference: fused top-1" in md and "Ensemble, deployed (compressed): fused top-1" in md


def test_recipe_errors_for_streams_are_one_line(tmp_path, capsys):
    bad = dict(ENS_RECIPE, model={"streams": [{"name": "j", "input": "joint", "train": True}]})
    rc = main(["check", "--recipe", str(_recipe(tmp_path, **bad))])
    err = capsys.readouterr().err
    assert rc == 2 and "error:" in err and "needs model" in err and "Traceback" not in err
    bad = dict(ENS_RECIPE, model={"streams": [{"checkpoint": str(tmp_path / "none.ckpt"), "input": "bone"}]})
    rc = main(["check", "--recipe", str(_recipe(tmp_path, **bad))])
    err = capsys.readouterr().err
    assert rc == 2 and "model.streams[0].checkpoint" in err and "not found" in err


def test_ensemble_on_jetson_is_one_engine_per_variant_built_and_run_by_the_doubles(tmp_path):
    """`make export DEVICE=jetson-orin RECIPE=<ensemble>`: each TensorRT variant of a two-stream
    ensemble is ONE build kit (one engine per batch size, both streams, the bone view and the
    fusion inside), which the TensorRT contract doubles build and run; results import as for any
    model (compression is the CPU test's: here it would only add time)."""
    import subprocess

    from trt_doubles import install

    rec = tmp_path / "tiny-ens.yaml"
    rec.write_text(yaml.safe_dump({**ENS_RECIPE, "compress": None}))
    prof = yaml.safe_load((REPO / "devices" / "jetson-orin.yaml").read_text())
    prof.update(arch="x86_64", batch_sizes=[1], measure={"warmup": 1, "runs": 5},
                variants=[v for v in prof["variants"] if v["backend"] == "tensorrt" and v["precision"] == "fp16"])
    path = tmp_path / "jetson-orin.yaml"
    path.write_text(yaml.safe_dump(prof))
    out = tmp_path / "runs"
    assert main(["export", "--device", str(path), "--recipe", str(rec), "--out", str(out), "--quiet"]) == 3
    run_dir = out / "tiny-ens" / "jetson-orin"
    rep = json.loads((run_dir / "report.json").read_text())
    bundle = run_dir / rep["bundle"]
    meta = json.loads((bundle / "bundle.json").read_text())
    (v,) = meta["variants"]
    assert v["name"] == "tensorrt-fp16" and list(v["build"]["engines"]) == ["1"]
    import onnx

    graph = onnx.load(str(bundle / v["artifact"])).graph
    assert [i.name for i in graph.input] == ["skeleton"] and len(graph.output) == 1  # raw joints in, fused scores out
    dbl = install(tmp_path, "10.3.0")
    proc = subprocess.run([str(dbl.python), "device_runner.py", ".", "--out", str(tmp_path / "results.json")],
                          cwd=bundle, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (res,) = json.loads((tmp_path / "results.json").read_text())["variants"]
    assert res["status"] == "ok" and "contract double" in res["tensorrt"]["runtime"]
    assert main(["results", "import", str(run_dir), str(tmp_path / "results.json")]) in (0, 3)
    (row,) = json.loads((run_dir / "report.json").read_text())["variants"]
    assert row["measured_on"] == "imported://jetson-orin" and "double" in json.dumps(row)
