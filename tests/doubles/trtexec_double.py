#!/usr/bin/env python3
"""CONTRACT DOUBLE of NVIDIA's `trtexec` (TensorRT 10.x or 11.x) for the tests. NOT TensorRT.

It accepts only `--flag` / `--flag=value` options that trtexec of the version it stands for
documents (a subset: the build options edgeskel uses plus common ones), rejects the rest as
"Unknown option", enforces the documented rules below, and writes an "engine" where
`--saveEngine` says: a double engine (tests/doubles/tensorrt_double/_double_engine.py) that
embeds the ONNX, which the tensorrt runtime double runs with ONNX Runtime. It proves edgeskel's
build scripts and runner keep the contract; it proves nothing about TensorRT's numbers or speed.

Version: TRTEXEC_DOUBLE_VERSION (default 10.3.0). Rules, from NVIDIA's docs:
- TensorRT 11 removed the precision flags --fp16 --int8 --bf16 --fp8 --int4 --best and --calib;
  every network is strongly typed, --stronglyTyped is accepted and has no effect (TensorRT 10.x ->
  11.x trtexec migration guide).
- TensorRT 10 strongly typed networks take their precision from the ONNX tensor types and refuse
  the precision builder flags: --stronglyTyped with --fp16/--int8/... is an error here.
- INT8 scales (TensorRT 10.x, weakly typed): from Q/DQ nodes (explicit quantization) or from a
  calibration cache, --calib=FILE (implicit). The cache must be TensorRT's text format: header
  "TRT-<NV_TENSORRT_VERSION>-EntropyCalibration2" naming THIS version (trtexec's calibrator is an
  IInt8EntropyCalibrator2; a field report has TensorRT 10.x refusing a cache headed 8600), then
  "tensor: <8 hex digits of the float32 scale>" lines (trtexec's readScalesFromCalibrationCache).
  A layer runs INT8 only where its input and output tensors have scales, else FP16 with --fp16.
  --int8 on a network without Q/DQ and without --calib is refused HERE (stricter than trtexec, which
  builds with placeholder ranges: it "does not provide calibration capability"), so no kit can
  ship an INT8 engine with meaningless scales.
- DLA INT8 on TensorRT 10.x (docs/TENSORRT.md, "DLA INT8"): NVIDIA documents it through
  calibration scales only (IInt8EntropyCalibrator2 "is the required calibrator for DLA"; NVIDIA's
  DLA QDQ Translator strips Q/DQ graphs into a calibration cache for Jetson Orin / JetPack 6), and
  trtexec 10.x sets kFP16 / kPREFER_PRECISION_CONSTRAINTS on every DLA build. So with --useDLACore
  on 10.x this double refuses --stronglyTyped, and refuses Q/DQ networks before 10.11 (the first
  10.x whose ONNX parser has a DLA quantization flag, kENABLE_UINT8_AND_ASYMMETRIC_QUANTIZATION_DLA).
  Strongly typed DLA (Q/DQ or fp16-typed ONNX, no precision flags) is TensorRT 11.4.1's route.
- Shapes: --minShapes/--optShapes/--maxShapes=name:AxBxC, min <= opt <= max per axis, matching the
  ONNX input's rank and static axes; dynamic inputs without shapes are built for batch 1.
- DLA (--useDLACore=N [--allowGPUFallback]): only FP16/INT8 layers of the types DLA supports,
  only static shapes (min = opt = max); other layers fall back to the GPU when --allowGPUFallback
  is given, else the build fails (DLA Supported Layers and Restrictions). TensorRT 11.0-11.3 have
  no DLA on Jetson (DLA returns in 11.4.1 on AGX Orin with JetPack >= 7.2.2).
- The build log lists the layers as "---------- Layers Running on DLA/GPU ----------" sections
  with "[DlaLayer]" / "[GpuLayer]" lines; consecutive DLA layers form one {ForeignNode[...]}.
- --exportLayerInfo=FILE writes a JSON layer list (with --profilingVerbosity=detailed).
"""

from __future__ import annotations

import json
import math
import os
import re
import struct
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "tensorrt_double"))
from _double_engine import major_minor, write_engine  # noqa: E402

VERSION = os.environ.get("TRTEXEC_DOUBLE_VERSION", "10.3.0")
VALUE = {"--onnx", "--saveEngine", "--loadEngine", "--minShapes", "--optShapes", "--maxShapes", "--shapes",
         "--memPoolSize", "--timingCacheFile", "--useDLACore", "--exportLayerInfo", "--profilingVerbosity",
         "--iterations", "--duration", "--warmUp", "--avgRuns", "--exportProfile", "--exportTimes",
         "--builderOptimizationLevel", "--device"}
FLAG = {"--allowGPUFallback", "--stronglyTyped", "--skipInference", "--verbose", "--noDataTransfers",
        "--useCudaGraph", "--separateProfileRun", "--dumpLayerInfo", "--dumpProfile", "--help"}
PRECISION_FLAGS = {"--fp16", "--int8", "--bf16", "--fp8", "--int4", "--best"}  # removed in TensorRT 11
# ONNX ops whose layers DLA runs (DLA Supported Layers and Restrictions; FP16/INT8 only).
DLA_OPS = {"Conv", "ConvTranspose", "BatchNormalization", "Relu", "LeakyRelu", "Sigmoid", "Tanh", "Clip", "PRelu",
           "MaxPool", "AveragePool", "GlobalAveragePool", "Add", "Sub", "Mul", "Max", "Min", "Concat", "Resize",
           "Softmax", "Gemm", "MatMul"}
FUSED = {"Constant", "Identity", "QuantizeLinear", "DequantizeLinear", "Cast"}
TAG = f"[TensorRT v{''.join(f'{int(p):02d}' for p in (VERSION.split('.') + ['0', '0'])[:3])}] [contract double]"


class Fail(Exception):
    pass


def log(msg: str, level: str = "I") -> None:
    print(f"[{level}] {msg}", flush=True)


WEAK_ONLY = {"--calib", "--precisionConstraints", "--layerPrecisions"}  # removed in TensorRT 11 with the precision flags
LAYER_PRECISIONS = {"fp32", "fp16", "bf16", "int32", "int64", "int8", "fp8", "int4"}


def version_int(version: str) -> int:
    """NV_TENSORRT_VERSION: major*10000 + minor*100 + patch from TensorRT 10 (8.6.0 was 8600)."""
    parts = [int(p) for p in (version.split(".") + ["0", "0"])[:3]]
    return parts[0] * (10000 if parts[0] >= 10 else 1000) + parts[1] * 100 + parts[2]


def read_calibration_cache(path: Path) -> dict[str, float]:
    """TensorRT's calibration cache text format, checked as this version would read it."""
    if not path.is_file():
        raise Fail(f"[TRT] Can not open provided calibration cache file {path}")
    lines = path.read_text().splitlines()
    want = f"TRT-{version_int(VERSION)}-EntropyCalibration2"
    head = lines[0] if lines else ""
    m = re.fullmatch(r"TRT-(\d+)-(\w+)", head)
    if not m or m.group(2) != "EntropyCalibration2":
        raise Fail(f"[TRT] Calibration table does not match calibrator algorithm type: header {head!r} "
                   f"(trtexec calibrates with IInt8EntropyCalibrator2: {want!r})")
    if head != want:
        raise Fail(f"[TRT] calibration cache {path.name} is for TensorRT v{m.group(1)}, this is v{version_int(VERSION)}: "
                   f"TensorRT would recalibrate, and trtexec has no calibration data")
    scales = {}
    for line in lines[1:]:
        name, sep, hexval = line.rpartition(": ")
        if not sep or not re.fullmatch(r"[0-9a-fA-F]{8}", hexval):
            raise Fail(f"[TRT] malformed calibration cache line {line!r} (expected 'tensor: <8 hex digits>')")
        scale = struct.unpack(">f", bytes.fromhex(hexval))[0]
        if not (math.isfinite(scale) and scale > 0):
            raise Fail(f"[TRT] calibration cache: tensor {name!r} has scale {scale}")
        scales[name] = scale
    return scales


def parse(argv: list[str]) -> dict[str, str | bool]:
    major = major_minor(VERSION)[0]
    value = VALUE | (WEAK_ONLY if major < 11 else set())
    flags = FLAG | (PRECISION_FLAGS if major < 11 else set())
    opts: dict[str, str | bool] = {}
    for arg in argv:
        key, eq, val = arg.partition("=")
        if key in value and eq and val:
            opts[key] = val
        elif key in flags and not eq:
            opts[key] = True
        else:
            raise Fail(f"Unknown option: {arg}" + (" (TensorRT 11 removed the precision flags: every network is "
                                                   "strongly typed)" if key in PRECISION_FLAGS | WEAK_ONLY else ""))
    return opts


def shapes(opts: dict, key: str) -> dict[str, tuple[int, ...]]:
    out = {}
    for spec in str(opts.get(key, "")).split(",") if key in opts else []:
        name, _, dims = spec.rpartition(":")
        try:
            out[name] = tuple(int(d) for d in dims.split("x"))
        except ValueError:
            raise Fail(f"Invalid shape spec for {key}: {spec}") from None
    return out


def build(opts: dict) -> int:
    import onnx
    from onnx import TensorProto

    major, minor = major_minor(VERSION)
    if "--onnx" not in opts:
        raise Fail("no model given (--onnx)")
    onnx_path = Path(str(opts["--onnx"]))
    try:
        proto = onnx.load(str(onnx_path))
        onnx.checker.check_model(proto)
    except Exception as exc:  # noqa: BLE001
        raise Fail(f"[TRT] ModelImporter: failed to parse ONNX model {onnx_path}: {str(exc).splitlines()[0]}") from None
    strong = major >= 11 or bool(opts.get("--stronglyTyped"))
    prec = sorted(k for k in PRECISION_FLAGS if opts.get(k))
    if strong and prec:
        raise Fail(f"Invalid usage: precision flags {prec} cannot be combined with a strongly typed network "
                   f"(precision comes from the ONNX tensor types)")
    if "--memPoolSize" in opts:
        pool, _, size = str(opts["--memPoolSize"]).partition(":")
        if pool not in ("workspace", "dlaSRAM", "dlaLocalDRAM", "dlaGlobalDRAM", "tacticSharedMem") or not size.rstrip("KMG").isdigit():
            raise Fail(f"Invalid --memPoolSize: {opts['--memPoolSize']}")
    inits = {i.name for i in proto.graph.initializer}
    inputs = [i for i in proto.graph.input if i.name not in inits]
    mins, opts_, maxs = shapes(opts, "--minShapes"), shapes(opts, "--optShapes"), shapes(opts, "--maxShapes")
    profile = {}
    for inp in inputs:
        dims = [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else -1 for d in inp.type.tensor_type.shape.dim]
        given = [s.get(inp.name) for s in (mins, opts_, maxs)]
        if all(g is None for g in given):
            if -1 in dims:
                fixed = tuple(1 if d == -1 else d for d in dims)
                log(f"Dynamic dimensions required for input: {inp.name}, but no shapes were provided. "
                    f"Automatically overriding shape to: {'x'.join(map(str, fixed))}", "W")
                profile[inp.name] = {"min": fixed, "opt": fixed, "max": fixed}
            continue
        if any(g is None for g in given):
            raise Fail(f"{inp.name}: give --minShapes, --optShapes and --maxShapes together")
        for g in given:
            if len(g) != len(dims) or any(d != -1 and d != v for d, v in zip(dims, g, strict=False)):
                raise Fail(f"{inp.name}: shape {'x'.join(map(str, g))} does not match the model input {dims}")
        lo, op, hi = given
        if not all(a <= b <= c for a, b, c in zip(lo, op, hi, strict=False)):
            raise Fail(f"{inp.name}: profile must satisfy min <= opt <= max, got {lo} {op} {hi}")
        profile[inp.name] = {"min": lo, "opt": op, "max": hi}
    for name in (set(mins) | set(opts_) | set(maxs)) - {i.name for i in inputs}:
        raise Fail(f"Cannot find input tensor with name \"{name}\" in the network inputs")

    has_qdq = any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in proto.graph.node)
    dla = opts.get("--useDLACore")
    fallback = bool(opts.get("--allowGPUFallback"))
    if dla is not None:
        if not str(dla).isdigit():
            raise Fail(f"Invalid --useDLACore value: {dla}")
        if major == 11 and (major, minor) < (11, 4):
            raise Fail(f"DLA is not supported in TensorRT {VERSION} (it returns in 11.4.1 on Jetson AGX Orin, JetPack >= 7.2.2)")
        if major < 11 and strong:
            raise Fail(f"DLA on TensorRT {VERSION}: strongly typed networks are not a documented DLA input before "
                       "TensorRT 11.4.1 (trtexec 10.x sets kFP16/kPREFER_PRECISION_CONSTRAINTS for DLA builds); build "
                       "DLA with --fp16, or --int8 --fp16 --calib=<cache>")
        if major < 11 and has_qdq and (major, minor) < (10, 11):
            raise Fail(f"DLA on TensorRT {VERSION}: the network is explicitly quantized (Q/DQ nodes), and NVIDIA documents "
                       "DLA INT8 on this version only through calibration scales (IInt8EntropyCalibrator2, 'the required "
                       "calibrator for DLA'): strip the Q/DQ nodes and pass their scales with --int8 --calib=<cache> "
                       "(NVIDIA's DLA QDQ Translator route)")
    static = all(p["min"] == p["max"] for p in profile.values())

    # INT8 scales: Q/DQ nodes (explicit) or the calibration cache (implicit)
    scales: dict[str, float] = {}
    int8 = bool(opts.get("--int8") or opts.get("--best"))
    if opts.get("--calib"):
        scales = read_calibration_cache(Path(str(opts["--calib"])))
        if not int8:
            log("[TRT] --calib has no effect without --int8", "W")
        elif has_qdq:
            log("[TRT] Calibrator won't be used in explicit precision mode. Use quantization aware training to "
                "generate network with Quantize/Dequantize nodes.", "W")
            scales = {}
        else:
            names = {t for n in proto.graph.node for t in [*n.input, *n.output]} | {i.name for i in inputs}
            unknown = sorted(set(scales) - names)
            if len(unknown) == len(scales):
                raise Fail("[TRT] none of the calibration cache's tensors is in the network (was it written for another ONNX?)")
            if unknown:
                log(f"[TRT] calibration cache names {len(unknown)} tensors not in the network, e.g. {unknown[0]}", "W")
    elif int8 and not strong and not has_qdq:
        raise Fail("INT8 without scales: the network has no Q/DQ nodes and no --calib was given, so trtexec would build "
                   "with placeholder dynamic ranges (it 'does not provide calibration capability'); this double refuses "
                   "that: give --calib=<calibration cache>")
    constraints = str(opts.get("--precisionConstraints", "none"))
    if constraints not in ("none", "prefer", "obey"):
        raise Fail(f"Invalid --precisionConstraints: {constraints} (none|prefer|obey)")
    layer_prec: dict[str, str] = {}
    for spec in str(opts["--layerPrecisions"]).split(",") if opts.get("--layerPrecisions") else []:
        name, sep, prec = spec.rpartition(":")
        if not sep or not name or prec not in LAYER_PRECISIONS:
            raise Fail(f"Invalid --layerPrecisions spec: {spec}")
        layer_prec[name] = prec
    if layer_prec and constraints == "none":
        log('--layerPrecision/--layerOutputTypes flags have no effect when --precisionConstraints flag is set to "none".',
            "W")
    node_names = {n.name for n in proto.graph.node}
    for name in sorted(set(layer_prec) - node_names):
        log(f"[TRT] --layerPrecisions: no layer named {name!r}", "W")

    # layer placement
    types = {vi.name: vi.type.tensor_type.elem_type for vi in [*proto.graph.value_info, *proto.graph.output, *inputs]}
    types.update({i.name: i.data_type for i in proto.graph.initializer})
    dq_out = {o for n in proto.graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    consts = {i.name for i in proto.graph.initializer} | {o for n in proto.graph.node if n.op_type == "Constant"
                                                          for o in n.output}
    layers, on_dla_any, int8_layers, missing = [], False, 0, set()
    for n in proto.graph.node:
        if n.op_type in FUSED:
            continue
        name = n.name or n.output[0]
        if strong:
            low = types.get(n.output[0]) == TensorProto.FLOAT16 or any(i in dq_out for i in n.input)
        else:
            acts = [i for i in n.input if i and i not in consts]
            in_int8 = int8 and (any(i in dq_out for i in n.input) if has_qdq else
                                bool(acts) and all(i in scales for i in acts) and all(o in scales for o in n.output)
                                and layer_prec.get(name, "int8") == "int8")
            if int8 and not has_qdq and not in_int8:
                missing.update(t for t in [*acts, *n.output] if t not in scales)
            int8_layers += in_int8
            low = bool(opts.get("--fp16") or opts.get("--best") or in_int8)
        why = None
        if dla is None:
            why = "no DLA requested"
        elif not static:
            why = "DLA does not support dynamic shapes (min, opt and max must be equal)"
        elif n.op_type not in DLA_OPS:
            why = f"{n.op_type} is not supported on DLA"
        elif not low:
            why = "DLA runs FP16/INT8 layers only"
        if why and dla is not None:
            if not fallback:
                raise Fail(f"[TRT] Layer '{name}' ({n.op_type}): {why}, and GPU fallback is not enabled (--allowGPUFallback)")
            log(f"[TRT] Layer '{name}' ({n.op_type}): {why}. Switching this layer's device type to GPU.", "W")
        layers.append((name, n.op_type, "GPU" if why else "DLA"))
        on_dla_any |= not why
    groups: list[tuple[str, list[tuple[str, str, str]]]] = []
    for layer in layers:
        if groups and groups[-1][0] == layer[2] == "DLA":
            groups[-1][1].append(layer)
        else:
            groups.append((layer[2], [layer]))
    if missing:
        log(f"[TRT] Missing scale and zero-point for {len(missing)} tensors (e.g. {sorted(missing)[0]}), expect fall back "
            "to non-int8 implementation for any layer consuming or producing given tensor", "W")
    dla_lines = [f"{{ForeignNode[{g[0][0]}...{g[-1][0]}]}}" for d, g in groups if d == "DLA"]
    gpu_lines = [f"{g[0][1].upper()}: {g[0][0]}" for d, g in groups if d == "GPU"]
    log("[TRT] ---------- Layers Running on DLA ----------")
    for line in dla_lines:
        log(f"[TRT] [DlaLayer] {line}")
    log("[TRT] ---------- Layers Running on GPU ----------")
    for line in gpu_lines:
        log(f"[TRT] [GpuLayer] {line}")

    header = {"tensorrt_version": VERSION, "strongly_typed": strong, "precision_flags": prec,
              "dla_core": int(dla) if dla is not None else None, "gpu_fallback": fallback,
              "profile": {k: {kk: list(vv) for kk, vv in v.items()} for k, v in profile.items()},
              "layers": {"dla": len(dla_lines), "gpu": len(gpu_lines)},
              "int8": "explicit (Q/DQ)" if int8 and has_qdq else ("implicit (calibration cache)" if scales else None),
              "int8_layers": int8_layers, "double": "edgeskel contract double, not TensorRT"}
    if opts.get("--timingCacheFile"):
        cache = Path(str(opts["--timingCacheFile"]))
        cache.write_text(json.dumps({"double": True, "builds": (json.loads(cache.read_text())["builds"] + 1
                                                                 if cache.is_file() else 1)}))
    if opts.get("--exportLayerInfo"):
        detailed = opts.get("--profilingVerbosity") == "detailed"
        info = {"Layers": [({"Name": nm, "LayerType": op, "Device": dev} if detailed else nm) for nm, op, dev in layers],
                "Bindings": [i.name for i in inputs] + [o.name for o in proto.graph.output],
                "double": "edgeskel contract double, not TensorRT"}
        Path(str(opts["--exportLayerInfo"])).write_text(json.dumps(info, indent=1))
    if opts.get("--saveEngine"):
        write_engine(str(opts["--saveEngine"]), header, onnx_path.read_bytes())
        log(f"Engine saved to {opts['--saveEngine']}")
    return 0


def main(argv: list[str]) -> int:
    cmd = " ".join(["trtexec", *argv])
    print(f"&&&& RUNNING TensorRT.trtexec {TAG} # {cmd}", flush=True)
    try:
        opts = parse(argv)
        if opts.get("--help"):
            print("contract double of trtexec: see tests/doubles/trtexec_double.py")
            return 0
        build(opts)
    except Fail as exc:
        log(str(exc), "E")
        print(f"&&&& FAILED TensorRT.trtexec {TAG} # {cmd}", flush=True)
        return 1
    print(f"&&&& PASSED TensorRT.trtexec {TAG} # {cmd}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
