"""Device runs under CPU emulation (qemu-user): real arm64 code, emulated timing.

Why a separate path: a bundle run by an arm64 Python under qemu (scripts/aarch64-userland.sh)
executes the device's real binaries and ONNX Runtime kernels, so its accuracy, agreement and
logit error are the device's. Its latency and peak RSS are the emulator's, typically tens of
times slower and with qemu's own memory. The runner says so in results.json
(`environment.emulation`, see device_runner.emulation); here such a variant keeps its accuracy
numbers, moves latency/memory into a labelled `emulation` block (never in the device columns,
the plot or the ship decision) and is not gated on them (validate.gates). A variant that met
its accuracy gates is still NOT MEASURED on the device: timing needs the real board.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from edgeskel.devices import DeviceProfile

# Report fields that hold timing/memory numbers: under emulation they are not the device's.
_TIMING = ("latency_ms", "latency_batch_size", "latency_samples_ms", "latency_by_batch", "throughput_fps",
           "peak_memory_mb")


def emulation_tags(results: dict[str, Any]) -> dict[str, Any]:
    """Fields to add to each measured variant of a device results.json: {} on real hardware,
    else {"emulated": <emulator>, "emulated_machine": <machine>} (gates and report read them)."""
    env = results.get("environment") or {}
    emu = env.get("emulation")
    return {"emulated": str(emu), "emulated_machine": env.get("machine")} if emu else {}


def emulated_entry(e: dict[str, Any], meas: dict[str, Any], profile: DeviceProfile) -> dict[str, Any]:
    """A report row measured under emulation: accuracy stays (real kernels), timing moves to
    `emulation` (labelled, never gated), and a variant that passed its accuracy gates becomes
    'skipped' (not measured on the device) so the verdict cannot say PASSED on emulated timing."""
    emu, machine = meas.get("emulated"), meas.get("emulated_machine")
    out = {k: v for k, v in e.items() if k not in _TIMING}
    out["emulation"] = {"emulator": emu, "machine": machine,
                        "note": f"timed under CPU emulation ({emu}): NOT {profile.name} latency or memory; never gated",
                        **{k: e.get(k) for k in _TIMING if e.get(k) is not None}}
    out.update(latency_ms={"p50": None, "p90": None, "p99": None}, throughput_fps=None)
    if e.get("status") == "pass":
        out["status"] = "skipped"
        out["reason"] = (f"accuracy gates passed on {machine or 'the device architecture'} "
                         f"under emulation ({emu}); latency and memory not measured on {profile.name} "
                         f"(emulated values are in the report, not gated): run the bundle on a real {profile.name}")
    elif e.get("status") == "fail":
        out["reason"] = f"under emulation ({emu}): {e.get('reason')}"
    return out
