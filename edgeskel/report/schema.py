"""The report.json schema, and building one variant entry from measurements + gates.

report = {"device", "recipe", "dataset": {...}, "reference": {"top1", ...},
          "variants": [{"name", "backend", "precision", "status": pass|fail|skipped|error,
                        "reason", "top1", "top1_drop", "agreement",
                        "latency_ms": {"p50", "p90", "p99"}, "throughput_fps", "throughput_batch_size", "size_mb",
                        "params", "gflops", "measured_on": local|ssh://<profile>|imported://<profile>|none,
                        "gates": [{gate, label, unit, bound, threshold, measured, passed, detail}],
                        "host_check"?: {...accuracy-only check on this host, never device numbers}, ...extra}],
          "streaming"?: [{"name": "<variant>-stream", "of": "<variant>", "status", "reason", "top1",
                          "windowed_top1", "top1_change", "latency_ms" (per step call), "stride",
                          "window", "state_kb", "decisions_per_s", "streams_sustained", "fps",
                          "speedup_per_decision", "gates", "host_check"?, ...}],
          "verdict": PASSED|FAILED|NOT MEASURED, "exit_code", "headline",
          "decision": {"recommended", "why", "runner_up", "runner_up_why", "rule"},
          "passed": bool (verdict == PASSED)}
Units: top1/agreement in %, top1_drop in points (reference - variant), latency in ms at
batch 1 (or the smallest measured batch), throughput in samples/s (best batch size).
Reports never contain hostnames, users or key paths: `measured_on` names the profile.
`local` = measured on this machine, which IS the profile's device (same architecture);
`imported://<profile>` = a device run's results.json brought in with `edgeskel results import`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from edgeskel.errors import ConfigError

if TYPE_CHECKING:
    from edgeskel.devices import DeviceProfile


class LatencySummary(BaseModel):
    p50: float | None = None
    p90: float | None = None
    p99: float | None = None


class VariantEntry(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: str
    backend: str
    precision: str
    status: Literal["pass", "fail", "skipped", "error"]
    reason: str = ""
    top1: float | None = None
    top1_drop: float | None = None
    agreement: float | None = None
    latency_ms: LatencySummary = Field(default_factory=LatencySummary)
    throughput_fps: float | None = None
    size_mb: float | None = None
    params: int | None = None
    gflops: float | None = None
    measured_on: str = Field(pattern=r"^(local|none|(ssh|imported)://[A-Za-z0-9._-]+)$")


class StreamingEntry(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: str
    of: str | None
    status: Literal["pass", "fail", "skipped", "error"]
    reason: str = ""
    top1: float | None = None
    windowed_top1: float | None = None
    latency_ms: LatencySummary = Field(default_factory=LatencySummary)
    measured_on: str = Field(pattern=r"^(local|none|(ssh|imported)://[A-Za-z0-9._-]+)$")


class Report(BaseModel):
    model_config = ConfigDict(extra="allow")
    device: str
    recipe: str
    dataset: dict[str, Any]
    reference: dict[str, Any]
    variants: list[VariantEntry]
    streaming: list[StreamingEntry] | None = None
    passed: bool
    verdict: Literal["PASSED", "FAILED", "NOT MEASURED"] | None = None


def validate_report(report: dict[str, Any]) -> dict[str, Any]:
    try:
        Report.model_validate(report)
    except ValidationError as exc:
        lines = [f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']} (given: {e.get('input')!r})" for e in exc.errors()]
        raise ConfigError("invalid report:\n  " + "\n  ".join(lines)) from None
    if "top1" not in report["reference"]:
        raise ConfigError("invalid report: reference.top1 is required")
    return report


def make_variant_entry(
    name: str,
    backend: str,
    precision: str,
    measurement: dict[str, Any] | None,
    reference_top1: float,
    profile: DeviceProfile,
    measured_on: str,
    size_mb: float | None = None,
    params: int | None = None,
    gflops: float | None = None,
    roofline_estimate_ms: float | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """One report row. `measurement` is a device-runner style variant result ({status,
    accuracy, latency_ms, memory, parity?}) or None when the variant was not measured."""
    from edgeskel.validate.gates import gate_checks, verdict_of_checks

    e: dict[str, Any] = {"name": name, "backend": backend, "precision": precision, "size_mb": size_mb,
                         "params": params, "gflops": gflops, "measured_on": measured_on,
                         "latency_ms": {"p50": None, "p90": None, "p99": None}, "throughput_fps": None,
                         "top1": None, "top1_drop": None, "agreement": None}
    if roofline_estimate_ms is not None:
        e["roofline_estimate_ms"] = roofline_estimate_ms
    e.update(extra)
    if measurement is None:
        e.update(status="skipped", reason=f"not measured on {profile.name}", measured_on="none")
        return e
    if measurement.get("status", "ok") != "ok":
        e.update(status="error", reason=str(measurement.get("error") or "measurement failed"))
        return e
    acc = measurement.get("accuracy") or {}
    e.update(top1=acc.get("top1"), top5=acc.get("top5"), agreement=acc.get("agreement"),
             max_abs_vs_ref=acc.get("max_abs_vs_ref"), nonfinite=acc.get("nonfinite"),
             num_samples=acc.get("num_samples"))
    if acc.get("top1") is not None:
        e["top1_drop"] = float(reference_top1) - float(acc["top1"])
    lat = measurement.get("latency_ms") or {}
    if lat:
        first = lat[min(lat, key=int)]
        e["latency_ms"] = {k: first.get(k) for k in ("p50", "p90", "p99")}
        e["latency_batch_size"] = int(min(lat, key=int))
        e["latency_samples_ms"] = first.get("samples_ms")
        best = max(lat, key=lambda b: lat[b].get("throughput_fps") or 0.0)
        e["throughput_fps"] = lat[best].get("throughput_fps")
        e["throughput_batch_size"] = int(best)  # FPS always says at which batch size
        e["latency_by_batch"] = {b: {k: v.get(k) for k in ("p50", "p90", "p99", "mean", "runs", "throughput_fps",
                                                         "spread", "noisy")}
                                 for b, v in lat.items()}
        e["latency_noisy"] = bool(first.get("noisy"))
        if measurement.get("timing"):
            e["timing"] = measurement["timing"]  # "interleaved" | "own process"
    mem = measurement.get("memory") or {}
    if mem.get("peak_rss_mb") is not None:
        e["peak_memory_mb"] = mem["peak_rss_mb"]
    e["gates"] = gate_checks(measurement, profile, reference_top1)
    status, reason = verdict_of_checks(e["gates"])
    e.update(status=status, reason=reason)
    return e
