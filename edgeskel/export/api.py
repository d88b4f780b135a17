"""One call per (backend, precision) variant: artifacts + parity check + export.json.

`export_variant` is what the CLI (`edgeskel export`) and the pipeline call. Each variant gets
its own `out_dir`; its `export.json` lists every file (size, sha256), the parity numbers of
the artifact against the PyTorch model, the calibration settings and, for TensorRT, the lint
result and the engine build status. It is written (atomically) even when the variant fails,
with `status: failed`, before the error is raised, so a report can show why.

Backend defaults worth knowing:
- ort int8 uses u8 asymmetric activations (measured faster on x86 ORT, same accuracy);
  onnx int8 (portable) and tensorrt int8 use s8 symmetric activations (TensorRT needs zp 0).
- openvino fp16 stores fp16 weights but computes in f32 on CPU (storage-only saving);
  bf16 is the fp32 IR run with INFERENCE_PRECISION_HINT=bf16.
- tensorrt: artifacts are a build kit; parity runs the TensorRT-ready ONNX through ORT here,
  and the engine itself only where an NVIDIA GPU and TensorRT exist.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from edgeskel import __version__
from edgeskel.backends import backend_names, get_backend, precisions
from edgeskel.checkpoint import ModelSpec
from edgeskel.config_errors import did_you_mean
from edgeskel.errors import ConfigError, ExportError, ParityError
from edgeskel.export.onnx import export_onnx
from edgeskel.io import atomic_write_json, sha256_file
from edgeskel.validate.parity import check_parity, format_parity

_QUANT_KEYS = ("method", "per_channel", "symmetric_activations", "exclude_nodes", "calib_batch", "percentile",
               "quantize_bias", "op_types")


def torch_logits(model: nn.Module, x: np.ndarray, batch: int = 64) -> np.ndarray:
    """Reference logits from the PyTorch model (eval mode, no grad), in batches."""
    was = model.training
    model.eval()
    try:
        with torch.inference_mode():
            outs = [model(torch.from_numpy(np.ascontiguousarray(x[i : i + batch], dtype=np.float32))).float().numpy()
                    for i in range(0, len(x), batch)]
    finally:
        model.train(was)
    return np.concatenate(outs)


def _run(backend: str, artifact: Path, x: np.ndarray, precision: str, threads: int | None) -> np.ndarray:
    from edgeskel.runtime import get_runner

    with get_runner(backend, artifact, precision=precision, threads=threads) as runner:
        return runner.infer(x)


def _file_entry(path: Path, root: Path) -> dict[str, Any]:
    return {"path": str(path.relative_to(root)) if path.is_relative_to(root) else str(path),
            "bytes": path.stat().st_size, "sha256": sha256_file(path)}


def _versions(backend: str) -> dict[str, str]:
    import onnx
    import onnxruntime

    v = {"edgeskel": __version__, "torch": torch.__version__, "onnx": onnx.__version__,
         "onnxruntime": onnxruntime.__version__}
    if backend == "openvino":
        import nncf
        import openvino

        v.update(openvino=openvino.__version__, nncf=nncf.__version__)
    return v


def export_variant(
    model: nn.Module,
    spec: ModelSpec,
    backend: str,
    precision: str,
    out_dir: str | Path,
    calib: np.ndarray | None = None,
    val: tuple[np.ndarray, np.ndarray] | None = None,
    options: dict[str, Any] | None = None,
    unlabelled: np.ndarray | None = None,
) -> dict[str, Any]:
    """Produce the artifacts of one variant in `out_dir`, check parity, write export.json.

    `unlabelled` (N, C, T, V, M) clips without labels (not the calibration clips): INT8 gates
    also require INT8 to flip at most max_drop of the float model's predictions there
    (validate/agreement.py), since a small labelled slice cannot resolve a 1-point gate.

    `calib` (N,C,T,V,M) is required for int8. `val` = (x, y) is used for parity (else calib,
    else seeded random inputs) and, with options["max_drop"] (top-1 drop allowed, in percentage
    points like the device profiles' `max_top1_drop`), for INT8 accuracy gates.
    options: opset, batch (None = dynamic), threads, tolerances, parity_samples, method,
    per_channel, symmetric_activations, exclude_nodes, op_types, calib_batch, percentile,
    percentiles (candidates tried until the INT8 gate passes), max_drop, min_agreement,
    int8_fallback (default True), subset_size, preset, nncf_ranges (OpenVINO INT8: activation range
    estimators tried until the gate passes); TensorRT: batch_sizes (one static engine
    each), dla_core, allow_gpu_fallback, workspace_mb, tensorrt_version ("10.3": the route, see
    quantize/tensorrt_routes.py), typing ("strong" | "weak"), build_engine (default True);
    pipeline aliases: calibration, static_batch (see `_normalise_options`).
    Raises ParityError (after writing export.json with status "failed") on a parity miss.
    """
    opts = _normalise_options(options)
    exported = backend_names(exported=True)  # precisions per backend: edgeskel/backends/<backend>.py
    if backend not in exported:
        raise ConfigError(f"unknown export backend {backend!r}{did_you_mean(backend, exported)}; available: {exported}")
    if precision not in precisions(backend):
        raise ConfigError(f"backend {backend!r} supports precisions {list(precisions(backend))}, not {precision!r}")
    if precision == "int8" and (calib is None or len(calib) == 0):
        raise ExportError(f"{backend} int8 needs calibration data (calib: (N, C, T, V, M) array)")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    threads = opts.get("threads")
    t0 = time.perf_counter()

    # parity inputs + torch reference
    n_par = int(opts.get("parity_samples", 256))
    if val is not None:
        px, parity_source = np.asarray(val[0], np.float32)[:n_par], "val"
    elif calib is not None:
        px, parity_source = np.asarray(calib, np.float32)[:n_par], "calib"
    else:
        rng = np.random.default_rng(0)
        px, parity_source = rng.standard_normal((8, *spec.input_shape)).astype(np.float32), "random(seed=0)"
    if px.ndim != 5 or tuple(px.shape[1:]) != tuple(spec.input_shape):
        raise ExportError(f"{parity_source} data has shape {px.shape}; the model expects (N, {', '.join(map(str, spec.input_shape))})")
    ref = torch_logits(model, px)
    ux = None  # only an INT8 gate reads the unlabelled clips
    if precision == "int8" and unlabelled is not None and len(unlabelled) and opts.get("max_drop") is not None:
        ux = np.ascontiguousarray(unlabelled, dtype=np.float32)
    val_xy = None
    if val is not None:
        val_xy = (np.asarray(val[0], np.float32), np.asarray(val[1]).astype(np.int64).reshape(-1))

    record: dict[str, Any] = {
        "status": "running", "backend": backend, "precision": precision,
        "model": spec.name, "num_classes": spec.num_classes, "input_shape": list(spec.input_shape),
        "parity_source": parity_source,
        "options": {k: v for k, v in opts.items() if k != "tolerances"},
        "versions": _versions(backend),
    }
    files: list[Path] = []
    onnx_info: dict[str, Any] = {}
    onnx_fp32 = export_onnx(model, spec, out_dir / "model.onnx", opset=int(opts.get("opset", 17)), batch=opts.get("batch"),
                            einsum=einsum_mode(backend, opts), info=onnx_info)
    files.append(onnx_fp32)
    record["onnx"] = {"file": "model.onnx", "opset": int(opts.get("opset", 17)),
                      "dynamic_batch": opts.get("batch") is None, **onnx_info}
    try:
        artifact, run_backend, run_precision, judge = _make_artifact(
            backend, precision, model, onnx_fp32, out_dir, calib, val_xy, ref, px, opts, record, files, ux)
        record["artifact"] = str(artifact.relative_to(out_dir))
        record["runtime"] = {"backend": run_backend, "precision": run_precision, "threads": threads}
        out = _run(run_backend, artifact, px, run_precision, threads)
        record["parity"] = check_parity(ref, out, judge, opts.get("tolerances"))
        failures = []
        if not record["parity"]["passed"]:
            failures.append(f"{artifact}: parity check failed: {format_parity(record['parity'])}")
        if backend == "tensorrt":
            failures += _tensorrt_engine(out_dir, px, ref, precision, opts, record, files)
    except ExportError as exc:
        record.update(status="failed", error=str(exc))
        _write(out_dir, record, files, t0)
        raise
    record["status"] = "failed" if failures else "passed"
    if failures:
        record["error"] = "; ".join(failures)
    result = _write(out_dir, record, files, t0)
    if failures:
        raise ParityError(f"{record['error']} (see {out_dir / 'export.json'})")
    return result


def einsum_mode(backend: str, opts: dict[str, Any] | None = None) -> str:
    """How `torch.einsum` is exported for a backend: ONNX Runtime and OpenVINO run an Einsum
    node ("keep"); TensorRT runs it slowly, never in INT8 and not on DLA, so its routes get
    MatMul/Transpose/Reshape ("rewrite", export/einsum.py). options["einsum"] overrides."""
    chosen = (opts or {}).get("einsum") or ("rewrite" if backend == "tensorrt" else "keep")
    if chosen not in ("keep", "rewrite"):
        raise ConfigError(f"export option einsum must be 'keep' or 'rewrite', not {chosen!r}")
    return str(chosen)


def _normalise_options(options: dict[str, Any] | None) -> dict[str, Any]:
    """Accept the pipeline's option names too: calibration -> method, static_batch -> batch,
    batch_sizes (TensorRT: one engine per size), int8_fallback (False = gate only)."""
    opts = dict(options or {})
    if "calibration" in opts and "method" not in opts:
        opts["method"] = opts.pop("calibration")
    if "static_batch" in opts and "batch" not in opts:
        opts["batch"] = opts.pop("static_batch")
    sizes = opts.pop("batch_sizes", None)
    if sizes:  # TensorRT builds one static-shape engine per measured batch size
        opts["batch_sizes"] = sorted({int(b) for b in sizes})
    return {k: v for k, v in opts.items() if v is not None or k == "batch"}


def _write(out_dir: Path, record: dict[str, Any], files: list[Path], t0: float) -> dict[str, Any]:
    seen: set[Path] = set()
    entries = []
    for f in files:
        if f.exists() and f not in seen:
            seen.add(f)
            entries.append(_file_entry(f, out_dir))
    record["files"] = entries
    record["seconds"] = round(time.perf_counter() - t0, 3)
    atomic_write_json(out_dir / "export.json", record)
    artifact = str(out_dir / record["artifact"]) if "artifact" in record else None
    return {**record, "out_dir": str(out_dir), "artifact_path": artifact, "export_json": str(out_dir / "export.json")}


def _drop_fraction(opts: dict[str, Any]) -> float | None:
    """options["max_drop"] is in percentage points (as device profiles write it); the
    quantizers compare top-1 as a fraction. Mixing the two once let a 5-point INT8 drop pass a
    1-point gate, hence one conversion, here."""
    return None if opts.get("max_drop") is None else float(opts["max_drop"]) / 100.0


def _quant_kwargs(opts: dict[str, Any], **defaults: Any) -> dict[str, Any]:
    kw = {**defaults, **{k: opts[k] for k in _QUANT_KEYS if k in opts}}
    kw["exclude_nodes"] = list(kw.get("exclude_nodes") or [])
    return kw


def _ort_int8(onnx_fp32: Path, out: Path, calib: np.ndarray, val_xy, px: np.ndarray, ref: np.ndarray,
              opts: dict[str, Any], record: dict[str, Any],
              unlabelled: tuple[np.ndarray, np.ndarray] | None = None, **defaults: Any) -> Path:
    """ORT INT8 (QDQ); with a gate, the fallback search. `unlabelled`: (clips, their PyTorch
    logits) for the agreement gate."""
    from edgeskel.quantize.int8_search import quantize_with_fallback
    from edgeskel.quantize.ort_qdq import quantize_ort_int8

    kw = _quant_kwargs(opts, **defaults)
    if opts.get("max_drop") is not None and val_xy is not None:
        vx, vy = val_xy  # same samples as the parity inputs, so `ref` is their torch reference
        res = quantize_with_fallback(onnx_fp32, out, calib, vx, vy, ref, _drop_fraction(opts),
                                     min_agreement=opts.get("min_agreement"), percentiles=opts.get("percentiles"),
                                     max_rounds=6 if opts.get("int8_fallback", True) else 0,
                                     unlabelled=unlabelled, **kw)
        record["calibration"] = res["settings"]
        record["accuracy_gate"] = {k: v for k, v in res.items() if k != "settings"}
        if res["status"] != "passed":
            raise ExportError(f"{out}: INT8 accuracy gate not met: {res['reason']}")
    else:
        if opts.get("percentiles") and "percentile" not in kw:  # no gate to choose with: the first candidate
            kw["percentile"] = float(opts["percentiles"][0])
        record["calibration"] = quantize_ort_int8(onnx_fp32, out, calib, **kw)
        if opts.get("max_drop") is not None:
            record["accuracy_gate"] = {"status": "not checked", "reason": "no labelled validation data (val)"}
    return out


def _make_artifact(backend, precision, model, onnx_fp32, out_dir, calib, val_xy, ref, px, opts, record, files,
                   ux=None):
    """Create the variant's artifact; returns (artifact, runner backend, runner precision, parity precision).
    `ux`: unlabelled clips for the INT8 agreement gate (NNCF takes its float predictions from the
    fp32 IR itself; the ORT search compares with PyTorch's, computed here only for it)."""

    def ort_unlabelled() -> tuple[np.ndarray, np.ndarray] | None:
        return None if ux is None else (ux, torch_logits(model, ux))

    if val_xy is not None and len(val_xy[0]) > len(px):  # INT8 gates use the same samples as parity
        val_xy = (val_xy[0][: len(px)], val_xy[1][: len(px)])
    if get_backend(backend).runner == "ort":  # plain ONNX, run by ONNX Runtime (ort, portable onnx)
        if precision == "fp32":
            return onnx_fp32, "ort", "fp32", "fp32"
        out = _ort_int8(onnx_fp32, out_dir / "model.int8.onnx", calib, val_xy, px, ref, opts, record, ort_unlabelled(),
                        symmetric_activations=backend == "onnx")
        files.append(out)
        return out, "ort", "int8", "int8"

    if backend == "openvino":
        from edgeskel.quantize.openvino import quantize_nncf, to_openvino_ir

        if precision in ("fp32", "bf16"):
            xml = to_openvino_ir(onnx_fp32, out_dir / "model.xml", fp16=False)
            run_prec = precision
        elif precision == "fp16":
            xml = to_openvino_ir(onnx_fp32, out_dir / "model.fp16.xml", fp16=True)
            run_prec = "fp32"  # fp16 weights, f32 compute on CPU
        else:
            vx, vy = val_xy if val_xy is not None else (None, None)
            record["calibration"] = quantize_nncf(
                onnx_fp32, out_dir / "model.int8.xml", calib, vx, vy, _drop_fraction(opts),
                subset_size=int(opts.get("subset_size", 300)), preset=opts.get("preset", "performance"),
                ranges=opts.get("nncf_ranges") or ("minmax",),
                unlabelled=ux)
            xml, run_prec = out_dir / "model.int8.xml", "fp32"
            cal = record["calibration"]
            if "top1_int8" in cal:
                drop = cal["top1_fp32"] - cal["top1_int8"]
                u = cal.get("unlabelled")
                ok = drop <= _drop_fraction(opts) + 1e-12 and (u is None or u["passed"])
                record["accuracy_gate"] = {"status": "passed" if ok else "failed", "drop": drop,
                                           "max_drop": _drop_fraction(opts), "max_drop_points": opts["max_drop"],
                                           **({"unlabelled": u} if u is not None else {})}
                if not ok:
                    files += [xml, xml.with_suffix(".bin")]
                    tried = ", ".join(a["activation_ranges"] for a in cal.get("attempts", []))
                    flips = (f"; {100 * u['flip_rate']:.2f}% of {u['samples']} unlabelled predictions flipped "
                             f"(max {opts['max_drop']}%)" if u is not None else "")
                    raise ExportError(f"{xml}: INT8 accuracy gate not met: top-1 drop {100 * drop:.2f} points "
                                      f"(max_drop {opts['max_drop']} points){flips} with activation ranges {tried} "
                                      "and NNCF accuracy control")
        files += [xml, xml.with_suffix(".bin")]
        record["openvino"] = {"compress_to_fp16": precision == "fp16",
                              "inference_precision_hint": {"fp32": "f32", "bf16": "bf16"}[run_prec]}
        return xml, "openvino", run_prec, precision

    if backend != "tensorrt":  # registered in edgeskel/backends/ but no export path written here yet
        raise ConfigError(f"backend {backend!r} has no export path yet (edgeskel/export/api.py _make_artifact)")
    from edgeskel.quantize.tensorrt import prepare_tensorrt

    qdq = None
    if precision == "int8":
        qdq = _ort_int8(onnx_fp32, out_dir / "model.int8.trt.onnx", calib, val_xy, px, ref, opts, record,
                        ort_unlabelled(), symmetric_activations=True, quantize_bias=False)
        files.append(qdq)
    kit_dir = out_dir / "tensorrt"
    kit = prepare_tensorrt(onnx_fp32, kit_dir, precision, qdq_onnx=qdq, batch_sizes=opts.get("batch_sizes") or [1],
                           dla_core=opts.get("dla_core"), allow_gpu_fallback=bool(opts.get("allow_gpu_fallback", True)),
                           workspace_mb=int(opts.get("workspace_mb", 1024)),
                           tensorrt_version=opts.get("tensorrt_version"), typing=opts.get("typing"))
    files += [kit_dir / f for f in kit["files"]]
    record["tensorrt"] = {k: v for k, v in kit.items() if k not in ("lint", "files", "onnx", "source_onnx")}
    record["lint"] = kit["lint"]
    if not kit["lint"]["passed"]:
        raise ExportError(f"{kit_dir / 'model.onnx'}: not TensorRT-ready: " + "; ".join(kit["lint"]["errors"]))
    # The ONNX TensorRT will build is checked with ORT here, at the tolerance of what it holds:
    # strongly typed fp16 graphs at fp16, Q/DQ graphs at int8, the weakly typed fp32 graph at fp32.
    judge = precision if kit["typing"] == "strong" or precision == "int8" else "fp32"
    return kit_dir / "model.onnx", "ort", judge, judge


def _tensorrt_engine(out_dir: Path, px: np.ndarray, ref: np.ndarray, precision: str, opts: dict[str, Any],
                     record: dict[str, Any], files: list[Path]) -> list[str]:
    """Build and check the engine where possible; returns failure messages (empty if fine/skipped)."""
    from edgeskel.quantize.tensorrt import build_engine_local

    if not opts.get("build_engine", True):
        record["engine"] = {"status": "skipped", "reason": "disabled by options.build_engine"}
        return []
    engine = build_engine_local(out_dir / "tensorrt")
    record["engine"] = engine
    if engine["status"] == "skipped":
        return []
    if engine["status"] != "built" or not engine.get("engine"):
        return [f"TensorRT engine build failed: {engine.get('reason')}"]
    path = Path(engine["engine"])  # the largest batch's engine; inputs are chunked and padded to it
    files += [Path(p) for p in engine.get("engines", {}).values()]
    from edgeskel.runtime import get_runner

    with get_runner("tensorrt", path, precision=precision, dla_core=opts.get("dla_core")) as r:
        out = r.infer(px)
    record["engine_parity"] = check_parity(ref, out, precision, opts.get("tolerances"))
    if not record["engine_parity"]["passed"]:
        return [f"{path}: engine parity check failed: {format_parity(record['engine_parity'])}"]
    return []
