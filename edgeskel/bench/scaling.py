"""Latency vs sequence length T and vs batch size, for the original model (PyTorch eager and
plain ONNX Runtime fp32) and the best compressed ONNX Runtime variant; compression +
fine-tune wall time vs model size from the cached compression runs.

The exported graphs have a fixed T, so each T gets its own export (cached); INT8 graphs are
re-calibrated at that T on training samples preprocessed to that length.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgeskel.bench.variants import BenchVariant, _cached, plain_onnx_export, spec_at_frames
from edgeskel.validate.latency import batch_from, interleaved_latency

if TYPE_CHECKING:
    from edgeskel.recipe import Recipe


def t_scaling(orig_model: Any, comp_model: Any, spec: Any, cspec: Any, best_ort: BenchVariant | None, dataset: Any,
              t_grid: list[int], root: Path, settings: Any, recipe: Recipe, log: Any) -> dict[str, Any]:
    """{"rows": [{T, variant, p50, p99}], "errors": {...}} at batch 1, interleaved per T."""
    from edgeskel.bench.models import arrays_at_frames
    from edgeskel.export import export_variant
    from edgeskel.runtime import get_runner

    rows, errors = [], {}
    for t in t_grid:
        vx, cx = arrays_at_frames(dataset, spec.preprocess, t, n_val=4, n_calib=32)
        sp, csp = spec_at_frames(spec, t), spec_at_frames(cspec, t)
        runners: dict[str, Any] = {"original: PyTorch eager fp32": get_runner("torch", "in-memory", threads=settings.threads,
                                                                              model=orig_model)}
        rec = _cached(root / f"T{t}", "plain-onnx", lambda d, sp=sp: {"artifact": plain_onnx_export(orig_model, sp, d / "model.onnx")})
        if rec.get("artifact"):
            runners["original: ONNX Runtime fp32"] = get_runner("ort", rec["artifact"], threads=settings.threads)
        else:
            errors[f"T={t} original ORT"] = rec.get("error")
        if best_ort is not None:
            prec = best_ort.precision

            def build(d: Path, csp=csp, cx=cx, prec=prec) -> dict[str, Any]:
                res = export_variant(comp_model, csp, "ort", prec, d, calib=cx if prec == "int8" else None,
                                     options={**recipe.export.quant_options(), "int8_fallback": False})
                return {"artifact": res["artifact_path"]}

            crec = _cached(root / f"T{t}", f"edgeskel-ort-{prec}", build)
            if crec.get("artifact"):
                runners[f"edgeskel: {best_ort.key.split('/')[-1]}"] = get_runner("ort", crec["artifact"], threads=settings.threads)
            else:
                errors[f"T={t} compressed ORT {prec}"] = crec.get("error")
        for r in runners.values():
            r.load()
        lat = interleaved_latency({k: r.infer for k, r in runners.items()}, {1: batch_from(vx, 1)}, settings.scaling_rounds,
                                  settings.scaling_runs, max(2, settings.warmup // 2), settings.max_seconds,
                                  label=f"T={t} scaling")
        for k, st in lat.items():
            rows.append({"T": t, "variant": k, "p50_ms": st["1"]["p50"], "p99_ms": st["1"]["p99"]})
        for r in runners.values():
            r.close()
        log(f"  T={t}: " + ", ".join(f"{k} {lat[k]['1']['p50']:.2f} ms" for k in lat))
    return {"batch": 1, "rows": rows, "errors": errors}


def batch_scaling(infers: dict[str, Any], val_x: np.ndarray, batch_grid: list[int], settings: Any, log: Any) -> dict[str, Any]:
    """Latency and throughput at each batch size, interleaved."""
    lat = interleaved_latency(infers, {b: batch_from(val_x, b) for b in batch_grid}, settings.scaling_rounds,
                              settings.scaling_runs, max(2, settings.warmup // 2), settings.max_seconds, label="batch scaling")
    rows = [{"batch": int(b), "variant": k, "p50_ms": st["p50"], "p99_ms": st["p99"], "throughput_fps": st["throughput_fps"]}
            for k, per in lat.items() for b, st in per.items()]
    log("  batch scaling: " + ", ".join(f"{r['variant']} b={r['batch']} {r['p50_ms']:.2f} ms" for r in rows))
    return {"T": None, "rows": rows}


def compression_times(cache_dir: Path, models: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Every cached compression run's recorded wall time (this and earlier benchmark runs), plus
    the compressed models this run measured (those reused from a pipeline run are not in the
    cache: their time comes from the pipeline's manifest)."""
    def row(model: Any, meta: dict[str, Any], run: Any) -> dict[str, Any]:
        keys = ("width", "data", "params_before", "params_after", "finetune_epochs", "wall_time_s", "finetune_wall_time_s")
        return {"model": model, **{k: meta.get(k) for k in keys}, "run": run}

    rows = []
    for m in (models or {}).values():
        c = m.get("compressed") or {}
        if c.get("wall_time_s") is not None:
            rows.append(row(m["model"], c, c.get("source") or c.get("checkpoint")))
    for meta in sorted(Path(cache_dir).glob("compress/*/bench-compress.json")):
        try:
            m = json.loads(meta.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        rows.append(row(m.get("model"), m, meta.parent.name))
    seen, unique = set(), []
    for r in rows:  # a cached bench run appears both ways
        key = (r["model"], r["params_before"], r["params_after"], r["wall_time_s"])
        if key not in seen:
            seen.add(key)
            unique.append(r)
    unique.sort(key=lambda r: (r["params_before"] or 0))
    return unique
