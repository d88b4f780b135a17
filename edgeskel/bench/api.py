"""`run_bench`: side-by-side benchmark of edgeskel against what users would use instead.

For each model: reference (committed or trained+cached) -> compressed + fine-tuned (cached)
-> baseline and edgeskel artifacts (cached) -> accuracy of every variant on the test
split -> interleaved latency at batch 1 and the throughput batch -> ratios, the device
profile's best variant, the issue's targets (with a per-op profile when one is missed) ->
T and batch scaling. Writes `<out>/results.json`, PNG plots in `<out>/`, and the generated
section of the Markdown file (between markers, the rest of the file is kept).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import time
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from edgeskel.bench.machine import machine_description
from edgeskel.bench.measure import (
    TARGETS,
    add_derived,
    baseline_parity,
    batch_from,
    check_targets,
    interleaved_latency,
    pick_best,
)
from edgeskel.bench.settings import BenchSettings
from edgeskel.errors import ConfigError, EdgeskelError
from edgeskel.io import atomic_write_json, sha256_file
from edgeskel.pipeline import EXPORT_LOGIC_VERSION

if TYPE_CHECKING:
    from edgeskel.devices import DeviceProfile

RESULTS_FORMAT = "edgeskel-bench/1"


def _arrays_hash(*arrays: np.ndarray) -> str:
    h = hashlib.sha256()
    for a in arrays:
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()[:16]


def _loadavg() -> float | None:
    """1-minute load average (None where unsupported): recorded so a busy machine is visible."""
    import os

    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def _model_stats(model: Any, spec: Any) -> dict[str, Any]:
    from edgeskel.models.profile import count_flops, count_params

    return {"params": count_params(model), "gflops": count_flops(model, (1, *spec.input_shape)) / 1e9}


def bench_model(name: str, settings: BenchSettings, profile: DeviceProfile, machine: dict[str, Any], log: Any,
                progress: bool = True) -> dict[str, Any]:
    """Everything measured for one model (see the module docstring)."""
    from edgeskel.bench.models import pipeline_export_dir, prepare_model
    from edgeskel.bench.opprofile import op_profile
    from edgeskel.bench.scaling import batch_scaling, t_scaling
    from edgeskel.bench.variants import baseline_variants, cache_root, edgeskel_variants
    from edgeskel.checkpoint import load_checkpoint
    from edgeskel.validate.accuracy import evaluate_runner
    from edgeskel.validate.gates import apply_gates

    t_model = time.perf_counter()
    log(f"[bold]{name}[/]: preparing reference and compressed models")
    stages: dict[str, float] = {}
    mark = time.perf_counter()

    def stage(label: str) -> None:
        nonlocal mark
        now = time.perf_counter()
        stages[label] = round(now - mark, 2)
        mark = now

    prep = prepare_model(name, settings, profile.rank_multiple, log)
    stage("prepare models (train/compress or cache)")
    orig, spec, _ = load_checkpoint(prep.reference_ckpt)
    comp, cspec, _ = load_checkpoint(prep.compressed_ckpt)
    frames = spec.preprocess.num_frames
    ostats, cstats = _model_stats(orig, spec), _model_stats(comp, cspec)
    # exports choose (INT8 gates, parity) on the validation split; only the accuracy columns read test
    # (holdout() refuses data too small for a validation slice; a --val-samples cap of 0 empties it)
    if not len(prep.gate_x):
        raise ConfigError(f"{name}: no validation samples to gate the exports on; refusing to gate on the test split")
    gate = (prep.gate_x, prep.gate_y)
    data_hash = _arrays_hash(prep.calib_x, prep.val_x, prep.val_y, *gate)

    log(f"[bold]{name}[/]: building artifacts")
    base_root = cache_root(settings.cache_dir, f"{name}-baseline", prep.reference_ckpt, frames, {"data": data_hash})
    variants = baseline_variants(orig, spec, prep.reference_ckpt, prep.calib_x, base_root, machine["flags_summary"], log)
    edge_root = cache_root(settings.cache_dir, f"{name}-edgeskel", prep.compressed_ckpt, frames,
                           {"data": data_hash, "profile": profile.model_dump(mode="json"), "export_logic": EXPORT_LOGIC_VERSION,
                            "export": prep.recipe.export.model_dump(mode="json")})
    reuse = pipeline_export_dir(prep, profile)
    if reuse is not None:
        log(f"{name}: reusing the passed variants exported by the pipeline run ({reuse})")
    variants += edgeskel_variants(comp, cspec, profile, prep.recipe, prep.calib_x, gate, edge_root, log,
                                  pipeline_export=reuse)

    stage("build artifacts (or cache)")
    rows: dict[str, dict[str, Any]] = {}
    runners: dict[str, Any] = {}
    for v in variants:
        st = ostats if v.model == "original" else cstats
        rows[v.key] = {"key": v.key, "label": v.label, "group": v.group, "model": v.model, "backend": v.backend,
                       "precision": v.precision, "how": v.how, "artifact": str(v.artifact) if v.artifact else None,
                       "size_bytes": v.size_bytes, "size_mb": v.size_bytes / 1e6 if v.size_bytes else None, **st}
        if v.error:
            rows[v.key].update(status="error", reason=v.error)
            continue
        try:
            runners[v.key] = v.make_runner(settings.threads, orig if v.model == "original" else comp).load()
        except EdgeskelError as exc:
            rows[v.key].update(status="error", reason=str(exc))

    log(f"[bold]{name}[/]: accuracy on {len(prep.val_y)} test samples")
    ref_logits = None
    for k, r in list(runners.items()):  # torch eager first: it is the reference for agreement and drops
        try:
            acc = evaluate_runner(r, prep.val_x, prep.val_y, batch_size=16, ref_logits=ref_logits, return_logits=True)
        except Exception as exc:  # noqa: BLE001 - a runtime failing on this model marks the variant only
            if k == "baseline/torch-fp32":
                raise
            rows[k].update(status="error", reason=f"inference failed: {type(exc).__name__}: {str(exc).splitlines()[0]}")
            runners.pop(k).close()
            continue
        if ref_logits is None:
            ref_logits = acc["logits"]
        rows[k].update({m: acc[m] for m in ("top1", "top5", "agreement", "max_abs_vs_ref", "nonfinite", "num_samples")})
        if rows[k]["group"] == "baseline" and k != "baseline/torch-fp32":
            # the rule edgeskel's own artifacts must pass at export, applied to what users would use
            # instead (measured, not gating: a baseline is what it is)
            rows[k]["parity_vs_torch"] = baseline_parity(ref_logits, acc["logits"], rows[k]["precision"])
    stage("accuracy")
    torch_key = "baseline/torch-fp32"
    ref_top1 = float(rows[torch_key]["top1"])
    from edgeskel.bench.streams import stream_rows  # step graphs beside the windowed rows (issue 30)

    log(f"[bold]{name}[/]: streaming rows (step graphs replayed on {len(prep.val_y)} test sequences)")
    stream_root = {w: cache_root(settings.cache_dir, f"{name}-stream-{w}", ck, frames, {"export_logic": EXPORT_LOGIC_VERSION})
                   for w, ck in (("original", prep.reference_ckpt), ("compressed", prep.compressed_ckpt))}
    srows, sinfers, stream_skipped = stream_rows({"original": (orig, spec), "compressed": (comp, cspec)}, prep.dataset,
                                                 len(prep.val_y), stream_root, settings.threads, log)
    rows.update(srows)
    stage("streaming rows")

    tb = settings.throughput_batch
    log(f"[bold]{name}[/]: interleaved latency, {settings.rounds} rounds x {len(runners)} variants, batch 1 and {tb}")
    lat = interleaved_latency({**{k: r.infer for k, r in runners.items()}, **sinfers},
                              {1: batch_from(prep.val_x, 1), tb: batch_from(prep.val_x, tb)},
                              settings.rounds, settings.runs, settings.warmup, settings.max_seconds, progress,
                              label=f"{name} latency", only={k: [1] for k in sinfers})
    for k in [*runners, *sinfers]:
        r = rows[k]
        r["latency_ms"] = lat[k]
        r["top1_drop"] = ref_top1 - r["top1"]
        r["accuracy_ok"] = bool(r["top1_drop"] <= profile.gates.max_top1_drop + 1e-9 and not r["nonfinite"])
        r["status"], r["reason"] = apply_gates({"accuracy": r, "latency_ms": lat[k]}, profile, ref_top1)

    stage("latency")
    baselines = [k for k in runners if rows[k]["group"] == "baseline"]
    edgeskel = [k for k in runners if rows[k]["group"] == "edgeskel"]
    ok_base = [k for k in baselines if rows[k]["accuracy_ok"]]
    best_baseline = min(ok_base, key=lambda k: rows[k]["latency_ms"]["1"]["p50"]) if ok_base else None
    best = pick_best(rows, edgeskel)
    add_derived(rows, torch_key, best_baseline, "baseline/ort-fp32", machine["peak"]["gflops_fp32"], tb)
    targets = check_targets(rows[best] if best else None, ref_top1)

    profiled = None
    if any(not t["met"] for t in targets) or settings.profile_always:
        pk = best or (min(edgeskel, key=lambda k: rows[k]["latency_ms"]["1"]["p50"]) if edgeskel else None)
        if pk is not None:
            log(f"[bold]{name}[/]: per-op profile of {pk}")
            v = next(v for v in variants if v.key == pk)
            try:
                profiled = {"variant": pk, "batch": 1, **op_profile(v, batch_from(prep.val_x, 1), settings.threads,
                                                                      settings.profile_runs)}
            except Exception as exc:  # noqa: BLE001 - a profiler failure must not lose the benchmark
                profiled = {"variant": pk, "error": f"{type(exc).__name__}: {exc}"}

    stage("op profile")
    # scaling: original (torch eager, plain ORT fp32) vs the best compressed ORT variant
    ort_edge = [k for k in edgeskel if rows[k]["backend"] == "ort"]
    ort_ok = [k for k in ort_edge if rows[k]["status"] == "pass"] or ort_edge
    best_ort = min(ort_ok, key=lambda k: rows[k]["latency_ms"]["1"]["p50"]) if ort_ok else None
    best_ort_v = next((v for v in variants if v.key == best_ort), None)
    log(f"[bold]{name}[/]: scaling (T {settings.t_grid}, batch {settings.batch_grid})")
    sc_infers = {lbl: runners[k].infer for lbl, k in (("original: PyTorch eager fp32", torch_key),
                                                       ("original: ONNX Runtime fp32", "baseline/ort-fp32"),
                                                       (f"edgeskel: {(best_ort or '').split('/')[-1]}", best_ort)) if k in runners}
    bscale = batch_scaling(sc_infers, prep.val_x, settings.batch_grid, settings, log)
    bscale["T"] = frames
    stage("batch scaling")
    for r in runners.values():
        r.close()
    scale_root = cache_root(settings.cache_dir, f"{name}-scaling", prep.compressed_ckpt, frames,
                            {"reference": sha256_file(prep.reference_ckpt), "export": prep.recipe.export.model_dump(mode="json")})
    tscale = t_scaling(orig, comp, spec, cspec, best_ort_v, prep.dataset, settings.t_grid, scale_root, settings, prep.recipe, log)

    stage("T scaling")
    return {
        "model": name,
        "recipe_source": settings.recipes.get(name),  # None: recipes/<model>-lortsar.yaml
        "recipe": prep.recipe.name,
        "data": prep.recipe.data.spec,
        "layout": prep.dataset.layout.name,
        "num_val": int(len(prep.val_y)),
        "num_calib": int(len(prep.calib_x)),
        "input_shape": list(spec.input_shape),
        "reference": {"checkpoint": str(prep.reference_ckpt), **prep.reference_info, "top1": ref_top1, **ostats},
        "compressed": {"checkpoint": str(prep.compressed_ckpt), **prep.compression, **cstats},
        "variants": rows,
        "torch_key": torch_key,
        "best": best,
        "best_baseline": best_baseline,
        "best_ort": best_ort,
        "targets": targets,
        "op_profile": profiled,
        "streaming_skipped": stream_skipped,
        "scaling": {"T": tscale, "batch": bscale},
        "wall_time_s": round(time.perf_counter() - t_model, 1),
        "stage_seconds": stages,
    }


_NOT_COMPARED = ("command", "models", "resume", "out", "markdown", "recipes")  # recipes: compared per model


def _comparable(settings_json: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in settings_json.items() if k not in _NOT_COMPARED}


def resumable_models(settings: BenchSettings, results: dict[str, Any], log: Any) -> dict[str, Any]:
    """Models measured by an earlier (possibly stopped) run with the same settings, machine and
    library versions; anything else is measured again, and the reason is logged."""
    import json

    path = settings.out / "results.json"
    if not path.is_file():
        return {}
    try:
        old = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        log(f"[yellow]--resume: {path} is unreadable ({exc}); measuring every model[/]")
        return {}
    checks = (("format", old.get("format"), results["format"]),
              ("settings", _comparable(old.get("settings") or {}), _comparable(results["settings"])),
              ("CPU", (old.get("machine") or {}).get("cpu_model"), results["machine"]["cpu_model"]),
              ("library versions", old.get("libraries"), results["libraries"]))
    for what, was, now in checks:
        if was != now:
            log(f"[yellow]--resume: {path} was measured with different {what}; measuring every model[/]")
            return {}
    return {k: v for k, v in (old.get("models") or {}).items()
            if k in settings.models and v.get("recipe_source") == settings.recipes.get(k)}


def _write_results(results: dict[str, Any], settings: BenchSettings, t0: float) -> None:
    """results.json, then plots + Markdown, then results.json again with their paths (so a
    plotting failure still leaves the measurements on disk)."""
    from edgeskel.bench.report import write_outputs

    results["wall_time_s"] = round(time.perf_counter() - t0, 1)
    settings.out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(settings.out / "results.json", results)
    results["outputs"] = write_outputs(results, settings)
    atomic_write_json(settings.out / "results.json", results)


def run_bench(settings: BenchSettings, log: Any = None, progress: bool = True) -> dict[str, Any]:
    """Run the benchmark for `settings.models`; returns (and writes) the results document."""
    from edgeskel.bench.scaling import compression_times
    from edgeskel.devices import load_profile
    from edgeskel.pipeline.rundir import library_versions

    log = log or (lambda s: None)
    t0 = time.perf_counter()
    torch.set_num_threads(settings.threads)
    profile = load_profile(settings.device)
    machine = machine_description(settings.threads)
    results: dict[str, Any] = {
        "format": RESULTS_FORMAT,
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "command": settings.command,
        "settings": settings.to_json(),
        "machine": machine,
        "libraries": library_versions(),
        "device_profile": {"name": profile.name, "gates": profile.gates.model_dump(mode="json"),
                           "variants": profile.variant_names},
        "targets": TARGETS,
        "timing": {"method": "in-process, interleaved round-robin (start rotated each round), pooled samples; "
                             "edgeskel.remote.device_runner.time_infer/latency_stats",
                   "threads": settings.threads, "warmup": settings.warmup, "runs_per_round": settings.runs,
                   "rounds": settings.rounds, "max_seconds_per_block": settings.max_seconds,
                   "torch_threads": torch.get_num_threads()},
        "models": {},
    }
    machine["load_average_start"] = _loadavg()
    earlier = resumable_models(settings, results, log) if settings.resume else {}
    for i, name in enumerate(settings.models):
        if name in earlier:
            log(f"[bold]{name}[/]: kept from the earlier run ({earlier[name].get('measured_at')}), --resume")
            results["models"][name] = earlier[name]
        else:
            results["models"][name] = bench_model(name, settings, profile, machine, log, progress)
            results["models"][name]["measured_at"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        if i + 1 < len(settings.models):  # a stopped run keeps every finished model (and --resume skips them)
            results["complete"], results["missing_models"] = False, settings.models[i + 1:]
            _write_results(results, settings, t0)
    results.pop("missing_models", None)
    results["complete"] = True
    machine["load_average_end"] = _loadavg()
    busy = max(machine["load_average_start"] or 0, machine["load_average_end"] or 0)
    if busy > settings.threads + 0.5:
        log(f"[yellow]warning: load average {busy:.1f} with {settings.threads} benchmark threads: other processes "
            "competed for the CPU, so latencies are inflated and noisy; rerun on an idle machine[/]")
    results["compression_times"] = compression_times(settings.cache_dir, results["models"])
    _write_results(results, settings, t0)
    return results
