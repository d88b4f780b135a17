"""`edgeskel results import RUN_DIR results.json`: bring a by-hand device run into the report.

Without SSH, a user copies the run's bundle to the device, runs `device_runner.py` there and
copies `results.json` back. Importing it checks that it belongs to THIS run's bundle, then
feeds it to the same report stage an SSH run goes through, so the gates, verdict and report
are exactly what an SSH measurement would give. Refused (one `error:` line, nothing changed):
- a file that is not a device runner's results.json;
- results of another bundle (its `bundle_id` is not the one this run's validate stage made);
- a bundle whose files changed since it was made (digests in bundle.json);
- results whose artifact hashes (hashed on the device) differ from the bundle's;
- results measured on another architecture than the profile's (e.g. `device-run` on the x86
  host for a Jetson profile): those are host numbers, not the device's.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgeskel.errors import ConfigError
from edgeskel.io import atomic_write_bytes, atomic_write_json, sha256_file
from edgeskel.remote.device_runner import RESULTS_FORMAT
from edgeskel.validate.emulation import emulation_tags

if TYPE_CHECKING:
    from edgeskel.devices import DeviceProfile

IMPORTED_FILE = "imported-results.json"
MAX_RESULTS_MB = 64
_ARCH_ALIASES = {"arm64": "aarch64", "amd64": "x86_64", "x64": "x86_64"}


def _read_results(path: Path) -> dict[str, Any]:
    from edgeskel.io import InputRefused, max_input_bytes, read_regular_file

    if not path.exists():
        raise ConfigError(f"{path}: results file not found")
    try:  # untrusted: a FIFO or /dev/zero must not hang or fill memory (results are ~100 KB)
        raw = read_regular_file(path, max_input_bytes(MAX_RESULTS_MB))
    except InputRefused as exc:
        raise ConfigError(f"{path}: results file {exc}") from None
    try:
        doc = json.loads(raw.decode())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(doc, dict) or doc.get("format") != RESULTS_FORMAT:
        got = doc.get("format") if isinstance(doc, dict) else type(doc).__name__
        raise ConfigError(f"{path}: not a device runner results file (format {got!r}, want {RESULTS_FORMAT!r})")
    if not isinstance(doc.get("variants"), list) or not all(isinstance(v, dict) and isinstance(v.get("name"), str)
                                                           for v in doc["variants"]):
        raise ConfigError(f"{path}: `variants` must be a list of results with a `name` each")
    return doc


def _run_state(run_dir: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(manifest, validate stage record) of a finished pipeline run."""
    mpath = run_dir / "manifest.json"
    if not mpath.is_file():
        raise ConfigError(f"{run_dir}: not a pipeline run folder (no manifest.json); give runs/<recipe>/<device>")
    try:
        manifest = json.loads(mpath.read_text())
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{mpath}: corrupt manifest ({exc})") from None
    val = (manifest.get("stages") or {}).get("validate") or {}
    if val.get("status") not in ("done", "incomplete") or not (val.get("result") or {}).get("bundle"):
        raise ConfigError(f"{run_dir}: this run has no device bundle yet; run `edgeskel export --device ...` first")
    for stage in ("data", "reference", "export"):
        if ((manifest["stages"].get(stage) or {}).get("status")) != "done":
            raise ConfigError(f"{run_dir}: stage {stage!r} has not finished; rerun `edgeskel export --device ...` first")
    return manifest, val


def check_results(run_dir: Path, results_path: Path, doc: dict[str, Any], meta: dict[str, Any],
                  val_result: dict[str, Any], profile: DeviceProfile) -> None:
    """Every reason to refuse `doc` as this run's device results (ConfigError, one line)."""
    bundle = run_dir / val_result["bundle"]
    want_id = val_result.get("bundle_id") or meta.get("bundle_id")
    if meta.get("bundle_id") != want_id:
        raise ConfigError(f"{bundle}: bundle.json says {meta.get('bundle_id')!r}, but this run made {want_id!r}; "
                          "rerun `edgeskel export --device ...` to rebuild the bundle")
    if doc.get("bundle_id") != want_id:
        raise ConfigError(f"{results_path}: results of bundle {doc.get('bundle_id')!r}, not of this run's bundle "
                          f"{want_id!r} ({val_result['bundle']}); run this run's bundle on the device")
    digests = meta.get("sha256") or {}
    changed = [rel for rel, d in sorted(digests.items()) if not (bundle / rel).is_file() or sha256_file(bundle / rel) != d]
    if changed:
        raise ConfigError(f"{bundle}: files changed since the bundle was made ({', '.join(changed[:3])}); "
                          "rerun `edgeskel export --device ...` and measure the new bundle")
    measured = doc.get("artifact_sha256")
    if measured is not None:
        if not isinstance(measured, dict):
            raise ConfigError(f"{results_path}: artifact_sha256 must be a mapping of file -> sha256")
        bad = [rel for rel, h in sorted(measured.items()) if digests.get(rel) != h]
        if bad:
            raise ConfigError(f"{results_path}: artifact hashes differ from this run's bundle for {', '.join(bad[:3])}: "
                              "the device ran other artifacts than this bundle's")
    names = {v["name"]: v for v in meta.get("variants") or []}
    unknown = [v["name"] for v in doc["variants"] if v["name"] not in names]
    if unknown:
        raise ConfigError(f"{results_path}: variants {unknown} are not in this run's bundle (has {sorted(names)})")
    dupes = sorted({v["name"] for v in doc["variants"] if [w["name"] for w in doc["variants"]].count(v["name"]) > 1})
    if dupes:
        raise ConfigError(f"{results_path}: variants {dupes} appear more than once")
    for v in doc["variants"]:
        if v.get("status") == "ok" and not ({"accuracy", "latency_ms"} <= set(v)):
            raise ConfigError(f"{results_path}: variant {v['name']!r} is ok but lacks accuracy or latency_ms")
        if v.get("status") not in ("ok", "error"):
            raise ConfigError(f"{results_path}: variant {v['name']!r} has status {v.get('status')!r} (want ok or error)")
        if v["status"] == "ok":
            problem = _shape_problem(v)
            if problem:
                raise ConfigError(f"{results_path}: variant {v['name']!r}: {problem}")
    machine = str((doc.get("environment") or {}).get("machine") or "")
    machine = _ARCH_ALIASES.get(machine.lower(), machine.lower())
    if not machine:
        raise ConfigError(f"{results_path}: environment.machine is missing; cannot tell where it was measured")
    if machine != profile.arch:
        raise ConfigError(f"{results_path}: measured on a {machine} machine, but {profile.name} is {profile.arch}: "
                          f"these are not {profile.name} numbers (run the bundle on the device)")


def _is_num(x: Any) -> bool:
    return x is None or (isinstance(x, (int, float)) and not isinstance(x, bool))


def _shape_problem(v: dict[str, Any]) -> str | None:
    """What is wrong with the structure of one measured variant (the gates read these keys), or None."""
    acc, lat, mem = v.get("accuracy"), v.get("latency_ms"), v.get("memory")
    if not isinstance(acc, dict) or not all(_is_num(acc.get(k)) for k in ("top1", "top5", "agreement", "nonfinite",
                                                                          "num_samples", "max_abs_vs_ref")):
        return "accuracy must be a mapping of numbers (top1, agreement, nonfinite, ...)"
    if not isinstance(lat, dict) or not all(isinstance(b, str) and b.isdigit() and isinstance(x, dict)
                                            and all(_is_num(x.get(k)) for k in ("p50", "p90", "p99", "throughput_fps"))
                                            for b, x in lat.items()):
        return "latency_ms must map batch sizes (\"1\", \"16\", ...) to mappings of numbers (p50, p99, ...)"
    if mem is not None and (not isinstance(mem, dict) or not _is_num(mem.get("peak_rss_mb"))):
        return "memory must be a mapping with a numeric peak_rss_mb"
    return None


def _profile(manifest: dict[str, Any], run_dir: Path) -> Any:
    from edgeskel.devices import DeviceProfile, load_profile
    from edgeskel.io import sha256_json

    dev = (manifest.get("inputs") or {}).get("device") or {}
    if dev.get("profile"):
        return DeviceProfile.model_validate(dev["profile"])
    prof = load_profile(dev.get("name") or run_dir.name)  # runs from before the profile was recorded
    if sha256_json(prof.model_dump(mode="json")) != dev.get("sha256"):
        raise ConfigError(f"{run_dir}: the profile {prof.name!r} changed since this run; rerun `edgeskel export` first")
    return prof


def import_results(run_dir: str | Path, results_path: str | Path, log: Any = print) -> dict[str, Any]:
    """Check `results_path` against the run's bundle, merge it into the validate stage and
    re-run the report stage. Returns the new report."""
    from edgeskel.pipeline import run_report_stage  # the pipeline's own report stage
    from edgeskel.pipeline.rundir import RunDir
    from edgeskel.remote.bundle import read_bundle

    run_dir, results_path = Path(run_dir), Path(results_path)
    _run_state(run_dir)  # clear errors before taking the lock
    doc = _read_results(results_path)
    with RunDir(run_dir) as run:
        manifest, val = _run_state(run_dir)
        profile = _profile(manifest, run_dir)
        meta = read_bundle(run_dir / val["result"]["bundle"])
        check_results(run_dir, results_path, doc, meta, val["result"], profile)

        stage = run.manifest["stages"]["validate"]
        result = stage["result"]
        measured_on = f"imported://{profile.name}"
        emu = emulation_tags(doc)  # a run under qemu-user: accuracy counts, timing is labelled, never gated
        for r in doc["variants"]:
            result["measured"][r["name"]] = {**r, "measured_on": measured_on, **emu}
            result["not_measured"].pop(r["name"], None)
        atomic_write_json(run_dir / "validate" / IMPORTED_FILE, doc)
        result["imported"] = {"file": f"validate/{IMPORTED_FILE}", "bundle_id": doc["bundle_id"],
                              "variants": [r["name"] for r in doc["variants"]],
                              "environment": doc.get("environment")}
        from edgeskel.pipeline.validation import measurement_conditions

        result.update(measurement_conditions(doc))  # the device's timing method and host, not this host's
        if IMPORTED_FILE not in result["outputs"]:
            result["outputs"].append(IMPORTED_FILE)
        stage["outputs"] = {str(Path("validate") / rel): sha256_file(run_dir / "validate" / rel) for rel in result["outputs"]}
        if stage.get("status") == "incomplete" and all(v["name"] in result["measured"] for v in meta["variants"]):
            # An unreachable SSH device left validation to be retried; the device's own results
            # now cover every variant of this bundle, so a rerun keeps them instead of retrying.
            stage["status"] = "done"
            result.pop("incomplete", None)
        run.save_manifest()
        log(f"imported {len(doc['variants'])} variant(s) of {doc['bundle_id']} measured on {measured_on}")

        report_json = run_dir / "report" / "report.json"
        old = json.loads(report_json.read_text()) if report_json.is_file() else {}
        if "deployed_model" not in old:
            raise ConfigError(f"{run_dir}: no finished report to update; rerun `edgeskel export --device ...` first")
        stages = run.manifest["stages"]
        res = {k: (stages.get(k) or {}).get("result") for k in ("data", "reference", "export", "validate", "baseline", "stream")}
        res["compress"] = (stages.get("compress") or {}).get("result") if old.get("compressed") else None
        run_report_stage(run, profile, old["recipe"], res, old["deployed_model"], log)
        for name in ("report.json", "report.md", "report.html"):
            src, dst = run_dir / "report" / name, run_dir / name
            if not dst.is_file() or sha256_file(dst) != sha256_file(src):
                atomic_write_bytes(dst, src.read_bytes())
        return json.loads(report_json.read_text())

