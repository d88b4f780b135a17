"""DLA INT8 route by TensorRT version (issue 26 item 5; docs/TENSORRT.md, "DLA INT8").

TensorRT 10.x (JetPack 6, the `jetson-orin` profile): NVIDIA documents DLA INT8 only through
calibration scales (implicit quantization), so the DLA INT8 kit is the Q/DQ graph without its Q/DQ
nodes + a calibration cache of its scales, built with `--int8 --fp16 --calib`. TensorRT 11.4.1
(`jetson-orin-jp7`): DLA is strongly typed, the Q/DQ graph as is. The trtexec CONTRACT DOUBLE
enforces the rule; nothing here is a TensorRT measurement.
"""

from __future__ import annotations

import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper
from trt_doubles import DOUBLES, install

from edgeskel.devices import load_profile
from edgeskel.quantize.ort_qdq import quantize_ort_int8
from edgeskel.quantize.tensorrt import prepare_tensorrt, read_kit
from edgeskel.quantize.tensorrt_routes import (
    calibration_cache_text,
    export_options_for,
    make_route,
    parse_calibration_cache,
    strip_qdq,
    trt_version_int,
)

TRTEXEC = [sys.executable, str(DOUBLES / "trtexec_double.py")]
SHAPE = (3, 8, 5, 1)


def _conv_net(path: Path) -> Path:
    """skeleton (N,3,8,5,1) -> Reshape -> Conv -> Relu -> Conv -> Add(residual) -> Relu -> GAP ->
    Flatten -> Gemm -> logits: the layer types DLA runs, plus the shuffles it does not."""
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(np.array([0, 3, 8, 5], np.int64), "shape4"),
             numpy_helper.from_array((rng.standard_normal((8, 3, 3, 1)) * 0.3).astype(np.float32), "w1"),
             numpy_helper.from_array((rng.standard_normal(8) * 0.1).astype(np.float32), "b1"),
             numpy_helper.from_array((rng.standard_normal((8, 8, 1, 1)) * 0.3).astype(np.float32), "w2"),
             numpy_helper.from_array((rng.standard_normal(8) * 0.1).astype(np.float32), "b2"),
             numpy_helper.from_array((rng.standard_normal((5, 8)) * 0.3).astype(np.float32), "wf"),
             numpy_helper.from_array((rng.standard_normal(5) * 0.1).astype(np.float32), "bf")]
    nodes = [helper.make_node("Reshape", ["skeleton", "shape4"], ["x4"], name="to4d"),
             helper.make_node("Conv", ["x4", "w1", "b1"], ["c1"], name="conv1", pads=[1, 0, 1, 0]),
             helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
             helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], name="conv2"),
             helper.make_node("Add", ["c2", "r1"], ["s"], name="add"),
             helper.make_node("Relu", ["s"], ["r2"], name="relu2"),
             helper.make_node("GlobalAveragePool", ["r2"], ["p"], name="gap"),
             helper.make_node("Flatten", ["p"], ["f"], name="flat"),
             helper.make_node("Gemm", ["f", "wf", "bf"], ["logits"], name="fc", transB=1)]
    graph = helper.make_graph(nodes, "convnet", [helper.make_tensor_value_info("skeleton", TensorProto.FLOAT,
                                                                               ["N", *SHAPE])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 5])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    onnx.save(model, str(path))
    return path


@pytest.fixture(scope="module")
def nets(tmp_path_factory):
    d = tmp_path_factory.mktemp("dla")
    fp32 = _conv_net(d / "fp32.onnx")
    x = np.random.default_rng(1).standard_normal((32, *SHAPE)).astype(np.float32)
    quantize_ort_int8(fp32, d / "qdq.onnx", x, symmetric_activations=True, quantize_bias=False)
    quantize_ort_int8(fp32, d / "qdq_excl.onnx", x, symmetric_activations=True, quantize_bias=False,
                      exclude_nodes=["conv2"])
    return {"dir": d, "fp32": fp32, "qdq": d / "qdq.onnx", "qdq_excl": d / "qdq_excl.onnx", "x": x}


def _kit(nets, tmp_path: Path, profile: str, variant: str, qdq: str = "qdq") -> tuple[dict, Path]:
    prof = load_profile(profile)
    v = next(v for v in prof.variants if v.key == variant)
    opts = export_options_for(prof, v)
    kit_dir = tmp_path / variant
    kit = prepare_tensorrt(nets["fp32"], kit_dir, v.precision, qdq_onnx=nets[qdq],
                           **{k: val for k, val in opts.items() if k != "workspace_mb"})
    return kit, kit_dir


def _trtexec(args: list[str], version: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "TRTEXEC_DOUBLE_VERSION": version}
    return subprocess.run([*TRTEXEC, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def _build(kit_dir: Path, version: str, tmp_path: Path) -> subprocess.CompletedProcess:
    dbl = install(tmp_path / f"dbl-{version}", version)
    return subprocess.run(["bash", "build_engine.sh"], cwd=kit_dir, env={**os.environ, **dbl.env},
                          capture_output=True, text=True, timeout=120)


def _q_scales(path: Path) -> dict[str, float]:
    """Activation scales of a Q/DQ graph: QuantizeLinear input -> y_scale."""
    m = onnx.load(str(path))
    consts = {i.name: numpy_helper.to_array(i) for i in m.graph.initializer}
    return {n.input[0]: float(consts[n.input[1]]) for n in m.graph.node
            if n.op_type == "QuantizeLinear" and n.input[0] not in consts}


# ---- the kit of the jetson-orin (TensorRT 10.3) DLA INT8 variant ------------------------------

def test_jetson_orin_dla_int8_kit_is_implicit_int8_with_a_calibration_cache(nets, tmp_path):
    kit, kit_dir = _kit(nets, tmp_path, "jetson-orin", "tensorrt-int8-dla")
    sh = (kit_dir / "build_engine.sh").read_text()
    for flag in ("--int8", "--fp16", "--calib=calib.cache", "--useDLACore=0", "--allowGPUFallback"):
        assert flag in sh, flag
    assert "--stronglyTyped" not in sh  # trtexec 10.x sets kFP16/kPREFER_PRECISION_CONSTRAINTS for DLA
    assert kit["route"] == "tensorrt10-dla-weakly-typed" and kit["typing"] == "weak"
    assert kit["quantization"] == "implicit" and "calib.cache" in kit["files"]
    manifest = read_kit(kit_dir)
    assert manifest["quantization"] == "implicit" and manifest["calibration"]["file"] == "calib.cache"
    assert all("--calib=calib.cache" in e["trtexec"] for e in manifest["engines"])
    # the ONNX has no Q/DQ nodes, fp32 throughout; the weights are the Q/DQ graph's dequantized ones
    model = onnx.load(str(kit_dir / "model.onnx"))
    ops = {n.op_type for n in model.graph.node}
    assert not ops & {"QuantizeLinear", "DequantizeLinear"} and {"Conv", "Gemm"} <= ops
    assert {i.data_type for i in model.graph.initializer} <= {TensorProto.FLOAT, TensorProto.INT64}
    assert kit["lint"]["passed"] and kit["lint"]["qdq"]["nodes"] == 0
    # the cache: TensorRT 10.3's header, then the Q/DQ graph's own activation scales, bit for bit
    text = (kit_dir / "calib.cache").read_text()
    header, scales = parse_calibration_cache(text)
    assert header == "TRT-100300-EntropyCalibration2" == f"TRT-{trt_version_int('10.3.0')}-EntropyCalibration2"
    want = _q_scales(nets["qdq"])
    names = {t for n in model.graph.node for t in [*n.input, *n.output]}
    for name, s in want.items():  # same tensors (the graph output keeps its name), same float32 scale
        key = name if name in names else "logits"
        assert np.float32(scales[key]) == np.float32(s), name
    line = next(ln for ln in text.splitlines()[1:] if ln.startswith("c1: "))
    assert line == "c1: " + struct.pack(">f", want["c1"]).hex() and len(line.split(": ")[1]) == 8
    # every Conv/Gemm has scales on both sides: DLA can run all of them in INT8
    cands = kit["calibration"]["int8_candidates"]
    assert cands["weighted_layers"] == 3 and cands["with_scales"] == 3


def test_stripped_graph_computes_what_the_qdq_graph_does_without_activation_rounding(nets, tmp_path):
    info = strip_qdq(nets["qdq"], tmp_path / "s.onnx")
    assert info["weights"] == 3 and info["float_layers"] == []
    x = nets["x"][:8]
    run = {k: ort.InferenceSession(str(p)).run(None, {"skeleton": x})[0]
           for k, p in (("fp32", nets["fp32"]), ("qdq", nets["qdq"]), ("strip", tmp_path / "s.onnx"))}
    scale = np.abs(run["fp32"]).max()
    assert np.abs(run["strip"] - run["fp32"]).max() < 0.05 * scale  # only weight rounding left
    assert np.abs(run["strip"] - run["qdq"]).max() < 0.1 * scale


def test_gpu_int8_keeps_the_strongly_typed_qdq_route(nets, tmp_path):
    kit, kit_dir = _kit(nets, tmp_path, "jetson-orin", "tensorrt-int8")
    sh = (kit_dir / "build_engine.sh").read_text()
    assert "--stronglyTyped" in sh and "--int8" not in sh and "--calib" not in sh
    assert kit["quantization"] == "explicit" and not (kit_dir / "calib.cache").exists()
    assert any(n.op_type == "QuantizeLinear" for n in onnx.load(str(kit_dir / "model.onnx")).graph.node)


def test_jetpack7_dla_int8_stays_strongly_typed_qdq(nets, tmp_path):
    """TensorRT 11.4.1: DLA networks are strongly typed; there is no --int8 and no --calib."""
    kit, kit_dir = _kit(nets, tmp_path, "jetson-orin-jp7", "tensorrt-int8-dla")
    sh = (kit_dir / "build_engine.sh").read_text()
    assert "--useDLACore=0" in sh and not any(f in sh for f in ("--int8", "--fp16", "--calib", "--stronglyTyped"))
    assert kit["route"] == "tensorrt11-strongly-typed" and kit["quantization"] == "explicit"
    assert any(n.op_type == "DequantizeLinear" for n in onnx.load(str(kit_dir / "model.onnx")).graph.node)
    res = _build(kit_dir, "11.4.1", tmp_path)
    assert res.returncode == 0, res.stderr
    assert "[DlaLayer]" in (kit_dir / "build.b1.log").read_text()


def test_dla_fp16_on_tensorrt_10_is_weakly_typed_too():
    assert make_route("10.3", "strong", dla=True).precision_flags("fp16") == ["--fp16"]
    assert make_route("10.3", "strong", dla=False).precision_flags("fp16") == ["--stronglyTyped"]
    assert make_route("11.4.1", "strong", dla=True).precision_flags("int8") == []


# ---- the double enforces the documented route ----------------------------------------------------

def test_double_builds_the_documented_route_and_places_layers_on_dla(nets, tmp_path):
    kit, kit_dir = _kit(nets, tmp_path, "jetson-orin", "tensorrt-int8-dla")
    res = _build(kit_dir, "10.3.0", tmp_path)
    assert res.returncode == 0, res.stderr
    log = (kit_dir / "build.b16.log").read_text()
    assert "[DlaLayer]" in log and "&&&& PASSED" in log and "Missing scale" not in log
    engine = (kit_dir / "model.b16.engine").read_bytes()
    assert b'"int8": "implicit (calibration cache)"' in engine and b'"int8_layers": 0' not in engine


def test_double_refuses_the_undocumented_dla_routes_on_tensorrt_10(nets, tmp_path):
    """What the jetson-orin DLA INT8 variant used to build (strongly typed Q/DQ on DLA) and the
    weakly typed Q/DQ graph on DLA are refused on 10.3; on 11.4.1 strongly typed DLA is the route."""
    old, old_dir = _kit(nets, tmp_path, "jetson-orin", "tensorrt-int8")  # the strongly typed Q/DQ graph
    shapes = [f"--{k}Shapes=skeleton:1x3x8x5x1" for k in ("min", "opt", "max")]
    dla = ["--useDLACore=0", "--allowGPUFallback", "--saveEngine=e.engine", *shapes]
    res = _trtexec(["--onnx=model.onnx", "--stronglyTyped", *dla], "10.3.0", old_dir)
    assert res.returncode == 1 and "strongly typed networks are not a documented DLA input" in res.stdout
    res = _trtexec([f"--onnx={nets['qdq']}", "--int8", "--fp16", *dla], "10.3.0", tmp_path)
    assert res.returncode == 1 and "explicitly quantized (Q/DQ nodes)" in res.stdout
    assert _trtexec(["--onnx=model.onnx", "--stronglyTyped", *dla], "11.4.1", old_dir).returncode == 0
    # the GPU build of the same graph is fine on 10.3 (explicit quantization, strongly typed)
    assert _trtexec(["--onnx=model.onnx", "--stronglyTyped", "--saveEngine=g.engine", *shapes], "10.3.0",
                    old_dir).returncode == 0


def test_double_checks_the_calibration_cache(nets, tmp_path):
    kit, kit_dir = _kit(nets, tmp_path, "jetson-orin", "tensorrt-int8-dla")
    shapes = [f"--{k}Shapes=skeleton:1x3x8x5x1" for k in ("min", "opt", "max")]
    args = ["--onnx=model.onnx", "--int8", "--fp16", "--useDLACore=0", "--allowGPUFallback", "--saveEngine=e.engine",
            *shapes]
    good = (kit_dir / "calib.cache").read_text()
    assert _trtexec([*args, "--calib=calib.cache"], "10.3.0", kit_dir).returncode == 0
    cases = {"TRT-8600-EntropyCalibration2\n" + good.split("\n", 1)[1]: "is for TensorRT v8600",
             good.replace("EntropyCalibration2", "MinMaxCalibration", 1): "does not match calibrator algorithm",
             good + "c1 3cb13f23\n": "malformed calibration cache line",
             "TRT-100300-EntropyCalibration2\nnot_a_tensor: 3cb13f23\n": "none of the calibration cache's tensors"}
    for text, msg in cases.items():
        (kit_dir / "bad.cache").write_text(text)
        res = _trtexec([*args, "--calib=bad.cache"], "10.3.0", kit_dir)
        assert res.returncode == 1 and msg in res.stdout, (msg, res.stdout)
    res = _trtexec(args, "10.3.0", kit_dir)  # --int8 without scales: placeholder ranges
    assert res.returncode == 1 and "INT8 without scales" in res.stdout
    res = _trtexec([*args, "--calib=calib.cache"], "11.4.1", kit_dir)  # TensorRT 11 removed --calib
    assert res.returncode == 1 and "Unknown option: --int8" in res.stdout


def test_build_script_puts_the_local_tensorrt_version_in_the_cache_header(nets, tmp_path):
    """The scales come from the Q/DQ graph, not from a TensorRT calibration run, so they hold for
    any 10.x: the build script heads the cache with the version of the trtexec that reads it."""
    kit, kit_dir = _kit(nets, tmp_path, "jetson-orin", "tensorrt-int8-dla")
    res = _build(kit_dir, "10.7.0", tmp_path)
    assert res.returncode == 0, res.stderr
    assert "calib.cache header set to TensorRT v100700" in res.stdout
    header, scales = parse_calibration_cache((kit_dir / "calib.cache").read_text())
    assert header == "TRT-100700-EntropyCalibration2"
    assert scales == parse_calibration_cache(calibration_cache_text(scales, "10.3"))[1]


def test_layers_the_qdq_graph_kept_in_float_are_pinned_to_fp16(nets, tmp_path):
    """An INT8 fallback that excluded conv2 from quantization: with scales on both its sides
    TensorRT's implicit mode could still pick INT8 for it, so the kit asks for FP16
    (--precisionConstraints=prefer --layerPrecisions, as NVIDIA's QDQ Translator does)."""
    kit, kit_dir = _kit(nets, tmp_path, "jetson-orin", "tensorrt-int8-dla", qdq="qdq_excl")
    sh = (kit_dir / "build_engine.sh").read_text()
    assert "--precisionConstraints=prefer" in sh and "--layerPrecisions=conv2:fp16" in sh
    assert kit["calibration"]["fp16_layers"] == ["conv2"]
    res = _build(kit_dir, "10.3.0", tmp_path)
    assert res.returncode == 0, res.stderr
    assert "no layer named" not in (kit_dir / "build.b1.log").read_text()


def test_stale_calibration_cache_is_removed_when_the_route_changes(nets, tmp_path):
    kit, kit_dir = _kit(nets, tmp_path, "jetson-orin", "tensorrt-int8-dla")
    assert (kit_dir / "calib.cache").is_file()
    prepare_tensorrt(nets["fp32"], kit_dir, "int8", qdq_onnx=nets["qdq"], batch_sizes=[1], tensorrt_version="11.4.1",
                     dla_core=0)
    assert not (kit_dir / "calib.cache").exists() and "calibration" not in read_kit(kit_dir)


# ---- through the pipeline: export -> bundle -> build + run with the 10.3 doubles ---------------

@pytest.mark.slow  # the same pipeline run and assertions are in test_tensorrt_doubles' jetson loop test
def test_pipeline_bundles_the_dla_int8_route_and_the_doubles_run_it(tmp_path):
    """`edgeskel export --device jetson-orin` without a device: the DLA INT8 variant's bundle entry
    carries calib.cache and a --calib build; the bundle then builds and runs by hand with the
    TensorRT 10.3 doubles (their numbers are labelled as a double's, never TensorRT's)."""
    import json

    import yaml
    from test_pipeline_e2e import TINY_RECIPE, tiny_profile

    from edgeskel.pipeline import run_pipeline

    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(yaml.safe_dump(TINY_RECIPE))
    prof = tiny_profile(tmp_path, base="jetson-orin", batch_sizes=[1, 2], rank_multiple=8, arch="x86_64",
                        measure={"warmup": 2, "runs": 20})
    rep = run_pipeline(str(prof), str(recipe), out_root=tmp_path / "runs", quiet=True, log=lambda s: None)
    run_dir = tmp_path / "runs" / "tiny" / "jetson-orin"
    exp = json.loads((run_dir / "export" / "tensorrt-int8-dla" / "export.json").read_text())
    assert exp["tensorrt"]["route"] == "tensorrt10-dla-weakly-typed" and exp["tensorrt"]["quantization"] == "implicit"
    assert exp["lint"]["passed"] and exp["lint"]["calibration"]["with_scales"] >= 1
    bundle = run_dir / rep["bundle"]
    meta = json.loads((bundle / "bundle.json").read_text())
    dla = next(v for v in meta["variants"] if v["name"] == "tensorrt-int8-dla")
    script = (bundle / dla["build"]["script"]).read_text()
    assert "--calib=calib.cache" in script and "--stronglyTyped" not in script
    assert (bundle / dla["build"]["script"]).with_name("calib.cache").is_file()
    dbl = install(tmp_path, "10.3.0")
    proc = subprocess.run([str(dbl.python), "device_runner.py", ".", "--variant", "tensorrt-int8-dla", "--out",
                           str(tmp_path / "r.json")], cwd=bundle, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r = json.loads((tmp_path / "r.json").read_text())["variants"][0]
    assert r["status"] == "ok", r
    assert r["tensorrt"]["route"] == "tensorrt10-dla-weakly-typed" and r["tensorrt"]["layers"]["2"]["dla"] >= 1
    assert "contract double" in r["tensorrt"]["runtime"]
