"""TensorRT build routes: which ONNX and which trtexec flags, by the device's TensorRT version.

Why routes: TensorRT deprecated implicit INT8 calibration in 10.1 and weak typing in 10.12, and
TensorRT 11 *removed* the weakly typed builder flags (trtexec `--fp16`, `--int8`, `--best`,
`--calib`): "TensorRT 11.x removes all precision flags (--fp16, --int8, --bf16, --fp8, --int4,
--best) because all networks are strongly typed" and "--stronglyTyped is no longer needed: it is
always enabled" (docs.nvidia.com/deeplearning/tensorrt/latest/api/migration/
tensorrt-10x-to-11x-trtexec.html). In a strongly typed network "network tensor types, including
types imported from an ONNX model, determine precision" (.../inference-library/
dla-strongly-typed-networks.html), so the precision lives in the ONNX file:

- strongly typed (default; TensorRT 10.x with `--stronglyTyped`, TensorRT 11.x always):
  fp16 = the fp32 graph converted to fp16 tensor types (onnxconverter-common, fp32 I/O kept);
  int8 = the symmetric Q/DQ graph (explicit quantization) with its float parts fp16-typed. Q/DQ
  with fp16 scales needs opset >= 19 (QuantizeLinear/DequantizeLinear-19 added float16), so the
  strongly typed INT8 graph is opset 19.
- weakly typed (only when a TensorRT 10.x profile asks, `tensorrt.typing: weak`): the fp32 graph
  with `--fp16`, the fp32 Q/DQ graph with `--int8 --fp16`. Refused for TensorRT >= 11.

DLA (Jetson AGX Orin / NX): "DLA does not support dynamic dimensions, so the profile's min, max,
and opt values must be equal", "the runtime dimensions must be the same as the dimensions used for
building", max batch 4096, non-batch dimensions <= 8192 (.../inference-library/
dla-layer-restrictions.html); on TensorRT 11.4.1+ DLA exists only on AGX Orin with JetPack >= 7.2.2
and "those builds are strongly typed". So every engine here is built for ONE batch size
(min = opt = max = B): DLA needs it, and the GPU engines are then tuned for exactly the batch that
is measured (one engine per measured batch size).

DLA precision by TensorRT version (sources and quotes: docs/TENSORRT.md, "DLA INT8"):
- TensorRT 10.x (JetPack 6): DLA builds are weakly typed, whatever the profile's `typing`. NVIDIA
  documents DLA INT8 on 10.x only through calibration scales (implicit quantization): the 10.x API
  names IInt8EntropyCalibrator2 "the required calibrator for DLA", NVIDIA's DLA FAQ quantizes for
  DLA "through TensorRT's Post-Training Quantization (PTQ) toolchain", and NVIDIA's QDQ Translator
  (Jetson Orin, JetPack 6) turns a Q/DQ graph into "ONNX graphs without Q/DQ nodes, along with
  extracted tensor scales" built with `trtexec --int8 --fp16 --calib=... --useDLACore=...`. trtexec
  10.x itself sets kFP16 / kPREFER_PRECISION_CONSTRAINTS for every DLA build, builder flags its own
  option parser calls "not allowed if graph is strongly typed". So the DLA INT8 kit is the Q/DQ
  graph with its Q/DQ nodes stripped (weights dequantized to fp32) + a calibration cache written
  here from the Q/DQ activation scales + `--int8 --fp16 --calib=calib.cache`; DLA fp16 is the fp32
  graph + `--fp16`. GPU variants keep the routes above.
- TensorRT 11.4.1+ (JetPack >= 7.2.2): DLA networks are strongly typed (there are no precision
  flags and no `--calib`), so DLA takes the strongly typed routes above.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import onnx

from edgeskel.errors import ConfigError, ExportError

if TYPE_CHECKING:
    from edgeskel.devices import DeviceProfile

DEFAULT_TRT_VERSION = "10.3"  # JetPack 6.1/6.2
STRONG_QDQ_OPSET = 19  # QuantizeLinear/DequantizeLinear-19: float16 scales and inputs
DLA_MAX_BATCH = 4096
DLA_MAX_DIM = 8192
CALIB_CACHE = "calib.cache"  # the DLA INT8 kit's calibration cache (TensorRT 10.x)
# trtexec's calibrator is an IInt8EntropyCalibrator2 ("the required calibrator for DLA"): its cache
# header names that algorithm, and TensorRT reads only a cache whose header matches.
CALIB_ALGORITHM = "EntropyCalibration2"


def trt_major(version: str | None) -> int:
    """Major version of a "10.3"-style string; the default route's major when unknown."""
    text = str(version or DEFAULT_TRT_VERSION).strip()
    try:
        return int(text.split(".")[0])
    except ValueError:
        raise ConfigError(f"TensorRT version {version!r} is not of the form MAJOR.MINOR (e.g. 10.3)") from None


def trt_version_int(version: str | None) -> int:
    """TensorRT's version number as it heads a calibration cache and trtexec's log tag
    ("[TensorRT v100300]"): NV_TENSORRT_VERSION = major*10000 + minor*100 + patch from TensorRT 10
    (NvInferRuntimeBase.h), major*1000 + minor*100 + patch before (8.6.0 -> 8600)."""
    text = str(version or DEFAULT_TRT_VERSION).strip()
    try:
        parts = [int(p) for p in text.split(".")[:3]]
    except ValueError:
        raise ConfigError(f"TensorRT version {version!r} is not of the form MAJOR.MINOR[.PATCH] (e.g. 10.3)") from None
    major, minor, patch = (parts + [0, 0])[:3]
    return major * (10000 if major >= 10 else 1000) + minor * 100 + patch


@dataclass(frozen=True)
class Route:
    """How one TensorRT variant is built."""

    version: str  # expected TensorRT major.minor on the device
    typing: str  # "strong" | "weak"
    dla: bool = False  # built for a DLA core

    @property
    def major(self) -> int:
        return trt_major(self.version)

    @property
    def implicit_int8(self) -> bool:
        """INT8 from a calibration cache (implicit quantization) instead of Q/DQ nodes: DLA on
        TensorRT 10.x, the only DLA INT8 input NVIDIA documents for 10.x (module docstring)."""
        return self.dla and self.major < 11

    @property
    def name(self) -> str:
        typed = "strongly" if self.typing == "strong" else "weakly"
        dla = "dla-" if self.implicit_int8 else ""
        return f"tensorrt{self.major}-{dla}{typed}-typed"

    def precision_flags(self, precision: str) -> list[str]:
        """trtexec precision flags. Strongly typed builds take none: TensorRT 10 documents
        `--stronglyTyped` as incompatible with the precision flags; TensorRT 11 has neither.
        DLA INT8 on TensorRT 10.x reads its scales from the kit's calibration cache."""
        if self.typing == "strong":
            return ["--stronglyTyped"] if self.major < 11 else []
        if precision == "fp16":
            return ["--fp16"]
        flags = ["--int8", "--fp16"]  # fp16 for layers left in float (no scale: DLA runs them in FP16)
        return [*flags, f"--calib={CALIB_CACHE}"] if self.implicit_int8 else flags

    def describe(self, precision: str) -> str:
        if self.implicit_int8 and precision == "int8":
            src = (f"fp32 ONNX (the symmetric Q/DQ graph with its Q/DQ nodes stripped) + {CALIB_CACHE} (its activation "
                   "scales) + --int8 --fp16 --calib: implicit INT8, the DLA INT8 input of TensorRT 10.x")
        else:
            src = {("strong", "fp16"): "fp16-typed ONNX (fp32 inputs/outputs)",
                   ("strong", "int8"): "symmetric Q/DQ ONNX, float parts fp16-typed (opset 19)",
                   ("weak", "fp16"): "fp32 ONNX + --fp16",
                   ("weak", "int8"): "fp32 symmetric Q/DQ ONNX + --int8 --fp16"}[(self.typing, precision)]
        return f"TensorRT {self.version} ({self.name}): {src}"


def make_route(version: str | None = None, typing: str | None = None, dla: bool = False) -> Route:
    """The route of a TensorRT variant. `dla`: built for a DLA core, which on TensorRT 10.x is
    weakly typed whatever `typing` says (DLA INT8 from a calibration cache; module docstring)."""
    version = str(version or DEFAULT_TRT_VERSION)
    typing = typing or "strong"
    if typing not in ("strong", "weak"):
        raise ConfigError(f"tensorrt typing must be 'strong' or 'weak', got {typing!r}")
    if typing == "weak" and trt_major(version) >= 11:
        raise ConfigError(f"TensorRT {version} has no weakly typed builds (TensorRT 11 removed --fp16/--int8): "
                          f"use typing: strong")
    if dla and trt_major(version) < 11:
        typing = "weak"
    return Route(version, typing, bool(dla))


def fp16_typed(src: str | Path, dst: str | Path, opset: int | None = None,
               fp16_ops: tuple[str, ...] | None = None) -> Path:
    """Write `src` with its float tensors as float16 (inputs/outputs stay float32), for a
    strongly typed build. Q/DQ graphs are first converted to opset 19 so that their scales can
    be fp16 (DequantizeLinear's output type is its scale's type)."""
    from onnxconverter_common import float16

    proto = onnx.load(str(src))
    cur = max((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), default=0)
    if opset and cur < opset:
        try:
            proto = onnx.version_converter.convert_version(proto, opset)
        except Exception as exc:  # noqa: BLE001
            raise ExportError(f"{src}: cannot convert to opset {opset} for fp16 Q/DQ: {str(exc).splitlines()[0]}") from None
    try:
        out = (float16.convert_float_to_float16(proto, keep_io_types=True) if fp16_ops is None
               else fp16_compute_only(proto, fp16_ops))
    except Exception as exc:  # noqa: BLE001
        raise ExportError(f"{src}: fp16 conversion failed: {str(exc).splitlines()[0]}") from None
    _retarget_float_casts(out)
    onnx.checker.check_model(out)
    from edgeskel.io import atomic_write_bytes

    atomic_write_bytes(Path(dst), out.SerializeToString())
    return Path(dst)


def fp16_compute_only(proto: onnx.ModelProto, ops: tuple[str, ...]) -> onnx.ModelProto:
    """Type only the nodes of `ops` float16 (their float initializers converted, a Cast in front
    of each float activation they read, one back to float32 where a float32 node or the graph
    output reads theirs); every other node keeps float32. Linear in the graph size (the
    converter's block lists are quadratic: minutes on a step graph of ~1600 nodes)."""
    from collections import defaultdict

    from onnx import TensorProto, helper, numpy_helper

    g = proto.graph
    inits = {t.name: t for t in g.initializer}
    consumers: dict[str, list[onnx.NodeProto]] = defaultdict(list)
    for n in g.node:
        for name in n.input:
            consumers[name].append(n)
    outputs = {o.name for o in g.output}
    half: dict[str, str] = {}  # float32 tensor -> its float16 twin
    new_inits, nodes = [], []

    def to_half(name: str) -> str:
        if name not in half:
            if name in inits and inits[name].data_type == TensorProto.FLOAT:
                arr = numpy_helper.to_array(inits[name]).astype(np.float16)
                new_inits.append(numpy_helper.from_array(arr, f"{name}_fp16"))
            else:
                nodes.append(helper.make_node("Cast", [name], [f"{name}_fp16"], to=TensorProto.FLOAT16,
                                              name=f"{name}_cast_fp16"))
            half[name] = f"{name}_fp16"
        return half[name]

    for n in list(g.node):
        if n.op_type not in ops:
            nodes.append(n)
            continue
        for i, name in enumerate(n.input):
            if name:
                n.input[i] = to_half(name)
        for i, name in enumerate(n.output):
            n.output[i] = half[name] = f"{name}_fp16"
        nodes.append(n)
        for name in [o.removesuffix("_fp16") for o in n.output]:
            if name in outputs or any(c.op_type not in ops for c in consumers[name]):
                nodes.append(helper.make_node("Cast", [half[name]], [name], to=TensorProto.FLOAT, name=f"{name}_cast_fp32"))
    del g.node[:]
    g.node.extend(nodes)
    g.initializer.extend(new_inits)
    del g.value_info[:]  # types changed; runtimes infer them again
    used = {i for n in g.node for i in n.input}
    keep = [t for t in g.initializer if t.name in used or t.name in {i.name for i in g.input}]
    del g.initializer[:]
    g.initializer.extend(keep)
    return proto


def _retarget_float_casts(proto: onnx.ModelProto) -> None:
    """onnxconverter_common leaves `Cast(to=FLOAT)` of non-float tensors (a mask from Equal/And,
    as step graphs make) unchanged while typing its output float16, which no runtime loads: such
    a Cast now casts to float16, as the tensor it writes is declared."""
    g = proto.graph
    fp16 = {vi.name for vi in g.value_info if vi.type.tensor_type.elem_type == onnx.TensorProto.FLOAT16}
    floats = {onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16}
    typed = {vi.name: vi.type.tensor_type.elem_type for vi in [*g.input, *g.output, *g.value_info]}
    typed.update({t.name: t.data_type for t in g.initializer})
    outputs = {o.name for o in g.output}
    for node in g.node:  # not the converter's own casts (float inputs, or the graph's float32 outputs)
        if (node.op_type == "Cast" and node.output[0] in fp16 and node.output[0] not in outputs
                and typed.get(node.input[0]) not in floats):
            for a in node.attribute:
                if a.name == "to" and a.i == onnx.TensorProto.FLOAT:
                    a.i = onnx.TensorProto.FLOAT16


def shape_spec(name: str, batch: int, chw: tuple[int, ...]) -> str:
    return f"{name}:" + "x".join(str(d) for d in (batch, *chw))


def engine_files(batch: int) -> dict[str, str]:
    """File names of the engine built for one batch size, its layer info and its build log."""
    return {"engine": f"model.b{batch}.engine", "layer_info": f"layers.b{batch}.json", "log": f"build.b{batch}.log"}


def trtexec_args(route: Route, precision: str, onnx_name: str, batch: int, chw: tuple[int, ...],
                 input_name: str, dla_core: int | None, allow_gpu_fallback: bool, workspace_mb: int,
                 timing_cache: str = "timing.cache", shape_flags: bool = True,
                 layer_precisions: dict[str, str] | None = None) -> list[str]:
    """One engine: static shapes min = opt = max = `batch` (no shape flags when the ONNX itself
    has a fixed batch), layer info exported for the DLA/GPU placement report. `layer_precisions`
    (weakly typed builds only): {layer: "fp16"} passed as `--precisionConstraints=prefer
    --layerPrecisions=...`, the layers the Q/DQ graph kept in float."""
    files = engine_files(batch)
    cmd = ["trtexec", f"--onnx={onnx_name}", f"--saveEngine={files['engine']}", f"--timingCacheFile={timing_cache}"]
    if shape_flags:
        spec = shape_spec(input_name, batch, chw)
        cmd += [f"--minShapes={spec}", f"--optShapes={spec}", f"--maxShapes={spec}"]
    cmd += route.precision_flags(precision)
    if layer_precisions and route.typing == "weak":
        cmd += ["--precisionConstraints=prefer",
                "--layerPrecisions=" + ",".join(f"{k}:{v}" for k, v in layer_precisions.items())]
    cmd.append(f"--memPoolSize=workspace:{int(workspace_mb)}M")
    if dla_core is not None:
        cmd.append(f"--useDLACore={int(dla_core)}")
        if allow_gpu_fallback:
            cmd.append("--allowGPUFallback")
    # Layer info needs detailed profiling verbosity; the build log lists the layers on DLA/GPU.
    cmd += ["--profilingVerbosity=detailed", f"--exportLayerInfo={files['layer_info']}"]
    return cmd


# ---- DLA INT8 on TensorRT 10.x: Q/DQ graph -> fp32 graph + calibration cache ------------------

WEIGHTED_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")


def strip_qdq(src: str | Path, dst: str | Path) -> dict[str, Any]:
    """Write `src` (a symmetric Q/DQ graph) to `dst` without its QuantizeLinear/DequantizeLinear
    nodes, the route NVIDIA's DLA QDQ Translator takes for DLA (docs/TENSORRT.md): every activation
    Q -> DQ pair is removed and its consumers read the float tensor again; every pre-quantized
    weight (int8 initializer -> DQ) becomes its dequantized fp32 values, so TensorRT's own
    per-channel weight quantization finds the same scales; a pair that ended the graph hands the
    output's name to the tensor it quantized. Returns {"scales": {tensor: activation scale} (the
    QuantizeLinear y_scale, per tensor; a tensor quantized twice keeps the larger; plus scales
    inferred across value-moving ops, see _infer_adjacent_scales), "float_layers": [weighted
    layers the Q/DQ graph computed in float], "weights": n, "inferred": n}."""
    from onnx import numpy_helper

    src, dst = Path(src), Path(dst)
    proto = onnx.load(str(src))
    g = proto.graph
    consts = {i.name: numpy_helper.to_array(i) for i in g.initializer}
    for n in g.node:
        if n.op_type == "Constant" and n.attribute and n.attribute[0].type == onnx.AttributeProto.TENSOR:
            consts[n.output[0]] = numpy_helper.to_array(n.attribute[0].t)
    producer = {o: n for n in g.node for o in n.output}
    outputs = {o.name for o in g.output}
    dq_out = {o for n in g.node if n.op_type == "DequantizeLinear" for o in n.output}
    rename: dict[str, str] = {}  # DQ output -> the float tensor it stood for
    alias: dict[str, str] = {}  # float tensor -> graph output name (a pair that ended the graph)
    raw_scales: dict[str, float] = {}
    weights: dict[str, np.ndarray] = {}
    drop: set[int] = set()
    for n in g.node:
        if n.op_type != "DequantizeLinear":
            continue
        name = n.name or n.output[0]
        scale = consts.get(n.input[1])
        zp = consts.get(n.input[2]) if len(n.input) > 2 and n.input[2] else None
        if scale is None:
            raise ExportError(f"{src}: DequantizeLinear {name}: scale is not a constant")
        if zp is not None and np.any(zp != 0):
            raise ExportError(f"{src}: DequantizeLinear {name}: asymmetric (zero-point != 0); "
                              "TensorRT needs symmetric INT8")
        q = producer.get(n.input[0])
        if q is not None and q.op_type == "QuantizeLinear":
            x = q.input[0]
            drop.update((id(q), id(n)))
            rename[n.output[0]] = x
            if n.output[0] in outputs:
                alias[x] = n.output[0]
            if x not in consts:  # an activation: its scale goes to the calibration cache
                if scale.size != 1:
                    raise ExportError(f"{src}: activation {x!r} is quantized per channel; TensorRT's calibration "
                                      "cache holds one scale per tensor")
                s = float(scale.reshape(-1)[0])
                raw_scales[x] = max(s, raw_scales.get(x, 0.0))
        elif n.input[0] in consts:  # pre-quantized weight
            w = consts[n.input[0]].astype(np.float32)
            s = scale.astype(np.float32)
            if s.size > 1:
                axis = next((a.i for a in n.attribute if a.name == "axis"), 1) % w.ndim
                s = s.reshape([-1 if d == axis else 1 for d in range(w.ndim)])
            weights[n.output[0]] = w * s
            drop.add(id(n))
        else:
            raise ExportError(f"{src}: DequantizeLinear {name} reads neither a QuantizeLinear nor a constant")
    orphan = [n.name or n.output[0] for n in g.node if n.op_type == "QuantizeLinear" and id(n) not in drop]
    if orphan:
        raise ExportError(f"{src}: QuantizeLinear without DequantizeLinear: {', '.join(orphan[:5])}")

    def final(t: str) -> str:
        seen = set()
        while t in rename and t not in seen:
            seen.add(t)
            t = rename[t]
        return alias.get(t, t)

    float_layers = [n.name for n in g.node if n.op_type in WEIGHTED_OPS and n.name
                    and not all(i in dq_out for i in n.input[:2])]
    nodes = []
    for n in g.node:
        if id(n) in drop:
            continue
        m = onnx.NodeProto()
        m.CopyFrom(n)
        m.ClearField("input")
        m.input.extend(final(i) if i else i for i in n.input)
        m.ClearField("output")
        m.output.extend(alias.get(o, o) for o in n.output)
        nodes.append(m)
    used = {i for n in nodes for i in n.input} | outputs
    while True:  # Constant nodes that only fed Q/DQ scales and zero-points
        dead = [n for n in nodes if n.op_type == "Constant" and not any(o in used for o in n.output)]
        if not dead:
            break
        nodes = [n for n in nodes if n not in dead]
        used = {i for n in nodes for i in n.input} | outputs
    inits = [i for i in g.initializer if i.name in used and i.name not in weights]
    inits += [numpy_helper.from_array(w, name) for name, w in weights.items() if name in used]
    kept = {o for n in nodes for o in n.output} | {i.name for i in g.input}
    value_info = [v for v in g.value_info if v.name in kept and v.name not in outputs
                  and v.type.tensor_type.elem_type != onnx.TensorProto.INT8]
    g.ClearField("node")
    g.node.extend(nodes)
    g.ClearField("initializer")
    g.initializer.extend(inits)
    g.ClearField("value_info")
    g.value_info.extend(value_info)
    onnx.checker.check_model(proto)
    from edgeskel.io import atomic_write_bytes

    atomic_write_bytes(dst, proto.SerializeToString())
    scales: dict[str, float] = {}
    for t, s in raw_scales.items():
        scales[final(t)] = max(s, scales.get(final(t), 0.0))
    inferred = _infer_adjacent_scales(nodes, scales, set(consts) | set(weights))
    return {"scales": scales, "float_layers": float_layers, "weights": len(weights), "inferred": inferred}


# Ops that only move values (a scale holds on both sides), and ops whose output values are a subset
# of their input's range (the input's scale holds for the output). NVIDIA's QDQ Translator infers
# missing scales across such ops by default (Reshape, Transpose, Flatten, Squeeze, Relu, MaxPool, ...)
# so that TensorRT's implicit INT8 is not broken up by a Reshape without a scale.
SCALE_SHAPE_OPS = ("Reshape", "Transpose", "Flatten", "Squeeze", "Unsqueeze", "Identity")
SCALE_SUBSET_OPS = ("Relu", "MaxPool")


def _infer_adjacent_scales(nodes: list[onnx.NodeProto], scales: dict[str, float], consts: set[str]) -> int:
    """Fill missing scales across SCALE_SHAPE_OPS (both ways) and SCALE_SUBSET_OPS (input ->
    output); never replaces a scale the Q/DQ graph has. Returns how many were inferred."""
    added = 0
    changed = True
    while changed:
        changed = False
        for n in nodes:
            if n.op_type not in SCALE_SHAPE_OPS + SCALE_SUBSET_OPS or not n.input or n.input[0] in consts:
                continue
            x, y = n.input[0], n.output[0]
            if x in scales and y not in scales:
                scales[y] = scales[x]
            elif y in scales and x not in scales and n.op_type in SCALE_SHAPE_OPS:
                scales[x] = scales[y]
            else:
                continue
            added += 1
            changed = True
    return added


def calibration_cache_text(scales: dict[str, float], version: str | None) -> str:
    """TensorRT's calibration cache: a header naming the TensorRT version and the calibrator
    ("TRT-100300-EntropyCalibration2"), then one "tensor: scale" line per tensor, the scale written
    as the 8 hex digits of its float32 bit pattern (trtexec 10.x reads them back with
    std::stoi(..., 16) into a float's bits; NVIDIA's QDQ Translator writes them the same way).
    TensorRT quantizes a tensor to [-127 * scale, 127 * scale]: the symmetric Q/DQ step `scale`."""
    lines = [f"TRT-{trt_version_int(version)}-{CALIB_ALGORITHM}"]
    for name, s in scales.items():
        if not (math.isfinite(s) and s > 0):
            raise ExportError(f"calibration cache: tensor {name!r} has scale {s} (must be finite and > 0)")
        if not name or "\n" in name or "\r" in name:
            raise ExportError(f"calibration cache: tensor name {name!r} cannot be written")
        lines.append(f"{name}: {struct.pack('>f', s).hex()}")
    return "\n".join(lines) + "\n"


def parse_calibration_cache(text: str) -> tuple[str, dict[str, float]]:
    """(header, {tensor: scale}) of a calibration cache (calibration_cache_text's format)."""
    lines = text.splitlines()
    if not lines:
        raise ExportError("calibration cache is empty")
    scales = {}
    for line in lines[1:]:
        name, sep, hexval = line.rpartition(": ")
        if not sep or len(hexval) != 8:
            raise ExportError(f"calibration cache: malformed line {line!r}")
        scales[name] = struct.unpack(">f", bytes.fromhex(hexval))[0]
    return lines[0], scales


def layer_precision_spec(layers: list[str]) -> tuple[dict[str, str], list[str]]:
    """({layer: "fp16"} for --layerPrecisions, layers whose names trtexec's comma/colon-separated
    spec cannot carry)."""
    ok = {n: "fp16" for n in layers if not any(c in n for c in ",:'\"")}
    return ok, [n for n in layers if n not in ok]


def export_options_for(profile: DeviceProfile, variant: Any) -> dict[str, Any]:
    """Export options of one TensorRT variant of a profile. The variant's own `dla_core` wins
    over the profile's `use_dla` default (a DLA variant once silently became a GPU one)."""
    trt = profile.tensorrt
    opts = dict(variant.options or {})
    dla = opts.get("dla_core", 0 if trt.use_dla else None)
    return {"dla_core": dla, "allow_gpu_fallback": bool(opts.get("allow_gpu_fallback", True)),
            "workspace_mb": trt.workspace_mb, "batch_sizes": list(profile.batch_sizes),
            "tensorrt_version": trt.version or DEFAULT_TRT_VERSION, "typing": trt.typing}
