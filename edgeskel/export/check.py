"""Fail fast: can this model reach every backend the device profile asks for?

A recipe run spends minutes to hours on training, compression and fine-tuning before the export
stage. A model that one backend cannot take (an op the exporter or TensorRT's parser lacks, an
einsum equation outside the rewrite, Python control flow that the trace froze) used to be
found only then. `check_routes` exports the reference architecture once per backend route of the
profile, the same way the export stage will (opset, static batch, einsum mode, TensorRT lint for
the profile's version and DLA), runs it where it can run here and compares it with PyTorch. It
takes seconds; the pipeline runs it right after reading the data (`check` stage) and
`edgeskel check --recipe R --device D` runs only this.

Precision is not part of a route here: quantization works on the same fp32 graph, so a graph
that exports and runs in fp32 on a backend reaches its quantizers; the INT8 accuracy gates are
judged later, on the trained model.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch.nn as nn

from edgeskel.checkpoint import ModelSpec
from edgeskel.errors import EdgeskelError, ExportError

if TYPE_CHECKING:
    from edgeskel.devices import DeviceProfile


@dataclass(frozen=True)
class Route:
    """One backend as the export stage will produce it."""

    backend: str
    einsum: str
    batch: int | None
    opset: int
    dla: bool = False
    tensorrt_version: str | None = None

    @property
    def label(self) -> str:
        return self.backend + (" (DLA)" if self.dla else "")


def profile_routes(profile: DeviceProfile, opset: int) -> list[Route]:
    """The distinct routes of a profile's variants (several precisions share one route)."""
    from edgeskel.export.api import einsum_mode

    routes: list[Route] = []
    batch = 1 if profile.input.static_shapes else None
    for v in profile.variants:
        dla, version = False, None
        if v.backend == "tensorrt" and profile.tensorrt is not None:
            from edgeskel.quantize.tensorrt_routes import export_options_for

            opts = export_options_for(profile, v)
            dla, version = opts.get("dla_core") is not None, opts.get("tensorrt_version")
        routes.append(Route(v.backend, einsum_mode(v.backend, v.options), batch, int(v.options.get("opset", opset)),
                            dla, version))
    return list(dict.fromkeys(routes))


def _hint(backend: str, message: str) -> str:
    """What the user can do about a failure, by its kind."""
    if "Exporting the operator" in message or ("is not supported" in message and "onnx" in message.lower()):
        return ("replace that operator in the model's forward with standard tensor ops, or raise export.opset "
                "(17-21) if a newer opset has it")
    if "einsum" in message.lower():
        return "write that contraction with torch.matmul / permute in the model"
    if "not supported by TensorRT" in message:
        return f"replace those ops in the model, or drop the {backend} variants from the device profile"
    if "parity" in message:
        return ("the exported graph computes something else than PyTorch: look for Python control flow or "
                "shapes that depend on the input values in forward()")
    if "dynamic" in message:
        return "only the batch axis may be dynamic: use fixed shapes for everything else"
    return f"fix the model's forward or drop the {backend} variants from the device profile"


def check_route(model: nn.Module, spec: ModelSpec, route: Route, out_dir: Path, x: np.ndarray,
                ref: np.ndarray) -> dict[str, Any]:
    """Export for one route and run it here; a failure is a record with `error` and `fix`."""
    from edgeskel.export.onnx import export_onnx
    from edgeskel.validate.parity import check_parity, format_parity

    d = out_dir / route.label.replace(" (DLA)", "-dla")
    d.mkdir(parents=True, exist_ok=True)
    rec: dict[str, Any] = {"backend": route.backend, "einsum": route.einsum, "dla": route.dla, "opset": route.opset}
    try:
        info: dict[str, Any] = {}
        onnx_path = export_onnx(model, spec, d / "model.onnx", opset=route.opset, batch=route.batch,
                                einsum=route.einsum, info=info)
        rec.update(info)
        if route.backend == "tensorrt":
            from edgeskel.quantize.tensorrt import lint_tensorrt

            lint = lint_tensorrt(onnx_path, dla=route.dla, batch_sizes=[1], tensorrt_version=route.tensorrt_version)
            rec["lint_warnings"] = lint["warnings"]
            if not lint["passed"]:
                raise ExportError(f"{onnx_path}: not TensorRT-ready: " + "; ".join(lint["errors"]))
        out = _run_here(route.backend, onnx_path, d, x, route.batch)
        rec["parity"] = check_parity(ref, out, "fp32")
        if not rec["parity"]["passed"]:
            raise ExportError(f"{onnx_path}: parity check failed: {format_parity(rec['parity'])}")
        rec["status"] = "passed"
    except EdgeskelError as exc:
        msg = str(exc)
        rec.update(status="failed", error=msg, fix=_hint(route.backend, msg))
    return rec


def _run_here(backend: str, onnx_path: Path, d: Path, x: np.ndarray, batch: int | None) -> np.ndarray:
    """Logits of the exported graph on this host: OpenVINO for OpenVINO, else ONNX Runtime (the
    TensorRT graph is the one trtexec will parse; its engine is built on the device)."""
    from edgeskel.runtime import get_runner

    if backend == "openvino":
        from edgeskel.quantize.openvino import to_openvino_ir

        artifact, runner = to_openvino_ir(onnx_path, d / "model.xml", fp16=False), "openvino"
    else:
        artifact, runner = onnx_path, "ort"
    with get_runner(runner, artifact, precision="fp32", threads=1) as r:
        if batch is None:
            return r.infer(x)
        return np.concatenate([r.infer(x[i:i + batch]) for i in range(0, len(x), batch)])


def check_routes(model: nn.Module, spec: ModelSpec, routes: list[Route], out_dir: Path,
                 samples: int = 4) -> dict[str, Any]:
    """Check every route (graphs under `out_dir`); returns the summary the caller writes as
    check.json. Never raises for a route that fails: the caller decides (`raise_on_failure`)."""
    from edgeskel.export.api import torch_logits

    rng = np.random.default_rng(0)
    x = rng.standard_normal((samples, *spec.input_shape)).astype(np.float32)
    ref = torch_logits(model, x)
    results = {r.label: check_route(model, spec, r, out_dir, x, ref) for r in routes}
    return {"model": spec.name, "input_shape": list(spec.input_shape),
            "passed": all(r["status"] == "passed" for r in results.values()), "routes": results}


def raise_on_failure(summary: dict[str, Any], where: str) -> None:
    """One `error:` line for the first route that failed: the route, the problem, the fix."""
    for label, rec in summary["routes"].items():
        if rec["status"] != "passed":
            problem = re.sub(r"^\S+\.onnx: ", "", rec["error"])
            others = [k for k, r in summary["routes"].items() if r["status"] != "passed" and k != label]
            more = f" (also failing: {', '.join(others)})" if others else ""
            raise ExportError(f"{where}: model {summary['model']!r} cannot be exported for {label}: {problem}; "
                              f"fix: {rec['fix']}{more}")


def format_check(summary: dict[str, Any]) -> list[str]:
    """Lines for the terminal, one per route."""
    import textwrap

    lines = []
    for label, rec in summary["routes"].items():
        if rec["status"] == "passed":
            extra = f", {len(rec['einsum_rewritten'])} einsum rewritten" if rec.get("einsum_rewritten") else ""
            lines.append(f"  {label:<15} ok (parity {rec['parity']['max_abs']:.1e}{extra})")
        else:
            for head, text in ((f"{label} FAILED:", rec["error"]), ("fix:", rec["fix"])):
                lines += textwrap.wrap(f"{head} {text}", 78, initial_indent="  ", subsequent_indent="    ")
    return lines
