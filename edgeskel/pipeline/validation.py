"""Validate exported variants on the device and assemble report.json.

Local and remote measurements go through the same path: the variants are packed into a
bundle (artifacts + validation .npy + standalone `device_runner.py`); the bundle runs here
(`run_bundle`) or on the device over SSH (`run_remote`). So a local number and a device number
come from the same code, and a user can rerun the bundle by hand with `edgeskel device-run`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgeskel.errors import EdgeskelError, RemoteError
from edgeskel.pipeline.rundir import kill_point
from edgeskel.validate.emulation import emulated_entry, emulation_tags

if TYPE_CHECKING:
    from edgeskel.devices import DeviceProfile

BASELINE_PREFIX = "baseline-"  # the uncompressed reference's rows: baseline/<prefix><variant>/, same name in the bundle


def artifact_entry(v: Any, res: dict[str, Any], export_root: Path) -> dict[str, Any]:
    """A bundle entry (remote/bundle.py) for variant `v` exported to `export_root/<v.key>`
    (TensorRT: its engine-build kit). Used by the pipeline and by tune's device timing."""
    # Paths relative to this run folder (not the absolute ones recorded at export time), so a
    # moved or copied run folder validates its own artifacts.
    var_dir = Path(export_root) / v.key
    art: dict[str, Any] = {"name": v.key, "backend": v.backend, "precision": v.precision,
                           "path": str(var_dir / res["artifact"]) if res.get("artifact") else res["artifact_path"],
                           "options": v.options, "input_name": "skeleton",
                           "static_batch": (res.get("options") or {}).get("batch")}
    if v.backend == "tensorrt":
        from edgeskel.quantize.tensorrt import read_kit

        kit = var_dir / "tensorrt"
        manifest = read_kit(kit)  # what build_engine.sh writes: the engines bundle.json must name
        art["path"] = str(kit / "model.onnx")
        built = {n for e in manifest["engines"] for n in (e["engine"], e["log"], e["layer_info"])}
        art["files"] = [str(p) for p in sorted(kit.iterdir()) if p.is_file()
                        and p.name not in ("model.onnx", "build_engine.sh", "build.log", "timing.cache") and p.name not in built]
        art["build_script"] = str(kit / "build_engine.sh")
        art["engines"] = {str(e["batch"]): e["engine"] for e in manifest["engines"]}
        art["build_logs"] = {str(e["batch"]): e["log"] for e in manifest["engines"]}
        art["route"] = manifest.get("route")
        art["input_name"] = manifest.get("input_name", "skeleton")
        art["batch_sizes"] = [int(e["batch"]) for e in manifest["engines"]]
    return art


def stream_entry(name: str, v: Any, step_dir: Path) -> dict[str, Any]:
    """A bundle entry of one exported step graph (`step_dir`: its model file(s) and
    streaming.json) for profile variant `v`: ONNX Runtime's ONNX, OpenVINO's IR, or TensorRT's
    build kit (one batch-1 step engine built on the device, the entry a windowed TensorRT
    variant gets). Used by the pipeline's validate stage and by tune's device timing."""
    from types import SimpleNamespace

    from edgeskel.stream.contract import read_contract

    contract = read_contract(step_dir)
    art = contract["files"].get(v.backend, contract["files"]["onnx"])  # the backend's own file, else the ONNX
    if (step_dir / art).is_dir():  # a build kit (TensorRT): the ONNX its engine is built from
        art = f"{art}/model.onnx"
    stateful = bool((contract.get("openvino_stateful") or {}).get("preferred")) and v.backend == "openvino"
    if stateful:  # OpenVINO's ReadValue/Assign form measured faster at export (stream/stateful.py)
        art = contract["files"]["openvino_stateful"]
    entry = artifact_entry(SimpleNamespace(key=step_dir.name, backend=v.backend, precision=v.precision, options=v.options),
                           {"artifact": art}, step_dir.parent)
    entry.update(name=name, form="streaming", of=v.key, contract=str(step_dir / "streaming.json"),
                 input_name=contract["frame_input"], static_batch=int(contract.get("batch", 1)), stateful=stateful)
    return entry


def stream_artifact_entries(stream_res: dict[str, Any], profile: DeviceProfile, stream_root: Path) -> list[dict[str, Any]]:
    """Bundle entries of the stream stage's exported step graphs."""
    by_key = {v.key: v for v in profile.variants}
    return [stream_entry(name, by_key[res["of"]], stream_root / name)
            for name, res in (stream_res.get("variants") or {}).items() if res.get("status") == "passed"]


def _redact(target: Any, text: str) -> str:
    """target.redact (host, user, key and config paths) plus what ssh resolved them to (the
    real hostname/address and port from `ssh -G`, which error messages quote), so that a
    report names the profile only."""
    import re

    text = target.redact(text)
    for value, name in ((target.python, "<ssh.python>"), (target.workdir, "<ssh.workdir>")):
        if "/" in value and not value.startswith("~/edgeskel"):  # device paths can name users
            text = text.replace(value, name)
    eff = _ssh_effective(target)
    host = eff.get("hostname")
    if host and host != target.host:
        text = text.replace(host, "<host>")
    user = eff.get("user")
    if user:
        text = re.sub(rf"\b{re.escape(user)}@", "<user>@", text)
    for port in {str(target.port), eff.get("port") or "22"} - {"22"}:
        text = re.sub(rf"(:|port |-p ){port}\b", r"\1<port>", text)
    text = re.sub(r"\b\d{1,3}(\.\d{1,3}){3}\b", "<address>", text)  # any IPv4 address
    return re.sub(r"\[[0-9A-Fa-f:]*:[0-9A-Fa-f:]*\]", "[<address>]", text)  # bracketed IPv6


def _ssh_effective(target: Any) -> dict[str, str]:
    """`ssh -G`: the effective hostname/user/port after ~/.ssh/config (no connection made)."""
    import subprocess

    args = target.ssh_args()
    try:
        out = subprocess.run([args[0], "-G", *args[1:]], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return {}
    eff: dict[str, str] = {}
    for line in out.splitlines():
        key, _, value = line.partition(" ")
        if key in ("hostname", "user", "port") and value:
            eff[key] = value.strip()
    return eff


def runnable_here(backend: str) -> tuple[bool, str]:
    if backend != "tensorrt":
        return True, ""
    from edgeskel.runtime.tensorrt import gpu_unavailable_reason

    reason = gpu_unavailable_reason()
    return reason is None, reason or ""


def validate_variants(profile: DeviceProfile, spec: Any, export_root: Path, export_results: dict[str, Any],
                      val_x: np.ndarray, val_y: np.ndarray, torch_logits: np.ndarray, out_dir: Path,
                      host_arch: str, quiet: bool = False, baselines: dict[str, Any] | None = None,
                      baseline_root: Path | None = None, streams: dict[str, Any] | None = None,
                      stream_root: Path | None = None) -> dict[str, Any]:
    """Measure every successfully exported variant; returns the stage result. `baselines`: the
    uncompressed reference's export results ({"baseline-<variant>": ...} under baseline_root):
    they travel in the same bundle, so they are timed interleaved with the variants. `streams`:
    the stream stage's result (step graphs under stream_root, pipeline/streaming.py), measured
    in the same bundle on its recorded sequences."""
    from types import SimpleNamespace

    from edgeskel.remote.bundle import make_bundle
    from edgeskel.remote.device_runner import run_bundle

    log = (lambda s: None) if quiet else (lambda s: print(s, flush=True))
    exported = [v for v in profile.variants if export_results.get(v.key, {}).get("status") == "passed"]
    result: dict[str, Any] = {"measured": {}, "not_measured": {}, "outputs": []}
    if not exported:
        return result
    entries = [artifact_entry(v, export_results[v.key], export_root) for v in exported]
    for v in profile.variants if baselines and baseline_root is not None else []:
        key = BASELINE_PREFIX + v.key
        if (baselines.get(key) or {}).get("status") == "passed":
            b = SimpleNamespace(key=key, backend=v.backend, precision=v.precision, options=v.options)
            exported.append(b)
            entries.append(artifact_entry(b, baselines[key], baseline_root))
    stream_data = None
    if streams and stream_root is not None:
        from edgeskel.pipeline.streaming import SEQUENCES, load_sequences

        for e in stream_artifact_entries(streams, profile, stream_root):
            exported.append(SimpleNamespace(key=e["name"], backend=e["backend"], precision=e["precision"], options=e["options"]))
            entries.append(e)
        if any(e.get("form") == "streaming" for e in entries):
            stream_data = load_sequences(stream_root / SEQUENCES)
    bundle = make_bundle(out_dir / f"bundle-{profile.name}", entries,
                         val_x, val_y, torch_logits, profile, warmup=profile.measure.warmup, runs=profile.measure.runs,
                         stream_data=stream_data,
                         model=None if spec is None else {
                             "name": spec.name, "layout": spec.layout.to_dict(), "class_names": list(spec.class_names),
                             "preprocess": spec.preprocess.to_dict()})
    result["bundle"] = str(bundle.relative_to(out_dir.parent))
    result["bundle_id"] = json.loads((bundle / "bundle.json").read_text())["bundle_id"]
    kill_point("validate", "after_bundle")
    if profile.ssh is not None:
        from edgeskel.remote.remote import run_remote
        from edgeskel.remote.ssh import SSHTarget

        target = SSHTarget.from_profile(profile)
        try:
            doc = run_remote(bundle, target, out=out_dir / "results.json", log=log)
        except RemoteError as exc:
            reason = _redact(target, str(exc))
            for v in exported:
                result["not_measured"][v.key] = f"device unreachable or remote run failed: {reason}"
            result["incomplete"] = reason  # rerun this stage next time instead of caching the failure
            return result
        measured_on = doc.get("measured_on", target.label)
        emu = emulation_tags(doc)  # a qemu-user "device": real kernels, emulated timing
        for r in doc["variants"]:
            result["measured"][r["name"]] = {**r, "measured_on": measured_on, **emu}
        result["outputs"].append("results.json")
        result.update(measurement_conditions(doc))
        return result

    local, skipped = [], {}
    for v in exported:
        ok, why = runnable_here(v.backend)
        if ok:
            local.append(v.key)
        else:
            skipped[v.key] = f"not measured on device ({why}); run the bundle on the device (see below)"
    result["not_measured"] = skipped
    if local:
        doc = run_bundle(bundle, out=out_dir / "results.json", only=local, log=log)
        kill_point("validate", "after_results")
        same_arch = profile.arch == host_arch
        for r in doc["variants"]:
            r = {**r, "measured_on": "local", **emulation_tags(doc)}
            if not same_arch:
                r["host_only"], r["host_arch"] = True, host_arch
            result["measured"][r["name"]] = r
        result["outputs"].append("results.json")
        result.update(measurement_conditions(doc))
    return result


def measurement_conditions(doc: dict[str, Any]) -> dict[str, Any]:
    """What a results.json says about how it was timed (interleaved or one after another) and
    on what host (CPU model, cores, threads, load average): the report shows both, since a
    loaded or different CPU explains numbers that the gates alone do not."""
    env = doc.get("environment") or {}
    return {"conditions": {"timing": doc.get("timing"), "host": env.get("host"), "machine": env.get("machine"),
                           "emulation": env.get("emulation")}}


def assemble_report(profile: DeviceProfile, recipe: str, data_res: dict[str, Any], ref_res: dict[str, Any],
                    comp_res: dict[str, Any] | None, exp_res: dict[str, Any], val_res: dict[str, Any],
                    deployed_stats: dict[str, Any], libraries: dict[str, Any],
                    baseline: dict[str, Any] | None = None, run_root: Path | None = None,
                    streams: dict[str, Any] | None = None) -> dict[str, Any]:
    """report.json per the schema in edgeskel.report.schema, with the verdict and decision
    (edgeskel.report.verdict): `passed` only when every variant passed on the device.
    `run_root`: the run folder, where the device steps are typed (they name this edgeskel as a
    person can type it there, e.g. ../../../.venv/bin/edgeskel: `make` does not put it on PATH)."""
    from edgeskel.invocation import edgeskel_command
    from edgeskel.report.roofline import achieved_compute
    from edgeskel.report.schema import make_variant_entry
    ref_top1 = float(ref_res["top1"])
    variants = []
    for v in profile.variants:
        exp = exp_res["variants"].get(v.key, {})
        size_mb = _size_mb(exp)
        common = dict(size_mb=size_mb, params=deployed_stats["params"], gflops=deployed_stats["gflops"])
        if exp.get("status") != "passed":
            variants.append({**make_variant_entry(v.key, v.backend, v.precision, {"status": "error", "error": exp.get("reason") or exp.get("error") or "export failed"},
                                                  ref_top1, profile, "none", **common)})
            continue
        meas = val_res["measured"].get(v.key)
        if meas is None:
            e = make_variant_entry(v.key, v.backend, v.precision, None, ref_top1, profile, "none", **common)
            e["reason"] = val_res["not_measured"].get(v.key, e["reason"])
            variants.append(e)
            continue
        measured_on = meas.get("measured_on", "local")
        if exp.get("parity") is not None and meas.get("parity") is None:
            meas = {**meas, "parity": exp["parity"]}  # the export's parity numbers are gated too
        e = make_variant_entry(v.key, v.backend, v.precision, meas, ref_top1, profile, measured_on,
                               parity=exp.get("parity"), **common)
        summary = int8_summary(exp)
        if summary:
            e["int8_summary"] = summary
        if meas.get("tensorrt"):
            e["tensorrt"] = tensorrt_summary(meas["tensorrt"])
        if e.get("latency_by_batch") and not meas.get("emulated"):
            # A fraction of the profile's peak only where the profile's device measured (not this host).
            e["compute"] = achieved_compute(deployed_stats.get("gflops"), e["latency_by_batch"], v.precision,
                                            profile.peak, peak_applies=measured_on != "local")
        if meas.get("host_only") and e["status"] in ("pass", "fail"):
            e = host_check_entry(e, meas, profile, ref_top1)
        elif meas.get("emulated"):
            e = emulated_entry(e, meas, profile)
        variants.append(e)
    _note_slow_int8(variants)
    report = {
        "device": profile.name,
        "recipe": recipe,
        # Accuracy is on the test split only; the validation split chose epochs, models and gates.
        "dataset": {"num_samples": data_res.get("num_test", data_res["num_val"]), "num_val": data_res["num_val"],
                    "num_test": data_res.get("num_test"), "accuracy_split": "test" if "num_test" in data_res else "validation",
                    "validation": data_res.get("validation"), "num_calib": data_res["num_calib"], "layout": data_res["layout"],
                    "layout_definition": data_res.get("layout_definition"),
                    "classes": data_res["classes"], "info": data_res.get("info", {})},
        "reference": {"top1": ref_top1, "top5": ref_res.get("top5"), "params": ref_res.get("params"),
                      "gflops": ref_res.get("gflops"), "source": ref_res.get("source"),
                      **({"ensemble": ref_res["ensemble"]} if ref_res.get("ensemble") else {})},
        "compressed": ({"top1": comp_res["top1"], "totals": comp_res["totals"],
                        "selection": comp_res.get("selection"), "ranks": comp_res.get("ranks")} if comp_res else None),
        "deployed_model": deployed_stats,
        "gates": profile.gates.model_dump(mode="json"),
        "variants": variants,
        "passed": False,  # set by summarize(): PASSED only when every variant passed on the device
        "libraries": libraries,
    }
    if val_res.get("conditions"):
        report["measurement"] = val_res["conditions"]
    from edgeskel.validate.resolution import validation_warnings

    has_int8 = any(v.precision == "int8" for v in profile.variants)
    unlabelled = exp_res.get("unlabelled") or {}
    warnings = validation_warnings(data_res.get("num_val"), (comp_res or {}).get("selection"),
                                   profile.gates.max_top1_drop if has_int8 else None,
                                   sum(unlabelled.values()) if unlabelled else None)
    if warnings:
        report["validation_warnings"] = warnings
    if baseline:
        report["baselines"] = baseline_rows(profile, variants, baseline, val_res, ref_res)
    if streams:
        from edgeskel.pipeline.streaming import streaming_rows

        report["streaming"] = streaming_rows(profile, variants, streams, val_res)
        if profile.streaming is not None:
            report["streaming_gates"] = profile.streaming.model_dump(mode="json")
    if val_res.get("bundle"):
        report["bundle"] = val_res["bundle"]
        if val_res.get("bundle_id"):
            report["bundle_id"] = val_res["bundle_id"]
        name = Path(val_res["bundle"]).name
        # Every command runs in the run folder (where this report is); no host names or users.
        report["device_steps"] = [
            f"scp -r {val_res['bundle']} <device>:",
            f"ssh <device> 'cd {name} && python3 device_runner.py . --out results.json'",
            f"scp <device>:{name}/results.json results.json",
            f"{edgeskel_command(run_root)} results import . results.json",
        ]
        report["device_command"] = " && ".join(report["device_steps"][:2])
    if val_res.get("imported"):
        report["imported_results"] = val_res["imported"]
    from edgeskel.report.verdict import summarize

    return summarize(report)


def baseline_rows(profile: DeviceProfile, variants: list[dict[str, Any]], baseline: dict[str, Any], val_res: dict[str, Any],
                  ref_res: dict[str, Any]) -> list[dict[str, Any]]:
    """Reference rows: the uncompressed model on each variant's backend and precision, measured
    in the same run, with compressed/uncompressed ratios (latency speedup at batch 1, size,
    params, GFLOPs). Never gated; each compressed variant also gets its ratios as
    `vs_uncompressed`, and the decision (report/verdict.py) recommends shipping a row instead of
    its compressed variant when compression did not measure faster. Latency is left out where it
    is not the device's (a host check, flagged `host_check`, or an emulator, `emulated`), so no
    ratio compares numbers from different machines."""
    by_name = {v["name"]: v for v in variants}
    rows = []
    for pv in profile.variants:
        key = BASELINE_PREFIX + pv.key
        exp = (baseline.get("variants") or {}).get(key) or {}
        meas = val_res["measured"].get(key)
        row: dict[str, Any] = {"name": key, "of": pv.key, "backend": pv.backend, "precision": pv.precision,
                               "size_mb": _size_mb(exp), "params": ref_res.get("params"), "gflops": ref_res.get("gflops"),
                               "top1": None, "latency_ms": {"p50": None, "p99": None}, "throughput_fps": None,
                               "throughput_batch_size": None, "measured_on": "none"}
        if exp.get("status") != "passed":
            row["note"] = f"uncompressed export failed: {exp.get('reason') or exp.get('error') or 'unknown'}"
        elif meas is None:
            row["note"] = val_res["not_measured"].get(key, f"not measured on {profile.name}")
        elif meas.get("status", "ok") != "ok":
            row["note"] = f"measurement failed: {meas.get('error')}"
        else:
            row["top1"] = (meas.get("accuracy") or {}).get("top1")
            row["measured_on"] = meas.get("measured_on", "local")
            row["timing"] = meas.get("timing")
            row["peak_memory_mb"] = (meas.get("memory") or {}).get("peak_rss_mb")
            lat = meas.get("latency_ms") or {}
            if meas.get("host_only") or meas.get("emulated"):
                row["host_check" if meas.get("host_only") else "emulated"] = True
                row["peak_memory_mb"] = None  # the host's or the emulator's, not the device's
                row["note"] = "latency not the device's (host check or emulator): no latency ratio"
            elif lat:
                first = lat[min(lat, key=int)]
                best = max(lat, key=lambda b: lat[b].get("throughput_fps") or 0.0)
                row["latency_ms"] = {"p50": first.get("p50"), "p99": first.get("p99")}
                row["throughput_fps"], row["throughput_batch_size"] = lat[best].get("throughput_fps"), int(best)
        v = by_name.get(pv.key) or {}
        ratios = {"latency_speedup": _ratio(row["latency_ms"]["p50"], (v.get("latency_ms") or {}).get("p50")),
                  "size": _ratio(v.get("size_mb"), row["size_mb"]), "params": _ratio(v.get("params"), row["params"]),
                  "gflops": _ratio(v.get("gflops"), row["gflops"]),
                  "top1_change": (None if v.get("top1") is None or row["top1"] is None
                                  else round(float(v["top1"]) - float(row["top1"]), 3))}
        row["ratios"] = ratios
        if v:
            v["vs_uncompressed"] = ratios
        rows.append(row)
    return rows


def _ratio(a: Any, b: Any) -> float | None:
    """a / b rounded, None when either is unknown or b is 0."""
    return None if a is None or b in (None, 0) else round(float(a) / float(b), 4)


def host_check_entry(e: dict[str, Any], meas: dict[str, Any], profile: DeviceProfile, ref_top1: float) -> dict[str, Any]:
    """A variant measured on this host although the profile's device is another machine (e.g.
    ORT fp32 of a Jetson profile on an x86 laptop). Its accuracy is checked here, but none of its
    numbers are the device's: the row stays 'not measured on <device>' (no top-1, latency or
    memory in the device columns) and the host's accuracy numbers go to `host_check`. A failed
    host check fails the variant (it would fail on the device too); a passed one proves nothing
    about the device's latency or memory."""
    from edgeskel.validate.gates import gate_checks, verdict_of_checks

    checks = gate_checks(meas, profile, ref_top1, accuracy_only=True)
    status, reason = verdict_of_checks(checks)
    lat1 = (meas.get("latency_ms") or {}).get("1") or {}
    host = {"status": status, "reason": reason, "arch": meas.get("host_arch"),
            "top1": e.get("top1"), "top1_drop": e.get("top1_drop"), "agreement": e.get("agreement"),
            "gates": checks, "host_latency_ms_batch1": {k: lat1.get(k) for k in ("p50", "p99")} if lat1 else None,
            "note": f"accuracy checked on this host, not on a {profile.name}; latency and memory here are the host's"}
    out = {k: v for k, v in e.items() if k in ("name", "backend", "precision", "size_mb", "params", "gflops",
                                               "int8_summary", "parity")}
    out.update(measured_on="none", latency_ms={"p50": None, "p90": None, "p99": None}, throughput_fps=None,
               top1=None, top1_drop=None, agreement=None, host_check=host)
    if status == "fail":
        out.update(status="fail", reason=f"host check failed (on this host, not a {profile.name}): {reason}")
    else:
        out.update(status="skipped", reason=f"not measured on {profile.name}; host check passed "
                                            f"(accuracy on this host only; run the bundle on the device)")
    return out


def tensorrt_summary(trt: dict[str, Any]) -> dict[str, Any]:
    """What the device's TensorRT did with a variant (from results.json `tensorrt`): route, runtime,
    engines per batch and where the layers ran, plus one line for people."""
    layers = trt.get("layers") or {}
    where = "; ".join(f"batch {b}: {n['dla']} on DLA, {n['gpu']} on GPU" for b, n in sorted(layers.items(), key=lambda kv: int(kv[0]))
                      if n) or "layer placement not reported"
    text = (f"TensorRT {trt.get('runtime') or '?'} ({trt.get('route') or 'route unknown'}), one engine per batch size"
            + (f"; DLA core {trt['dla_core']}: {where}" if trt.get("dla_core") is not None else f"; {where}"))
    return {"route": trt.get("route"), "runtime": trt.get("runtime"), "dla_core": trt.get("dla_core"),
            "engines": trt.get("engines"), "layers": layers or None, "summary": text}


def int8_summary(exp: dict[str, Any]) -> str | None:
    """How an INT8 artifact met its accuracy gate, in one line for the report: a graph that
    keeps modules in float (and runs slower for it) must never be a surprise, nor may a few
    samples whose logits moved far (the parity rule tolerates them: see validate/parity.py)."""
    gate, cal = exp.get("accuracy_gate") or {}, exp.get("calibration") or {}
    text = None
    if gate.get("rounds"):
        from edgeskel.quantize.int8_search import module_group

        excluded = gate.get("excluded_nodes") or []
        text = f"INT8 gate met after {len(gate['rounds'])} quantization round(s)"
        if cal.get("percentile") is not None and cal.get("method") == "percentile":
            text += f", calibration percentile {cal['percentile']:g}"
        if excluded:
            groups = sorted({module_group(n) for n in excluded}, key=lambda g: (len(g), g))
            text += f"; {len(excluded)} nodes kept in float (in {', '.join(groups[:8])}{' ...' if len(groups) > 8 else ''})"
        else:
            text += "; every quantizable node in INT8"
    elif str(cal.get("tool", "")).startswith("nncf") and cal.get("top1_int8") is not None:
        text = (f"NNCF accuracy control: top-1 {100 * cal['top1_fp32']:.2f} -> {100 * cal['top1_int8']:.2f} on "
                f"{cal.get('val_samples')} gate samples, {cal.get('fake_quantize_nodes')} FakeQuantize nodes")
    par = exp.get("parity") or {}
    if text and par.get("samples_over"):
        unit = max(1.0, float(par.get("scale") or 0.0))
        text += (f"; parity: {par['samples_over']} of {par.get('n')} samples have a logit error above "
                 f"{par['tol']['quantile_bound'] / unit:g} x the logit scale (worst {par['max_abs'] / unit:.2f} x; "
                 f"p{100 * par['tol']['sample_quantile']:g} per-sample {par['quantile_abs'] / unit:.2f} x)")
    return text


def _note_slow_int8(variants: list[dict[str, Any]]) -> None:
    """An INT8 variant measured no faster than fp32 on the same backend gets a note saying so and
    how to check it: a noisy host can flip a close pair (less so now that the device runner times
    variants interleaved; the note says how they were timed), and on some models ORT's INT8
    kernels really are slower (CTR-GCN, docs/BENCHMARKS.md)."""
    fp32 = {v["backend"]: v for v in variants if v["precision"] == "fp32" and (v.get("latency_ms") or {}).get("p50")}
    for v in variants:
        ref = fp32.get(v["backend"])
        p50 = (v.get("latency_ms") or {}).get("p50")
        if v["precision"] != "int8" or ref is None or not p50 or p50 < ref["latency_ms"]["p50"]:
            continue
        how = "timed interleaved" if v.get("timing") == "interleaved" else "timed one after the other"
        note = (f"not faster than {ref['name']} at batch 1 here ({p50:.2f} vs {ref['latency_ms']['p50']:.2f} ms, {how})")
        if v["backend"] == "ort":
            note += "; `edgeskel ort-int8-study RUN_DIR` times both interleaved and shows what ORT fused"
        v["latency_note"] = note[0].upper() + note[1:]  # timing-dependent: kept apart from int8_summary


def _size_mb(exp: dict[str, Any]) -> float | None:
    art = exp.get("artifact")
    files = exp.get("files") or []
    if not art:
        return None
    total = 0
    weights = Path(art).with_suffix(".bin")  # an IR's weights: model.fp16.xml -> model.fp16.bin
    for f in files:
        p = Path(f.get("path") or f.get("file") or "")
        if p == Path(art) or (Path(art).suffix == ".xml" and p == weights):
            total += int(f.get("bytes") or f.get("size") or 0)
    return round(total / 1e6, 3) if total else None


__all__ = ["EdgeskelError", "assemble_report", "validate_variants"]
