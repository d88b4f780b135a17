"""TensorRT readiness lint, build kit and GPU guards (small graphs built with onnx.helper)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgeskel.errors import ExportError
from edgeskel.quantize.tensorrt import build_engine_local, lint_tensorrt, prepare_tensorrt
from edgeskel.runtime import get_runner
from edgeskel.runtime.tensorrt import gpu_unavailable_reason, tensorrt_unavailable_reason

SHAPE = ["batch", 3, 8, 5, 1]


def _qdq(name: str, src: str, zp_dtype=np.int8, zp_val: int = 0) -> tuple[list, list]:
    """Q -> DQ pair on activation `src`; returns (nodes, initializers), output `name`."""
    scale = numpy_helper.from_array(np.array(0.05, np.float32), f"{name}_s")
    zp = numpy_helper.from_array(np.array(zp_val, zp_dtype), f"{name}_zp")
    nodes = [helper.make_node("QuantizeLinear", [src, scale.name, zp.name], [f"{name}_q"], name=f"{name}_Q"),
             helper.make_node("DequantizeLinear", [f"{name}_q", scale.name, zp.name], [name], name=f"{name}_DQ")]
    return nodes, [scale, zp]


def _model(kind: str = "good", opset: int = 17, shape=SHAPE) -> onnx.ModelProto:
    """skeleton (N,3,8,5,1) -> QDQ -> Conv (int8 per-channel weights) -> Relu -> Einsum? -> logits."""
    zp_dtype, zp_val = (np.uint8, 128) if kind == "asym" else (np.int8, 0)
    nodes, inits = _qdq("xq", "skeleton", zp_dtype, zp_val)
    w = numpy_helper.from_array(np.random.default_rng(0).integers(-127, 127, (4, 3, 3, 1)).astype(np.int8), "w_int8")
    ws = numpy_helper.from_array(np.full(4, 0.01, np.float32), "w_s")
    wz = numpy_helper.from_array(np.zeros(4, np.int8), "w_zp")
    inits += [w, ws, wz]
    nodes.append(helper.make_node("DequantizeLinear", ["w_int8", "w_s", "w_zp"], ["w"], name="w_DQ", axis=0))
    nodes.append(helper.make_node("Reshape", ["xq", "shape4"], ["x4"], name="to4d"))
    inits.append(numpy_helper.from_array(np.array([-1, 3, 8, 5], np.int64), "shape4"))
    nodes.append(helper.make_node("Conv", ["x4", "w"], ["c"], name="conv", pads=[1, 0, 1, 0]))
    nodes.append(helper.make_node("Relu", ["c"], ["r"], name="relu"))
    if kind == "einsum":  # Einsum fed by Q/DQ: inside the INT8 region
        q2, i2 = _qdq("rq", "r")
        nodes += q2
        inits += i2
        nodes.append(helper.make_node("Einsum", ["rq"], ["logits"], name="einsum_pool", equation="nchw->nc"))
    else:
        if opset >= 18:  # ReduceMean-18 takes the axes as an input
            inits.append(numpy_helper.from_array(np.array([2, 3], np.int64), "axes23"))
            nodes.append(helper.make_node("ReduceMean", ["r", "axes23"], ["logits"], name="pool", keepdims=0))
        else:
            nodes.append(helper.make_node("ReduceMean", ["r"], ["logits"], name="pool", axes=[2, 3], keepdims=0))
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("skeleton", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 4])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def _save(model: onnx.ModelProto, path: Path) -> Path:
    onnx.save(model, str(path))
    return path


def test_lint_passes_good_symmetric_qdq_graph(tmp_path):
    res = lint_tensorrt(_save(_model("good"), tmp_path / "good.onnx"))
    assert res["passed"], res["errors"]
    assert res["errors"] == [] and res["qdq"] == {"nodes": 3, "symmetric": True, "int8": True}
    assert res["opset"] == 17 and res["op_counts"]["Conv"] == 1
    # the graph really runs (ORT) so the fixture is a meaningful "good" case
    x = np.random.default_rng(0).standard_normal((2, 3, 8, 5, 1)).astype(np.float32)
    with get_runner("ort", tmp_path / "good.onnx") as r:
        assert r.infer(x).shape == (2, 4)


def test_lint_rejects_einsum_in_int8_region(tmp_path):
    res = lint_tensorrt(_save(_model("einsum"), tmp_path / "einsum.onnx"))
    assert not res["passed"]
    assert any("Einsum in an INT8" in e and "einsum_pool" in e for e in res["errors"])


def test_lint_rejects_asymmetric_qdq(tmp_path):
    res = lint_tensorrt(_save(_model("asym"), tmp_path / "asym.onnx"))
    assert not res["passed"]
    assert any("asymmetric" in e and "zero-point [128]" in e for e in res["errors"])
    assert any("non-int8" in e and "uint8" in e for e in res["errors"])
    assert res["qdq"]["symmetric"] is False


def test_lint_rejects_dynamic_non_batch_dims_unsupported_ops_and_warns_on_opset(tmp_path):
    res = lint_tensorrt(_save(_model("good", shape=["batch", 3, "T", 5, 1]), tmp_path / "dyn.onnx"))
    assert any("axis 2 is dynamic" in e for e in res["errors"])
    m = _model("good")
    m.graph.node.append(helper.make_node("NonZero", ["r"], ["nz"], name="nz"))
    m.graph.output.append(helper.make_tensor_value_info("nz", TensorProto.INT64, [4, "nnz"]))
    res = lint_tensorrt(_save(m, tmp_path / "nz.onnx"))
    assert any("NonZero" in e for e in res["errors"])
    m18 = _model("good", opset=18)
    res = lint_tensorrt(_save(m18, tmp_path / "o18.onnx"))
    assert res["passed"] and any("TensorRT >= 10" in w for w in res["warnings"])
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"garbage")
    assert not lint_tensorrt(bad)["passed"]


def test_prepare_kit_writes_scripts_and_shapes(tmp_path):
    fp32 = _save(_model("good"), tmp_path / "fp32.onnx")
    kit = prepare_tensorrt(fp32, tmp_path / "kit", "int8", qdq_onnx=fp32, batch_sizes=[16, 1], dla_core=0,
                           workspace_mb=512)
    sh = (tmp_path / "kit" / "build_engine.sh").read_text()
    for flag in ("--onnx=model.onnx", "--saveEngine=model.b1.engine", "--saveEngine=model.b16.engine",
                 "--minShapes=skeleton:16x3x8x5x1", "--optShapes=skeleton:16x3x8x5x1",
                 "--maxShapes=skeleton:16x3x8x5x1", "--minShapes=skeleton:1x3x8x5x1", "--calib=calib.cache",
                 "--timingCacheFile=timing.cache", "--useDLACore=0", "--allowGPUFallback",
                 "--exportLayerInfo=layers.b16.json", "--profilingVerbosity=detailed", "--memPoolSize=workspace:512M"):
        assert flag in sh, flag
    # DLA INT8 on TensorRT 10.x: implicit INT8 from a calibration cache (docs/TENSORRT.md, "DLA INT8")
    assert "--int8" in sh and "--fp16" in sh and "--stronglyTyped" not in sh
    assert "calib.cache" in kit["files"] and kit["quantization"] == "implicit"
    gpu = prepare_tensorrt(fp32, tmp_path / "gpu", "int8", qdq_onnx=fp32, batch_sizes=[1])
    gsh = (tmp_path / "gpu" / "build_engine.sh").read_text()
    assert "--stronglyTyped" in gsh and "--int8" not in gsh and "--fp16" not in gsh  # precision is in the ONNX
    assert gpu["quantization"] == "explicit" and not (tmp_path / "gpu" / "calib.cache").exists()
    assert subprocess.run(["bash", "-n", str(tmp_path / "kit" / "build_engine.sh")]).returncode == 0
    assert kit["lint"]["passed"] and kit["engines"] == {"1": "model.b1.engine", "16": "model.b16.engine"}
    assert kit["lint"]["dla"]["batch_sizes"] == [1, 16]
    manifest = json.loads((tmp_path / "kit" / "tensorrt.json").read_text())
    assert [e["batch"] for e in manifest["engines"]] == [1, 16] and manifest["dla_core"] == 0
    assert (tmp_path / "kit" / "README.txt").read_text().count("trtexec") >= 1
    with pytest.raises(ExportError, match="QDQ"):
        prepare_tensorrt(fp32, tmp_path / "kit2", "int8")
    with pytest.raises(ExportError, match="batch sizes must be >= 1"):
        prepare_tensorrt(fp32, tmp_path / "kit3", "fp16", batch_sizes=[0, 2])


def test_lint_checks_dla_restrictions(tmp_path):
    m = _model("good")
    m.graph.node.insert(0, helper.make_node("Erf", ["skeleton"], ["unused_erf"], name="erf"))
    m.graph.output.append(helper.make_tensor_value_info("unused_erf", TensorProto.FLOAT, SHAPE))
    res = lint_tensorrt(_save(m, tmp_path / "m.onnx"), dla=True, batch_sizes=[1, 8192])
    assert any("exceed DLA's maximum batch 4096" in e for e in res["errors"])
    assert any("fall back to GPU" in w and "Erf" in w and "ReduceMean" in w for w in res["warnings"])
    assert res["dla"]["eligible_ops"] > 0 and "Erf" in res["dla"]["gpu_fallback_ops"]
    assert "dla" not in lint_tensorrt(tmp_path / "m.onnx")  # GPU variants are not held to DLA's rules


def test_run_engine_script_exits_clearly_without_tensorrt(tmp_path):
    fp32 = _save(_model("good"), tmp_path / "fp32.onnx")
    prepare_tensorrt(fp32, tmp_path / "kit", "fp16")
    np.save(tmp_path / "x.npy", np.zeros((2, 3, 8, 5, 1), np.float32))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    res = subprocess.run([sys.executable, str(tmp_path / "kit" / "run_engine.py"), "e.engine",
                          str(tmp_path / "x.npy"), str(tmp_path / "y.npy")], capture_output=True, text=True, env=env)
    assert res.returncode != 0 and "needs tensorrt and cuda-python" in res.stderr


def test_tensorrt_runner_refuses_without_gpu(tmp_path):
    if gpu_unavailable_reason() is None:
        pytest.skip("an NVIDIA GPU is present: the refusal path is not reachable")
    engine = tmp_path / "m.engine"
    engine.write_bytes(b"\0" * 16)
    with pytest.raises(ExportError, match="TensorRT needs an NVIDIA GPU"):
        get_runner("tensorrt", engine).load()
    with pytest.raises(ExportError, match="missing.engine"):
        get_runner("tensorrt", tmp_path / "missing.engine").load()


@pytest.mark.tensorrt
def test_engine_build_and_parity_on_gpu(tmp_path):
    reason = tensorrt_unavailable_reason()
    fp32 = _save(_model("good"), tmp_path / "fp32.onnx")
    prepare_tensorrt(fp32, tmp_path / "kit", "int8", qdq_onnx=fp32, batch_sizes=[1, 4])
    res = build_engine_local(tmp_path / "kit")
    if reason is not None or res["status"] == "skipped":
        assert res["status"] == "skipped" and res["reason"].startswith("no NVIDIA GPU/TensorRT on this machine")
        pytest.skip(f"no NVIDIA GPU/TensorRT on this machine: {reason or res['reason']}")
    assert res["status"] == "built", res
    x = np.random.default_rng(0).standard_normal((3, 3, 8, 5, 1)).astype(np.float32)
    with get_runner("ort", fp32) as r:
        ref = r.infer(x)
    with get_runner("tensorrt", res["engine"]) as r:  # the batch-4 engine: 3 samples are padded
        out = r.infer(x)
    from edgeskel.validate.parity import check_parity

    assert check_parity(ref, out, "int8")["passed"]
