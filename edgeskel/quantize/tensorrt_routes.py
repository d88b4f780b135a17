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
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import onnx

from edgeskel.errors import ConfigError, ExportError

DEFAULT_TRT_VERSION = "10.3"  # JetPack 6.1/6.2
STRONG_QDQ_OPSET = 19  # QuantizeLinear/DequantizeLinear-19: float16 scales and inputs
DLA_MAX_BATCH = 4096
DLA_MAX_DIM = 8192


def trt_major(version: str | None) -> int:
    """Major version of a "10.3"-style string; the default route's major when unknown."""
    text = str(version or DEFAULT_TRT_VERSION).strip()
    try:
        return int(text.split(".")[0])
    except ValueError:
        raise ConfigError(f"TensorRT version {version!r} is not of the form MAJOR.MINOR (e.g. 10.3)") from None


@dataclass(frozen=True)
class Route:
    """How one TensorRT variant is built."""

    version: str  # expected TensorRT major.minor on the device
    typing: str  # "strong" | "weak"

    @property
    def major(self) -> int:
        return trt_major(self.version)

    @property
    def name(self) -> str:
        return f"tensorrt{self.major}-{'strongly' if self.typing == 'strong' else 'weakly'}-typed"

    def precision_flags(self, precision: str) -> list[str]:
        """trtexec precision flags. Strongly typed builds take none: TensorRT 10 documents
        `--stronglyTyped` as incompatible with the precision flags; TensorRT 11 has neither."""
        if self.typing == "strong":
            return ["--stronglyTyped"] if self.major < 11 else []
        return ["--fp16"] if precision == "fp16" else ["--int8", "--fp16"]  # fp16 for layers left in float

    def describe(self, precision: str) -> str:
        src = {("strong", "fp16"): "fp16-typed ONNX (fp32 inputs/outputs)",
               ("strong", "int8"): "symmetric Q/DQ ONNX, float parts fp16-typed (opset 19)",
               ("weak", "fp16"): "fp32 ONNX + --fp16",
               ("weak", "int8"): "fp32 symmetric Q/DQ ONNX + --int8 --fp16"}[(self.typing, precision)]
        return f"TensorRT {self.version} ({self.name}): {src}"


def make_route(version: str | None = None, typing: str | None = None) -> Route:
    version = str(version or DEFAULT_TRT_VERSION)
    typing = typing or "strong"
    if typing not in ("strong", "weak"):
        raise ConfigError(f"tensorrt typing must be 'strong' or 'weak', got {typing!r}")
    if typing == "weak" and trt_major(version) >= 11:
        raise ConfigError(f"TensorRT {version} has no weakly typed builds (TensorRT 11 removed --fp16/--int8): "
                          f"use typing: strong")
    return Route(version, typing)


def fp16_typed(src: str | Path, dst: str | Path, opset: int | None = None) -> Path:
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
        out = float16.convert_float_to_float16(proto, keep_io_types=True)
    except Exception as exc:  # noqa: BLE001
        raise ExportError(f"{src}: fp16 conversion failed: {str(exc).splitlines()[0]}") from None
    onnx.checker.check_model(out)
    from edgeskel.io import atomic_write_bytes

    atomic_write_bytes(Path(dst), out.SerializeToString())
    return Path(dst)


def shape_spec(name: str, batch: int, chw: tuple[int, ...]) -> str:
    return f"{name}:" + "x".join(str(d) for d in (batch, *chw))


def engine_files(batch: int) -> dict[str, str]:
    """File names of the engine built for one batch size, its layer info and its build log."""
    return {"engine": f"model.b{batch}.engine", "layer_info": f"layers.b{batch}.json", "log": f"build.b{batch}.log"}


def trtexec_args(route: Route, precision: str, onnx_name: str, batch: int, chw: tuple[int, ...],
                 input_name: str, dla_core: int | None, allow_gpu_fallback: bool, workspace_mb: int,
                 timing_cache: str = "timing.cache", shape_flags: bool = True) -> list[str]:
    """One engine: static shapes min = opt = max = `batch` (no shape flags when the ONNX itself
    has a fixed batch), layer info exported for the DLA/GPU placement report."""
    files = engine_files(batch)
    cmd = ["trtexec", f"--onnx={onnx_name}", f"--saveEngine={files['engine']}", f"--timingCacheFile={timing_cache}"]
    if shape_flags:
        spec = shape_spec(input_name, batch, chw)
        cmd += [f"--minShapes={spec}", f"--optShapes={spec}", f"--maxShapes={spec}"]
    cmd += route.precision_flags(precision)
    cmd.append(f"--memPoolSize=workspace:{int(workspace_mb)}M")
    if dla_core is not None:
        cmd.append(f"--useDLACore={int(dla_core)}")
        if allow_gpu_fallback:
            cmd.append("--allowGPUFallback")
    # Layer info needs detailed profiling verbosity; the build log lists the layers on DLA/GPU.
    cmd += ["--profilingVerbosity=detailed", f"--exportLayerInfo={files['layer_info']}"]
    return cmd


def export_options_for(profile: Any, variant: Any) -> dict[str, Any]:
    """Export options of one TensorRT variant of a profile. The variant's own `dla_core` wins
    over the profile's `use_dla` default (a DLA variant once silently became a GPU one)."""
    trt = profile.tensorrt
    opts = dict(variant.options or {})
    dla = opts.get("dla_core", 0 if trt.use_dla else None)
    return {"dla_core": dla, "allow_gpu_fallback": bool(opts.get("allow_gpu_fallback", True)),
            "workspace_mb": trt.workspace_mb, "batch_sizes": list(profile.batch_sizes),
            "tensorrt_version": trt.version or DEFAULT_TRT_VERSION, "typing": trt.typing}
