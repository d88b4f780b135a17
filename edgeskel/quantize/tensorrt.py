"""TensorRT build kits: a TensorRT-ready ONNX + trtexec script + standalone runner, and a lint.

TensorRT engines are GPU- and version-specific, so they are built *on the device* (Jetson);
here we prepare and check everything that can be checked without a GPU (TOOLCHAIN.md):
- the graph: only ops TensorRT's ONNX parser supports, no Einsum, symmetric int8 Q/DQ
  (explicit quantization needs zero-point 0), only the batch axis dynamic, opset in range;
- the scripts: `build_engine.sh` (trtexec with min/opt/max shape profile, --fp16 / --int8,
  timing cache, optional DLA) and `run_engine.py` (TensorRT via Polygraphy, numpy in/out).
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
# Ops that DLA (Jetson Xavier/Orin deep-learning accelerator) runs; others fall back to GPU.
DLA_OPS = frozenset("Conv ConvTranspose BatchNormalization Relu LeakyRelu Sigmoid Tanh Clip PRelu MaxPool "
                    "AveragePool GlobalAveragePool Add Sub Mul Max Min Concat Resize Softmax "
                    "QuantizeLinear DequantizeLinear Reshape Transpose Gemm MatMul".split())
QDQ = ("QuantizeLinear", "DequantizeLinear")


def _nodes(graph: onnx.GraphProto):
    from edgeskel.export.onnx import iter_nodes

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


def lint_tensorrt(onnx_path: str | Path, dla: bool = False, inspect: bool = False) -> dict[str, Any]:
    """Static TensorRT-readiness check (runs anywhere, no GPU). Returns
    {passed, errors, warnings, opset, op_counts, qdq: {...}, [polygraphy]}."""
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
    elif opset > OPSET_OK[1]:
        warnings.append(f"opset {opset} needs TensorRT >= 10 (TensorRT 8.5/8.6 on JetPack 5/6 parse <= {OPSET_OK[1]})")

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

    if dla:
        off = sorted(k for k in counts if k not in DLA_OPS and k not in ("Constant", "Identity"))
        if off:
            warnings.append(f"not DLA-eligible, will fall back to GPU (--allowGPUFallback): {', '.join(off)}")

    result: dict[str, Any] = {
        "file": str(path),
        "passed": not errors,
        "errors": errors,
        "warnings": warnings,
        "opset": opset,
        "op_counts": dict(sorted(counts.items())),
        "qdq": {"nodes": len(qdq_nodes), "symmetric": not asym and not bad_zp, "int8": not bad_type},
    }
    if inspect:
        result["polygraphy"] = polygraphy_summary(path)
    return result


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
def _shape_arg(n: int, chw: tuple[int, ...], name: str = "skeleton") -> str:
    return f"{name}:" + "x".join(str(d) for d in (n, *chw))


def _input_dims(proto: onnx.ModelProto) -> tuple[str, int | None, tuple[int, ...]]:
    inits = {i.name for i in proto.graph.initializer}
    inp = next(i for i in proto.graph.input if i.name not in inits)
    dims = inp.type.tensor_type.shape.dim
    d0 = dims[0].dim_value if dims[0].HasField("dim_value") and dims[0].dim_value > 0 else None
    return inp.name, d0, tuple(int(d.dim_value) for d in dims[1:])


def trtexec_command(onnx_name: str, engine_name: str, precision: str, shapes: dict[str, int] | None,
                    chw: tuple[int, ...], input_name: str, dla_core: int | None, workspace_mb: int,
                    timing_cache: str = "timing.cache") -> list[str]:
    cmd = ["trtexec", f"--onnx={onnx_name}", f"--saveEngine={engine_name}", f"--timingCacheFile={timing_cache}"]
    if shapes:
        for key, flag in (("min", "--minShapes"), ("opt", "--optShapes"), ("max", "--maxShapes")):
            cmd.append(f"{flag}={_shape_arg(shapes[key], chw, input_name)}")
    if precision == "fp16":
        cmd.append("--fp16")
    elif precision == "int8":
        cmd += ["--int8", "--fp16"]  # explicit Q/DQ int8; fp16 for the layers left in float
    cmd.append(f"--memPoolSize=workspace:{int(workspace_mb)}M")
    if dla_core is not None:
        cmd += [f"--useDLACore={int(dla_core)}", "--allowGPUFallback"]
    return cmd


def prepare_tensorrt(
    onnx_fp32: str | Path,
    out_dir: str | Path,
    precision: str = "fp16",
    qdq_onnx: str | Path | None = None,
    shapes: dict[str, int] | None = None,
    dla_core: int | None = None,
    workspace_mb: int = 1024,
) -> dict[str, Any]:
    """Write a TensorRT build kit to `out_dir`: model.onnx (fp32 graph for --fp16, the
    symmetric QDQ graph for INT8 explicit quantization), build_engine.sh, run_engine.py,
    README.txt and lint.json. Returns {files, lint, trtexec, shapes, precision}."""
    onnx_fp32, out_dir = Path(onnx_fp32), Path(out_dir)
    if precision not in ("fp16", "int8"):
        raise ExportError(f"{onnx_fp32}: TensorRT precision must be fp16 or int8, got {precision!r}")
    src = onnx_fp32
    if precision == "int8":
        if qdq_onnx is None:
            raise ExportError(f"{onnx_fp32}: TensorRT int8 needs a symmetric QDQ ONNX (quantize_ort_int8 first)")
        src = Path(qdq_onnx)
    if not src.is_file():
        raise ExportError(f"{src}: ONNX model not found")
    proto = onnx.load(str(src), load_external_data=False)
    input_name, fixed, chw = _input_dims(proto)
    if fixed is None:
        shapes = dict(shapes or {"min": 1, "opt": 1, "max": 8})
        if not all(k in shapes for k in ("min", "opt", "max")) or not (1 <= shapes["min"] <= shapes["opt"] <= shapes["max"]):
            raise ExportError(f"{src}: shapes must give 1 <= min <= opt <= max batch, got {shapes}")
    else:
        shapes = None  # static graph: trtexec takes the shape from the model
    out_dir.mkdir(parents=True, exist_ok=True)
    model_name, engine_name = "model.onnx", f"model.{precision}.engine"
    atomic_write_bytes(out_dir / model_name, src.read_bytes())
    lint = lint_tensorrt(out_dir / model_name, dla=dla_core is not None)
    cmd = trtexec_command(model_name, engine_name, precision, shapes, chw, input_name, dla_core, workspace_mb)
    atomic_write_text(out_dir / "build_engine.sh", _BUILD_SH.format(cmd=" \\\n  ".join(shlex.quote(c) for c in cmd)))
    (out_dir / "build_engine.sh").chmod(0o755)
    atomic_write_text(out_dir / "run_engine.py", _RUN_PY.replace("@INPUT@", input_name))
    atomic_write_text(out_dir / "README.txt", _README.format(
        precision=precision, engine=engine_name, shapes=json.dumps(shapes), dla=dla_core,
        input=input_name, chw="x".join(map(str, chw)), cmd=" ".join(cmd)))
    atomic_write_json(out_dir / "lint.json", lint)
    files = ["model.onnx", "build_engine.sh", "run_engine.py", "README.txt", "lint.json"]
    return {
        "precision": precision,
        "source_onnx": str(src),
        "onnx": str(out_dir / model_name),
        "onnx_sha256": sha256_file(out_dir / model_name),
        "engine": engine_name,
        "shapes": shapes,
        "dla_core": dla_core,
        "workspace_mb": workspace_mb,
        "trtexec": cmd,
        "files": files,
        "lint": lint,
    }


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
    if res.returncode != 0:
        tail = (res.stdout + res.stderr).strip().splitlines()[-5:]
        return {"status": "failed", "reason": f"trtexec exited {res.returncode}: " + " | ".join(tail)}
    engines = sorted(kit_dir.glob("*.engine"))
    return {"status": "built", "engine": str(engines[-1]) if engines else None, "log": str(kit_dir / "build.log")}


_BUILD_SH = """#!/usr/bin/env bash
# Build the TensorRT engine ON THE TARGET DEVICE (engines are GPU- and TensorRT-version specific).
# Needs trtexec (JetPack: /usr/src/tensorrt/bin/trtexec). Written by edgeskel.
set -euo pipefail
cd "$(dirname "$0")"
if ! command -v trtexec >/dev/null 2>&1; then
  if [ -x /usr/src/tensorrt/bin/trtexec ]; then export PATH="/usr/src/tensorrt/bin:$PATH";
  else echo "error: trtexec not found (install TensorRT / JetPack)" >&2; exit 2; fi
fi
{cmd}
"""

_RUN_PY = '''#!/usr/bin/env python3
"""Run a TensorRT engine on .npy inputs and save the logits as .npy (standalone; written by edgeskel).

usage: python3 run_engine.py model.fp16.engine input.npy logits.npy [--max-batch N]
input.npy: float32 (N, C, T, V, M). Needs an NVIDIA GPU, tensorrt and polygraphy
(`pip install polygraphy`); TensorRT itself comes with JetPack / the TensorRT install.
"""
import argparse
import os
import sys

import numpy as np


def gpu_present():
    if any(os.path.exists(p) for p in ("/dev/nvidia0", "/dev/nvhost-ctrl-gpu", "/dev/nvgpu/igpu0/ctrl")):
        return True
    import shutil
    import subprocess
    smi = shutil.which("nvidia-smi")
    return bool(smi) and "GPU" in subprocess.run([smi, "-L"], capture_output=True, text=True).stdout


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("engine")
    ap.add_argument("inputs")
    ap.add_argument("output")
    ap.add_argument("--max-batch", type=int, default=0, help="split inputs into chunks of this size")
    a = ap.parse_args()
    if not gpu_present():
        sys.exit("error: no NVIDIA GPU found: TensorRT engines run only on an NVIDIA GPU (e.g. the Jetson)")
    try:
        import tensorrt  # noqa: F401
        from polygraphy.backend.trt import EngineFromBytes, TrtRunner
    except ImportError as exc:
        sys.exit(f"error: needs tensorrt and polygraphy: {exc}")
    x = np.ascontiguousarray(np.load(a.inputs), dtype=np.float32)
    if x.ndim != 5:
        sys.exit(f"error: {a.inputs}: expected (N, C, T, V, M), got {x.shape}")
    with open(a.engine, "rb") as fh:
        engine = EngineFromBytes(fh.read())
    step = a.max_batch or len(x)
    outs = []
    with TrtRunner(engine) as runner:
        for i in range(0, len(x), step):
            res = runner.infer({"@INPUT@": x[i : i + step]})
            outs.append(np.asarray(next(iter(res.values())), dtype=np.float32))
    np.save(a.output, np.concatenate(outs))
    print(f"wrote {a.output}: {np.concatenate(outs).shape}")


if __name__ == "__main__":
    main()
'''

_README = """edgeskel TensorRT build kit ({precision})

Files
  model.onnx       TensorRT-ready ONNX (input "{input}": N x {chw} float32, output "logits")
  build_engine.sh  builds {engine} with trtexec (run it on the target device)
  run_engine.py    runs the engine on a .npy batch and writes logits .npy
  lint.json        static TensorRT-readiness check done at export time

Build (on the device, e.g. a Jetson with JetPack):
  ./build_engine.sh
  -> {cmd}
Batch profile (min/opt/max): {shapes}; DLA core: {dla}
The timing cache (timing.cache) makes rebuilds fast; delete it after a TensorRT upgrade.

Run:
  python3 run_engine.py {engine} inputs.npy logits.npy
INT8 kits use explicit quantization: the Q/DQ scales inside model.onnx are used, no
calibration cache is needed; --fp16 lets non-quantized layers run in half precision.
"""
