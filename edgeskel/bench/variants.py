"""The artifacts a benchmark times: what users do today (baselines, uncompressed model) and
what edgeskel ships (compressed model, every variant of the device profile).

Baselines are built the way a user without edgeskel would build them:
  - PyTorch eager fp32 (the checkpoint's model, torch.inference_mode);
  - plain `torch.onnx.export` (TorchScript exporter as in mmaction2's pytorch2onnx script,
    opset 17, dynamic batch, no simplifier) run by ONNX Runtime fp32;
  - the same ONNX converted by `ov.convert_model` and run by OpenVINO with the f32 hint, and
    with OpenVINO's default precision on this CPU (bf16 where the CPU has AVX512_BF16/AMX);
  - `onnxruntime.quantization.quantize_dynamic` with its defaults (dynamic INT8);
  - `nncf.quantize` with its defaults on the OpenVINO model (static INT8).
Every artifact is cached under `<cache>/artifacts/<model>-<hash>/` (reruns skip exports).
"""

from __future__ import annotations

import io
import json
import logging
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from edgeskel.errors import EdgeskelError
from edgeskel.io import atomic_path, atomic_write_json, sha256_file, sha256_json

if TYPE_CHECKING:
    from edgeskel.devices import DeviceProfile
    from edgeskel.recipe import Recipe

BASELINE_LABELS = {
    "torch-fp32": "PyTorch eager fp32",
    "ort-fp32": "ONNX Runtime fp32 (plain torch.onnx.export)",
    "openvino-fp32": "OpenVINO fp32 (f32 hint)",
    "openvino-default": "OpenVINO default precision",
    "ort-dynamic-int8": "ONNX Runtime dynamic INT8 (quantize_dynamic)",
    "nncf-int8": "OpenVINO NNCF INT8 (nncf.quantize defaults)",
}


@dataclass
class BenchVariant:
    """One timed configuration. `key` is unique in a model's results (`baseline/...`, `edgeskel/...`)."""

    key: str
    label: str
    group: str  # "baseline" | "edgeskel"
    backend: str  # runner backend: torch | ort | openvino
    precision: str  # runner precision
    artifact: Path | None
    size_bytes: int | None
    model: str  # "original" | "compressed"
    how: str = ""  # how the artifact was made (for the report)
    options: dict[str, Any] = field(default_factory=dict)
    error: str | None = None

    def make_runner(self, threads: int, torch_model: Any = None):
        from edgeskel.runtime import get_runner

        opts = dict(self.options)
        if self.backend == "torch":
            opts["model"] = torch_model
        return get_runner(self.backend, self.artifact or "in-memory", precision=self.precision, threads=threads, **opts)


def artifact_bytes(path: Path) -> int:
    """File size; an OpenVINO IR counts its .xml and .bin."""
    path = Path(path)
    total = path.stat().st_size
    if path.suffix == ".xml" and path.with_suffix(".bin").is_file():
        total += path.with_suffix(".bin").stat().st_size
    return total


def plain_onnx_export(model: torch.nn.Module, spec: Any, out: Path, opset: int = 17) -> Path:
    """What a user does: one torch.onnx.export call (TorchScript exporter), no cleanup."""
    c, t, v, m = spec.input_shape
    x = torch.randn(2, c, t, v, m, generator=torch.Generator().manual_seed(0))
    buf = io.BytesIO()
    model.eval()
    from edgeskel.models.export_form import original_forms

    with warnings.catch_warnings(), torch.no_grad(), original_forms():  # the user's code has no edgeskel rewrites
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (x,), buf, dynamo=False, opset_version=opset, input_names=["input"],
                          output_names=["output"], dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}})
    with atomic_path(out) as tmp:
        tmp.write_bytes(buf.getvalue())
    return out


def _cached(root: Path, name: str, build: Any) -> dict[str, Any]:
    """Run `build(dir) -> {"artifact": Path, ...}` once; later calls read `<dir>/bench-artifact.json`."""
    d = root / name
    meta = d / "bench-artifact.json"
    if meta.is_file():
        rec = json.loads(meta.read_text())
        if rec.get("artifact") and (d / rec["artifact"]).is_file():  # failures are retried, never cached
            return {**rec, "artifact": d / rec["artifact"]}
    d.mkdir(parents=True, exist_ok=True)
    logging.disable(logging.WARNING)  # ORT/NNCF quantizers log per-tensor warnings that bury the progress
    try:
        rec = build(d)
        rec["artifact"] = str(Path(rec["artifact"]).relative_to(d))
    except EdgeskelError as exc:
        rec = {"artifact": None, "error": str(exc)}
    except Exception as exc:  # noqa: BLE001 - a third-party tool failing marks one variant, not the run
        rec = {"artifact": None, "error": f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"}
    finally:
        logging.disable(logging.NOTSET)
    atomic_write_json(meta, rec)
    return {**rec, "artifact": d / rec["artifact"] if rec.get("artifact") else None}


def _variant(key: str, label: str, group: str, backend: str, precision: str, model: str, rec: dict[str, Any],
             how: str, options: dict[str, Any] | None = None) -> BenchVariant:
    art = rec.get("artifact")
    return BenchVariant(key, label, group, backend, precision, art, artifact_bytes(art) if art else None, model, how,
                        options or {}, rec.get("error"))


def ov_default_is_bf16(flags: list[str] | set[str]) -> bool:
    return bool({"avx512_bf16", "amx_bf16"} & set(flags))


def baseline_variants(model: torch.nn.Module, spec: Any, ckpt: Path, calib: np.ndarray, root: Path,
                      cpu_flags: list[str], log: Any) -> list[BenchVariant]:
    """The uncompressed model, exported/quantized the way users do it without edgeskel."""
    from edgeskel.quantize.openvino import quantize_nncf, to_openvino_ir

    out: list[BenchVariant] = [BenchVariant("baseline/torch-fp32", BASELINE_LABELS["torch-fp32"], "baseline", "torch", "fp32",
                                            Path(ckpt), Path(ckpt).stat().st_size, "original", "checkpoint, eager mode")]
    log("  baseline: plain torch.onnx.export")
    onnx_rec = _cached(root, "plain-onnx", lambda d: {"artifact": plain_onnx_export(model, spec, d / "model.onnx")})
    out.append(_variant("baseline/ort-fp32", BASELINE_LABELS["ort-fp32"], "baseline", "ort", "fp32", "original", onnx_rec,
                        "torch.onnx.export(dynamo=False, opset 17, dynamic batch), no simplifier"))
    plain = onnx_rec.get("artifact")
    if plain is None:
        return out

    log("  baseline: OpenVINO conversion")
    ir = _cached(root, "openvino-fp32", lambda d: {"artifact": to_openvino_ir(plain, d / "model.xml", fp16=False)})
    out.append(_variant("baseline/openvino-fp32", BASELINE_LABELS["openvino-fp32"], "baseline", "openvino", "fp32", "original", ir,
                        "ov.convert_model(plain ONNX), INFERENCE_PRECISION_HINT=f32"))
    if ov_default_is_bf16(cpu_flags):
        out.append(_variant("baseline/openvino-default", BASELINE_LABELS["openvino-default"] + " (bf16 on this CPU)", "baseline",
                            "openvino", "bf16", "original", ir, "same IR, no precision hint: OpenVINO picks bf16 on AVX512_BF16/AMX CPUs"))

    def dyn(d: Path) -> dict[str, Any]:
        from onnxruntime.quantization import quantize_dynamic

        dst = d / "model.dynamic-int8.onnx"
        with atomic_path(dst) as tmp:
            quantize_dynamic(str(plain), str(tmp))
        return {"artifact": dst}

    log("  baseline: ORT quantize_dynamic")
    out.append(_variant("baseline/ort-dynamic-int8", BASELINE_LABELS["ort-dynamic-int8"], "baseline", "ort", "int8", "original",
                        _cached(root, "ort-dynamic-int8", dyn), "onnxruntime.quantization.quantize_dynamic(plain ONNX), defaults"))
    log("  baseline: NNCF INT8")
    nn_rec = _cached(root, "nncf-int8", lambda d: {"artifact": d / "model.int8.xml",
                                                   "settings": quantize_nncf(plain, d / "model.int8.xml", calib)})
    out.append(_variant("baseline/nncf-int8", BASELINE_LABELS["nncf-int8"], "baseline", "openvino", "int8", "original", nn_rec,
                        "nncf.quantize(ov model, calibration set), default preset"))
    return out


def pipeline_artifact(export_dir: Path | None, key: str) -> dict[str, Any] | None:
    """The artifact a finished pipeline run exported for variant `key` (same compressed model,
    same data, same options), so the benchmark times exactly what the pipeline ships."""
    if export_dir is None or not (export_dir / key / "export.json").is_file():
        return None
    try:
        rec = json.loads((export_dir / key / "export.json").read_text())
    except (OSError, ValueError):
        return None
    art = export_dir / key / str(rec.get("artifact", ""))
    if rec.get("status") != "passed" or not rec.get("artifact") or not art.is_file():
        return None
    return {"artifact": art, "runtime": rec.get("runtime"), "seconds": rec.get("seconds"),
            "source": f"pipeline export {export_dir / key}"}


def edgeskel_variants(model: torch.nn.Module, spec: Any, profile: DeviceProfile, recipe: Recipe, calib: np.ndarray,
                      val: tuple[np.ndarray, np.ndarray], root: Path, log: Any,
                      pipeline_export: Path | None = None) -> list[BenchVariant]:
    """Every variant of the device profile, exported from the compressed model by `export_variant`
    with the options the pipeline uses (INT8 accuracy gate = the profile's max top-1 drop).
    `pipeline_export`: the export folder of the pipeline run the compressed model came from;
    its passed variants are reused instead of exported again."""
    from edgeskel.backends import backend_names
    from edgeskel.export import export_variant

    timed_here = backend_names(runs_here=True)  # TensorRT variants are timed on the device only
    out = []
    for v in profile.variants:
        if v.backend not in timed_here:
            continue
        options = {**v.options, **recipe.export.quant_options(), "max_drop": profile.gates.max_top1_drop,
                   "threads": 2}
        log(f"  edgeskel: export {v.key}")

        def build(d: Path, v=v, options=options) -> dict[str, Any]:
            res = export_variant(model, spec, v.backend, v.precision, d, calib=calib, val=val, options=options)
            return {"artifact": res["artifact_path"], "runtime": res["runtime"], "seconds": res.get("seconds")}

        rec = pipeline_artifact(pipeline_export, v.key) or _cached(root, f"edgeskel-{v.key}", build)
        rt = rec.get("runtime") or {"backend": v.backend, "precision": v.precision}
        # the artifact runs on the variant's backend (e.g. openvino fp16 = fp16 IR, f32 compute)
        prec = rt["precision"] if rt.get("backend") == v.backend else v.precision
        out.append(_variant(f"edgeskel/{v.key}", f"edgeskel {v.key} (compressed)", "edgeskel", v.backend, prec, "compressed", rec,
                            f"edgeskel export_variant({v.backend}, {v.precision})", v.options))
    return out


def cache_root(cache_dir: Path, model_name: str, ckpt: Path, frames: int, extra: dict[str, Any]) -> Path:
    """Artifacts depend on the checkpoint bytes, T and the export settings."""
    key = sha256_json({"ckpt": sha256_file(ckpt), "frames": frames, **extra})[:12]
    return Path(cache_dir) / "artifacts" / f"{model_name}-{key}"


def spec_at_frames(spec: Any, frames: int) -> Any:
    return replace(spec, preprocess=replace(spec.preprocess, num_frames=int(frames)))
