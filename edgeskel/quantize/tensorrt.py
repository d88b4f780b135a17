"""TensorRT build kits: a TensorRT-ready ONNX + trtexec script + standalone runner, and a lint.

TensorRT engines are GPU- and version-specific, so they are built *on the device* (Jetson);
here we prepare and check everything that can be checked without a GPU (TOOLCHAIN.md):
- the graph: only ops TensorRT's ONNX parser supports, no Einsum, symmetric int8 Q/DQ
  (explicit quantization needs zero-point 0), only the batch axis dynamic, opset in range, and
  for DLA its layer and shape restrictions;
- the kit: the ONNX of the profile's TensorRT route (tensorrt_routes: strongly typed fp16 / Q/DQ
  graphs, or the weakly typed flags where a TensorRT 10 profile asks; DLA INT8 on TensorRT 10.x:
  the Q/DQ graph without Q/DQ nodes + `calib.cache` of its scales), `build_engine.sh` (one
  static-shape engine per measured batch size, optional DLA, layer info), `tensorrt.json` (what
  the script builds, read by the bundle and the device runner) and `run_engine.py`.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from edgeskel.errors import ExportError
from edgeskel.io import atomic_write_bytes, atomic_write_json, atomic_write_text, sha256_file

# ONNX ops the TensorRT ONNX parser supports, from onnx/onnx-tensorrt docs/operators.md
# ("Operator Support Matrix", TensorRT 8.4-8.6 branches: rows marked Y), plus
# LayerNormalization (added in TensorRT 8.6). Ops not listed there (e.g. NonZero, Unique,
# OneHot, Mod, Sequence*, *Integer, QLinear*) make the parser fail.
TRT_SUPPORTED_OPS = frozenset("""
Abs Acos Acosh Add And ArgMax ArgMin Asin Asinh Atan Atanh AveragePool BatchNormalization Cast Ceil Celu Clip
Concat Constant ConstantOfShape Conv ConvTranspose Cos Cosh CumSum DepthToSpace DequantizeLinear Div Dropout
Einsum Elu Equal Erf Exp Expand EyeLike Flatten Floor Gather GatherElements GatherND Gemm GlobalAveragePool
GlobalLpPool GlobalMaxPool Greater GreaterOrEqual GRU HardSigmoid Identity If ImageScaler
InstanceNormalization IsNaN LayerNormalization LeakyRelu Less LessOrEqual Log LogSoftmax Loop LRN LSTM
LpNormalization LpPool MatMul Max MaxPool Mean Min Mul Neg NonMaxSuppression Not Or Pad ParametricSoftplus Pow
PRelu QuantizeLinear RandomUniform RandomUniformLike Range ReduceL1 ReduceL2 ReduceLogSum ReduceLogSumExp
ReduceMax ReduceMean ReduceMin ReduceProd ReduceSum ReduceSumSquare Relu Reshape Resize ReverseSequence RNN
Round ScaledTanh Scan Scatter ScatterElements ScatterND Selu Shape Sigmoid Sign Sin Sinh Size Slice Softmax
Softplus Softsign SpaceToDepth Split Sqrt Squeeze Sub Sum Tan Tanh ThresholdedRelu Tile TopK Transpose
Unsqueeze Upsample Where Xor
""".split())
# TensorRT 8.5/8.6 (JetPack 5/6) parse up to opset 17; TensorRT 10 reads newer opsets.
OPSET_OK = (13, 17)
OPSET_TRT10 = 21
# ONNX ops whose TensorRT layers DLA (Jetson Xavier/Orin deep-learning accelerator) can run, after
# "DLA Supported Layers and Restrictions" (docs.nvidia.com/deeplearning/tensorrt/latest/
# inference-library/dla-layer-restrictions.html: activation, convolution/deconvolution, element-wise,
# pooling, concatenation, resize, softmax, shuffle, scale/BN, fully connected); others fall back to GPU.
DLA_OPS = frozenset("Conv ConvTranspose BatchNormalization Relu LeakyRelu Sigmoid Tanh Clip PRelu MaxPool "
                    "AveragePool GlobalAveragePool Add Sub Mul Max Min Concat Resize Softmax "
                    "QuantizeLinear DequantizeLinear Reshape Transpose Gemm MatMul".split())
QDQ = ("QuantizeLinear", "DequantizeLinear")


def _nodes(graph: onnx.GraphProto):
    from edgeskel.onnx_graph import iter_nodes

    return list(iter_nodes(graph))


def _const_arrays(proto: onnx.ModelProto) -> dict[str, np.ndarray]:
    arrs = {i.name: onnx.numpy_helper.to_array(i) for i in proto.graph.initializer}
    for n in proto.graph.node:
        if n.op_type == "Constant" and n.attribute and n.attribute[0].type == onnx.AttributeProto.TENSOR:
            arrs[n.output[0]] = onnx.numpy_helper.to_array(n.attribute[0].t)
    return arrs


def _int8_region(proto: onnx.ModelProto) -> set[str]:
    """Names of nodes that consume a DequantizeLinear output or feed a QuantizeLinear: the ops
    TensorRT would try to run in INT8."""
    nodes = list(proto.graph.node)
    dq_out = {o for n in nodes if n.op_type == "DequantizeLinear" for o in n.output}
    q_in = {n.input[0] for n in nodes if n.op_type == "QuantizeLinear"}
    region = set()
    for n in nodes:
        if n.op_type in QDQ:
            continue
        if any(i in dq_out for i in n.input) or any(o in q_in for o in n.output):
            region.add(n.name or n.output[0])
    return region


def lint_tensorrt(onnx_path: str | Path, dla: bool = False, inspect: bool = False,
                  batch_sizes: list[int] | None = None, tensorrt_version: str | None = None) -> dict[str, Any]:
    """Static TensorRT-readiness check (runs anywhere, no GPU). Returns
    {passed, errors, warnings, opset, op_counts, qdq: {...}, [dla], [polygraphy]}. With `dla`, DLA's
    restrictions are checked too: batch <= 4096 and non-batch dimensions <= 8192 (errors: the
    engine could not be built for DLA), layers DLA cannot run (warnings: they fall back to GPU)."""
    path = Path(onnx_path)
    errors: list[str] = []
    warnings: list[str] = []
    try:
        proto = onnx.load(str(path))
        onnx.checker.check_model(proto)
    except Exception as exc:  # noqa: BLE001
        return {"passed": False, "errors": [f"{path}: not a valid ONNX model: {str(exc).splitlines()[0]}"],
                "warnings": [], "file": str(path)}

    opset = max((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), default=0)
    if opset < OPSET_OK[0] or opset > OPSET_TRT10:
        errors.append(f"opset {opset} outside the range TensorRT parses ({OPSET_OK[0]}..{OPSET_TRT10})")
    elif opset > OPSET_OK[1] and (tensorrt_version is None or int(str(tensorrt_version).split(".")[0]) < 10):
        warnings.append(f"opset {opset} needs TensorRT >= 10 (TensorRT 8.5/8.6 on JetPack 5 parse <= {OPSET_OK[1]})")

    nodes = _nodes(proto.graph)
    counts: dict[str, int] = {}
    for n in nodes:
        key = n.op_type if n.domain in ("", "ai.onnx") else f"{n.domain}::{n.op_type}"
        counts[key] = counts.get(key, 0) + 1
    unsupported = sorted(k for k in counts if k not in TRT_SUPPORTED_OPS)
    if unsupported:
        errors.append(f"ops not supported by TensorRT's ONNX parser: {', '.join(unsupported)}")

    region = _int8_region(proto)
    einsum = [n.name or n.output[0] for n in nodes if n.op_type == "Einsum"]
    einsum_int8 = [e for e in einsum if e in region]
    if einsum_int8:
        errors.append(f"Einsum in an INT8 (Q/DQ) region: {', '.join(einsum_int8)}; rewrite as MatMul/Reshape")
    elif einsum:
        warnings.append(f"Einsum present ({', '.join(einsum)}): slow in TensorRT and blocks INT8 fusion")

    consts = _const_arrays(proto)
    qdq_nodes = [n for n in proto.graph.node if n.op_type in QDQ]
    bad_zp, bad_type, asym = [], [], []
    for n in qdq_nodes:
        name = n.name or n.output[0]
        if len(n.input) < 3 or not n.input[2]:
            # no zero-point: int8 only if DQ input is int8 (Q defaults to uint8!)
            if n.op_type == "QuantizeLinear":
                bad_type.append(f"{name} (no zero-point: output defaults to uint8)")
            elif n.input[0] in consts and consts[n.input[0]].dtype != np.int8:
                bad_type.append(f"{name} ({consts[n.input[0]].dtype})")
            continue
        zp = consts.get(n.input[2])
        if zp is None:
            bad_zp.append(f"{name} (zero-point not a constant)")
            continue
        if zp.dtype != np.int8:
            bad_type.append(f"{name} ({zp.dtype})")
        if np.any(zp != 0):
            asym.append(f"{name} (zero-point {zp.ravel()[:4].tolist()})")
    if asym:
        errors.append(f"asymmetric Q/DQ (TensorRT explicit quantization needs zero-point 0): {_preview(asym)}")
    if bad_type:
        errors.append(f"Q/DQ with a non-int8 type (TensorRT takes int8 only): {_preview(bad_type)}")
    if bad_zp:
        errors.append(f"Q/DQ zero-point not constant: {_preview(bad_zp)}")

    inits = {i.name for i in proto.graph.initializer}
    for vi in [*(i for i in proto.graph.input if i.name not in inits), *proto.graph.output]:
        dims = vi.type.tensor_type.shape.dim
        for ax, d in enumerate(dims):
            if ax == 0:
                continue
            if not d.HasField("dim_value") or d.dim_value <= 0:
                errors.append(f"{vi.name}: axis {ax} is dynamic ({d.dim_param or '?'}); only the batch axis may be")

    dla_info = None
    if dla:
        dla_info = _lint_dla(proto, counts, batch_sizes or [], errors, warnings)

    result: dict[str, Any] = {
        "file": str(path),
        "passed": not errors,
        "errors": errors,
        "warnings": warnings,
        "opset": opset,
        "op_counts": dict(sorted(counts.items())),
        "qdq": {"nodes": len(qdq_nodes), "symmetric": not asym and not bad_zp, "int8": not bad_type},
    }
    if dla_info is not None:
        result["dla"] = dla_info
    if inspect:
        result["polygraphy"] = polygraphy_summary(path)
    return result


def _lint_dla(proto: onnx.ModelProto, counts: dict[str, int], batch_sizes: list[int], errors: list[str],
              warnings: list[str]) -> dict[str, Any]:
    """DLA restrictions (dla-layer-restrictions.html, "General Restrictions"): max batch 4096,
    non-batch dimensions <= 8192, no dynamic dimensions (the kit builds min = opt = max per batch),
    FP16/INT8 only (a TensorRT kit is never fp32). Ops DLA lacks run on the GPU with
    --allowGPUFallback; the device's build log says how many layers really ran where."""
    from edgeskel.quantize.tensorrt_routes import DLA_MAX_BATCH, DLA_MAX_DIM

    big = [b for b in batch_sizes if b > DLA_MAX_BATCH]
    if big:
        errors.append(f"DLA: batch sizes {big} exceed DLA's maximum batch {DLA_MAX_BATCH}")
    inits = {i.name for i in proto.graph.initializer}
    for vi in (i for i in proto.graph.input if i.name not in inits):
        dims = [d.dim_value for d in vi.type.tensor_type.shape.dim[1:]]
        if any(d > DLA_MAX_DIM for d in dims):
            errors.append(f"DLA: input {vi.name} has a dimension above {DLA_MAX_DIM} ({dims})")
    ignore = ("Constant", "Identity", "Cast")
    off = sorted(k for k in counts if k not in DLA_OPS and k not in ignore)
    eligible = sum(n for k, n in counts.items() if k in DLA_OPS)
    total = sum(n for k, n in counts.items() if k not in ignore)
    if off:
        warnings.append(f"not DLA-eligible, will fall back to GPU (--allowGPUFallback): {', '.join(off)}")
    if total and not eligible:
        warnings.append("DLA: no op of this graph can run on DLA; the DLA variant will run on the GPU")
    return {"eligible_ops": eligible, "total_ops": total, "gpu_fallback_ops": off,
            "static_shapes": True, "batch_sizes": list(batch_sizes)}


def _preview(items: list[str], n: int = 5) -> str:
    return ", ".join(items[:n]) + (f" (+{len(items) - n} more)" if len(items) > n else "")


def polygraphy_summary(path: Path) -> str:
    """`polygraphy inspect model` output (first lines); '' if polygraphy is unavailable."""
    exe = shutil.which("polygraphy") or str(Path(sys.executable).with_name("polygraphy"))
    if not Path(exe).exists():
        return ""
    try:
        res = subprocess.run([exe, "inspect", "model", str(path)], capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.SubprocessError):
        return ""
    text = res.stdout + (res.stderr if res.returncode else "")
    text = "\n".join(line for line in text.splitlines() if "'colored' module" not in line)
    return "\n".join(text.splitlines()[:40])


# ---- build kit -------------------------------------------------------------------------------
KIT_FORMAT = "edgeskel-tensorrt-kit/2"
KIT_MANIFEST = "tensorrt.json"


def _input_dims(proto: onnx.ModelProto) -> tuple[str, int | None, tuple[int, ...]]:
    inits = {i.name for i in proto.graph.initializer}
    inp = next(i for i in proto.graph.input if i.name not in inits)
    dims = inp.type.tensor_type.shape.dim
    d0 = dims[0].dim_value if dims[0].HasField("dim_value") and dims[0].dim_value > 0 else None
    return inp.name, d0, tuple(int(d.dim_value) for d in dims[1:])


def prepare_tensorrt(
    onnx_fp32: str | Path,
    out_dir: str | Path,
    precision: str = "fp16",
    qdq_onnx: str | Path | None = None,
    batch_sizes: list[int] | None = None,
    dla_core: int | None = None,
    allow_gpu_fallback: bool = True,
    workspace_mb: int = 1024,
    tensorrt_version: str | None = None,
    typing: str | None = None,
    fp16_ops: tuple[str, ...] | None = None,
) -> dict[str, Any]:
    """Write a TensorRT build kit to `out_dir` for the route of `tensorrt_version`/`typing`
    (see tensorrt_routes): model.onnx, build_engine.sh (one static-shape engine per batch size),
    tensorrt.json (what the script builds), run_engine.py + device_runner.py (inference), README.txt
    and lint.json. Returns {files, lint, route, engines, ...}. `fp16_ops` (strongly typed fp16
    only): the op types typed float16, every other op stays float32 (a step graph's state path:
    counters, masks and ring buffers must stay exact); with int8, the Q/DQ graph is kept as it is
    (quantized ops in INT8, the rest float32)."""
    from edgeskel.quantize.tensorrt_routes import (
        CALIB_CACHE,
        STRONG_QDQ_OPSET,
        calibration_cache_text,
        engine_files,
        fp16_typed,
        layer_precision_spec,
        make_route,
        strip_qdq,
        trtexec_args,
    )

    onnx_fp32, out_dir = Path(onnx_fp32), Path(out_dir)
    if precision not in ("fp16", "int8"):
        raise ExportError(f"{onnx_fp32}: TensorRT precision must be fp16 or int8, got {precision!r}")
    route = make_route(tensorrt_version, typing, dla=dla_core is not None)
    src = onnx_fp32
    if precision == "int8":
        if qdq_onnx is None:
            raise ExportError(f"{onnx_fp32}: TensorRT int8 needs a symmetric QDQ ONNX (quantize_ort_int8 first)")
        src = Path(qdq_onnx)
    if not src.is_file():
        raise ExportError(f"{src}: ONNX model not found")
    proto = onnx.load(str(src), load_external_data=False)
    input_name, fixed, chw = _input_dims(proto)
    if fixed is not None:
        engine_batches = [fixed]  # fixed-batch graph: trtexec takes the shape from the model
    else:
        engine_batches = sorted({int(b) for b in (batch_sizes or [1])})
        if engine_batches[0] < 1:
            raise ExportError(f"{src}: batch sizes must be >= 1, got {engine_batches}")
    out_dir.mkdir(parents=True, exist_ok=True)
    model = out_dir / "model.onnx"
    (out_dir / CALIB_CACHE).unlink(missing_ok=True)  # a cache only where this route reads one
    calibration, layer_precisions = None, None
    step_int8 = fp16_ops is not None and precision == "int8"  # a step graph's Q/DQ form: kept as it is (below)
    if route.typing == "strong" and not step_int8:
        fp16_typed(src, model, opset=STRONG_QDQ_OPSET if precision == "int8" else None,
                   fp16_ops=fp16_ops if precision == "fp16" else None)
    elif route.implicit_int8 and precision == "int8":
        # DLA INT8 on TensorRT 10.x: the Q/DQ graph's own scales as a calibration cache, on the
        # graph without its Q/DQ nodes (tensorrt_routes: the route NVIDIA documents for 10.x DLA).
        stripped = strip_qdq(src, model)
        if not stripped["scales"]:
            raise ExportError(f"{src}: no activation scales in the Q/DQ graph: nothing to calibrate DLA INT8 with")
        atomic_write_text(out_dir / CALIB_CACHE, calibration_cache_text(stripped["scales"], route.version))
        layer_precisions, unconstrained = layer_precision_spec(stripped["float_layers"])
        calibration = {"file": CALIB_CACHE, "header": (out_dir / CALIB_CACHE).read_text().splitlines()[0],
                       "tensors": len(stripped["scales"]), "inferred_across_shape_ops": stripped["inferred"],
                       "weights_dequantized": stripped["weights"],
                       "source": "QuantizeLinear scales of the symmetric Q/DQ graph (per-tensor activations)",
                       "fp16_layers": sorted(layer_precisions), "fp16_layers_unconstrained": unconstrained}
    else:
        atomic_write_bytes(model, src.read_bytes())
    lint = lint_tensorrt(model, dla=dla_core is not None, batch_sizes=engine_batches, tensorrt_version=route.version)
    if calibration is not None:
        _lint_calibration(model, calibration, lint)
    engines, script_lines = [], []
    for b in engine_batches:
        cmd = trtexec_args(route, precision, model.name, b, chw, input_name, dla_core, allow_gpu_fallback, workspace_mb,
                           shape_flags=fixed is None, layer_precisions=layer_precisions)
        names = engine_files(b)
        engines.append({"batch": b, **names, "static": True, "trtexec": cmd})
        script_lines.append(f"run_trtexec {shlex.quote(names['log'])} {shlex.quote(names['engine'])} \\\n  "
                            + " \\\n  ".join(shlex.quote(c) for c in cmd[1:]))
    pre = _CALIB_SH.format(cache=CALIB_CACHE) if calibration is not None else ""
    atomic_write_text(out_dir / "build_engine.sh", _BUILD_SH.format(
        route=route.describe(precision), pre=pre, cmds="\n".join(script_lines)))
    (out_dir / "build_engine.sh").chmod(0o755)
    quantization = None if precision != "int8" else ("implicit" if calibration is not None else "explicit")
    manifest = {"format": KIT_FORMAT, "precision": precision, "route": route.name, "typing": route.typing,
                "tensorrt_version": route.version, "input_name": input_name, "sample_shape": list(chw),
                "dla_core": dla_core, "allow_gpu_fallback": allow_gpu_fallback if dla_core is not None else None,
                "workspace_mb": workspace_mb, "engines": engines, "onnx_sha256": sha256_file(model),
                "quantization": quantization}
    if calibration is not None:
        manifest["calibration"] = calibration
    atomic_write_json(out_dir / KIT_MANIFEST, manifest)
    shutil.copy2(Path(__file__).resolve().parents[1] / "remote" / "device_runner.py", out_dir / "device_runner.py")
    atomic_write_text(out_dir / "run_engine.py", _RUN_PY)
    largest = engines[-1]["engine"]
    quant_note = {None: "", "explicit": _README_EXPLICIT, "implicit": _README_IMPLICIT.format(cache=CALIB_CACHE)}
    atomic_write_text(out_dir / "README.txt", _README.format(
        precision=precision, route=route.describe(precision), input=input_name, chw="x".join(map(str, chw)),
        engines=", ".join(f"{e['engine']} (batch {e['batch']})" for e in engines), dla=dla_core,
        cmd=" ".join(engines[-1]["trtexec"]), largest=largest, quantization=quant_note[quantization],
        calib=f"  {CALIB_CACHE}      INT8 calibration cache (scales of the Q/DQ graph) read by --calib\n"
        if calibration is not None else ""))
    atomic_write_json(out_dir / "lint.json", lint)
    files = ["model.onnx", "build_engine.sh", KIT_MANIFEST, "run_engine.py", "device_runner.py", "README.txt",
             "lint.json"] + ([CALIB_CACHE] if calibration is not None else [])
    return {
        "precision": precision,
        "route": route.name,
        "typing": route.typing,
        "tensorrt_version": route.version,
        "quantization": quantization,
        **({"calibration": calibration} if calibration is not None else {}),
        "source_onnx": str(src),
        "onnx": str(model),
        "onnx_sha256": manifest["onnx_sha256"],
        "engines": {str(e["batch"]): e["engine"] for e in engines},
        "engine": largest,
        "batch_sizes": engine_batches,
        "dla_core": dla_core,
        "workspace_mb": workspace_mb,
        "trtexec": [e["trtexec"] for e in engines],
        "files": files,
        "lint": lint,
    }


def _lint_calibration(model: Path, calibration: dict[str, Any], lint: dict[str, Any]) -> None:
    """How much of the DLA INT8 graph the calibration cache covers: TensorRT runs a layer in
    implicit INT8 only when its input and output tensors have scales; the others run in FP16
    ("If you do not have scaling factors, those layers are run in FP16", NVIDIA's DLA FAQ)."""
    from edgeskel.quantize.tensorrt_routes import CALIB_CACHE, WEIGHTED_OPS, parse_calibration_cache

    _, scales = parse_calibration_cache((model.parent / CALIB_CACHE).read_text())
    proto = onnx.load(str(model), load_external_data=False)
    inits = {i.name for i in proto.graph.initializer}
    weighted = [n for n in proto.graph.node if n.op_type in WEIGHTED_OPS]
    covered = [n for n in weighted if n.input[0] in scales and n.output[0] in scales
               and (n.op_type != "MatMul" or n.input[1] in inits or n.input[1] in scales)]
    missing = [n.name or n.output[0] for n in weighted if n not in covered]
    calibration["int8_candidates"] = {"weighted_layers": len(weighted), "with_scales": len(covered)}
    lint["calibration"] = {"cache": CALIB_CACHE, "tensors": len(scales), **calibration["int8_candidates"]}
    if weighted and not covered:
        lint["warnings"].append(f"{CALIB_CACHE}: no Conv/Gemm/MatMul has scales on both sides; DLA runs them in FP16")
    elif missing:
        lint["warnings"].append(f"{CALIB_CACHE}: {len(missing)} weighted layers without scales on both sides run in "
                                f"FP16: {_preview(missing)}")


def read_kit(kit_dir: str | Path) -> dict[str, Any]:
    """tensorrt.json of a build kit (what build_engine.sh builds)."""
    path = Path(kit_dir) / KIT_MANIFEST
    if not path.is_file():
        raise ExportError(f"{path}: not a TensorRT build kit (tensorrt.json missing; re-export the variant)")
    return json.loads(path.read_text())


def build_engine_local(kit_dir: str | Path, timeout: int = 1800) -> dict[str, Any]:
    """Run build_engine.sh here if trtexec (or tensorrt) and an NVIDIA GPU exist, else skip."""
    from edgeskel.runtime.tensorrt import gpu_unavailable_reason, trtexec_path

    kit_dir = Path(kit_dir)
    reason = gpu_unavailable_reason()
    trtexec = trtexec_path()
    if reason is None and trtexec is None:
        reason = "trtexec not found on PATH"
    if reason:
        return {"status": "skipped", "reason": f"no NVIDIA GPU/TensorRT on this machine: {reason}"}
    env_path = f"{trtexec.parent}:" if trtexec else ""
    try:
        res = subprocess.run(["bash", "build_engine.sh"], cwd=kit_dir, capture_output=True, text=True, timeout=timeout,
                             env={**os.environ, "PATH": env_path + os.environ.get("PATH", "")})
    except subprocess.TimeoutExpired:
        return {"status": "failed", "reason": f"trtexec timed out after {timeout} s"}
    (kit_dir / "build.log").write_text(res.stdout + res.stderr)
    engines = {str(e["batch"]): kit_dir / e["engine"] for e in read_kit(kit_dir)["engines"]}
    missing = [p.name for p in engines.values() if not p.is_file()]
    if res.returncode != 0 or missing:
        tail = (res.stdout + res.stderr).strip().splitlines()[-5:]
        return {"status": "failed", "reason": f"build_engine.sh exited {res.returncode}"
                + (f" without writing {', '.join(missing)}" if missing else "") + ": " + " | ".join(tail)}
    largest = max(engines, key=int)
    return {"status": "built", "engine": str(engines[largest]), "engines": {k: str(v) for k, v in engines.items()},
            "log": str(kit_dir / "build.log")}


_BUILD_SH = """#!/usr/bin/env bash
# Build the TensorRT engines ON THE TARGET DEVICE (engines are GPU- and TensorRT-version specific):
# one static-shape engine per measured batch size. Route: {route}.
# Needs trtexec (JetPack: /usr/src/tensorrt/bin/trtexec). Written by edgeskel.
set -euo pipefail
cd "$(dirname "$0")"
TRTEXEC="$(command -v trtexec || true)"
if [ -z "$TRTEXEC" ]; then
  if [ -x /usr/src/tensorrt/bin/trtexec ]; then TRTEXEC=/usr/src/tensorrt/bin/trtexec;
  else echo "error: trtexec not found (install TensorRT / JetPack)" >&2; exit 2; fi
fi
# run_trtexec LOG ENGINE ARGS...: trtexec's output goes to LOG (it lists the layers placed on
# DLA and GPU); a failed build, or one that wrote no ENGINE, stops the script with the log's tail.
run_trtexec() {{
  local log="$1" engine="$2"; shift 2
  rm -f "$engine"
  if ! "$TRTEXEC" "$@" >"$log" 2>&1; then
    echo "error: trtexec failed for $engine (log: $log):" >&2; tail -n 20 "$log" >&2; exit 1
  fi
  if [ ! -s "$engine" ]; then
    echo "error: trtexec exited 0 but wrote no $engine (log: $log)" >&2; tail -n 5 "$log" >&2; exit 1
  fi
  echo "built $engine"
}}
{pre}{cmds}
"""

# DLA INT8 on TensorRT 10.x: the cache's header names a TensorRT version (NV_TENSORRT_VERSION), and
# a cache headed by another version was refused by TensorRT 10.x in a field report (it then tries to
# recalibrate, and trtexec has no calibration data; docs/TENSORRT.md). The scales come from the Q/DQ
# graph, not from a TensorRT calibration run, so they hold for any 10.x: the header follows the
# trtexec found here (its log tag "[TensorRT v100300]").
_CALIB_SH = """# {cache}: INT8 scales of the Q/DQ graph (implicit quantization, the DLA INT8 input of TensorRT 10.x).
TRT_V="$("$TRTEXEC" --help 2>&1 | sed -n 's/.*\\[TensorRT v\\([0-9][0-9]*\\)\\].*/\\1/p' | head -n 1)" || true
if [ -n "$TRT_V" ] && ! head -n 1 {cache} | grep -q "^TRT-$TRT_V-"; then
  echo "note: {cache} header set to TensorRT v$TRT_V (was: $(head -n 1 {cache}))"
  {{ printf 'TRT-%s-EntropyCalibration2\\n' "$TRT_V"; tail -n +2 {cache}; }} > {cache}.tmp && mv {cache}.tmp {cache}
fi
"""

_RUN_PY = '''#!/usr/bin/env python3
"""Run a TensorRT engine on .npy inputs and save the logits as .npy (standalone; written by edgeskel).

usage: python3 run_engine.py model.b16.engine input.npy logits.npy
input.npy: float32 (N, C, T, V, M), any N: the inputs are split into batches of the engine's
profile size (and the last batch padded), so N need not match the batch the engine was built for.
Needs an NVIDIA GPU, tensorrt (JetPack) and cuda-python; uses device_runner.py next to this file.
"""
import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from device_runner import TensorRTInfer  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("engine")
    ap.add_argument("inputs")
    ap.add_argument("output")
    ap.add_argument("--dla-core", type=int, default=None, help="DLA core the engine was built for")
    a = ap.parse_args()
    x = np.ascontiguousarray(np.load(a.inputs), dtype=np.float32)
    if x.ndim != 5:
        sys.exit(f"error: {a.inputs}: expected (N, C, T, V, M), got {x.shape}")
    try:
        infer = TensorRTInfer(Path(a.engine), "fp16", None, {"dla_core": a.dla_core})
    except ImportError as exc:
        sys.exit(f"error: needs tensorrt and cuda-python: {exc}")
    except RuntimeError as exc:
        sys.exit(f"error: {exc}")
    out = infer(x)
    np.save(a.output, out)
    print(f"wrote {a.output}: {out.shape} (engine batch {infer.max_batch})")


if __name__ == "__main__":
    main()
'''

_README = """edgeskel TensorRT build kit ({precision})

Route: {route}

Files
  model.onnx       ONNX to build (input "{input}": N x {chw} float32, output "logits")
{calib}  build_engine.sh  builds {engines} with trtexec (run it on the target device)
  tensorrt.json    what build_engine.sh builds (engines, shapes, DLA core, TensorRT version)
  run_engine.py    runs an engine on a .npy batch and writes logits .npy (uses device_runner.py)
  lint.json        static TensorRT-readiness check done at export time

Build (on the device, e.g. a Jetson with JetPack):
  ./build_engine.sh
  -> {cmd}
Each engine has static shapes (min = opt = max = its batch): tuned for the batch it is measured
at, and what DLA requires. DLA core: {dla}. build.b<N>.log lists the layers TensorRT placed on DLA
and GPU; layers.b<N>.json is trtexec's layer info. The timing cache (timing.cache) makes rebuilds
fast; delete it after a TensorRT upgrade.

Run:
  python3 run_engine.py {largest} inputs.npy logits.npy
{quantization}"""
_README_EXPLICIT = """This INT8 kit uses explicit quantization: the Q/DQ scales inside model.onnx are used, no
calibration cache is needed.
"""
_README_IMPLICIT = """This INT8 kit is for DLA on TensorRT 10.x, which takes INT8 from calibration scales (implicit
quantization), not from Q/DQ nodes: model.onnx is the Q/DQ graph without its Q/DQ nodes, and
{cache} holds the Q/DQ graph's activation scales; trtexec reads it with --int8 --fp16 --calib
(no calibration data needed). Layers without scales run in FP16.
"""
