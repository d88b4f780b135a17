"""A real aarch64 device on an x86 machine (issue 14, item 8): the bundle's device_runner.py run
by an arm64 Python + numpy + ONNX Runtime under qemu-user, reached by the SSH runner through the
real loopback sshd of test_remote_ssh.py.

The slow test needs the userland that `make aarch64-userland` (scripts/aarch64-userland.sh)
builds under ~/.cache/edgeskel-aarch64 and is skipped, saying so, without it. It runs the tiny
recipe on a `raspberry-pi-5` profile whose latency and memory budgets no run could meet (0.001
ms, 1 MB): accuracy and parity must land in the report from the arm64 run, and the emulated
timing must be labelled and not gated, so the verdict is NOT MEASURED, never FAILED on it.
The fast tests check the emulation detection and the gate/report rules without qemu.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml
from test_reliability_interrupt import RECIPE
from test_remote_ssh import sshd  # noqa: F401 - module-scoped fixture: a real sshd on 127.0.0.1

from edgeskel.devices import load_profile, profile_from_dict, profiles_dir
from edgeskel.remote.device_runner import emulation, run_bundle
from edgeskel.validate.emulation import emulated_entry, emulation_tags
from edgeskel.validate.gates import gate_checks, verdict_of_checks

REPO = Path(__file__).resolve().parents[1]
AARCH64_HOME = Path(os.environ.get("EDGESKEL_AARCH64_HOME")
                    or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "edgeskel-aarch64")
WRAPPER = AARCH64_HOME / "bin" / "python3"

X86_CPUINFO = "processor\t: 0\nvendor_id\t: GenuineIntel\nflags\t\t: fpu sse sse2 avx2\n"
ARM_CPUINFO = "processor\t: 0\nFeatures\t: fp asimd asimddp\nCPU implementer\t: 0x41\nCPU part\t: 0xd0b\n"


# ----------------------------------------------------------------------------- fast (no qemu)

def test_emulation_detection():
    assert emulation("aarch64", ARM_CPUINFO, {}) is None  # a real Arm board
    assert emulation("x86_64", X86_CPUINFO, {}) is None  # a real x86 machine
    assert "arm64 process, x86 /proc/cpuinfo" in emulation("aarch64", X86_CPUINFO, {})  # qemu-user / docker arm64
    assert "x86_64 process, Arm" in emulation("x86_64", ARM_CPUINFO, {})
    assert emulation("aarch64", ARM_CPUINFO, {"EDGESKEL_EMULATOR": "qemu-user:cortex-a76"}) == "qemu-user:cortex-a76"


def _strict_pi(**gates) -> object:
    data = yaml.safe_load((profiles_dir() / "raspberry-pi-5.yaml").read_text())
    data["gates"].update(gates)
    return profile_from_dict(data)


MEAS = {"status": "ok", "accuracy": {"num_samples": 16, "top1": 75.0, "top5": 100.0, "nonfinite": 0,
                                     "agreement": 100.0, "max_abs_vs_ref": 2e-6},
        "latency_ms": {"1": {"p50": 40.0, "p90": 45.0, "p99": 50.0, "runs": 5, "throughput_fps": 25.0}},
        "memory": {"peak_rss_mb": 300.0}}


def test_emulated_timing_is_labelled_and_never_gated():
    from edgeskel.report.schema import make_variant_entry
    from edgeskel.report.verdict import overall_verdict

    prof = _strict_pi(p99_latency_ms=0.001, max_memory_mb=1)
    assert verdict_of_checks(gate_checks(MEAS, prof, 75.0))[0] == "fail"  # real hardware: gated
    tags = emulation_tags({"environment": {"machine": "aarch64", "emulation": "qemu-user:cortex-a76"}})
    assert emulation_tags({"environment": {"machine": "aarch64", "emulation": None}}) == {}
    meas = {**MEAS, **tags}
    checks = {c["gate"]: c for c in gate_checks(meas, prof, 75.0)}
    for gate in ("p99_latency_ms", "max_memory_mb"):
        assert checks[gate]["passed"] is None and checks[gate]["measured"] is None
        assert "not gated" in checks[gate]["detail"]
    assert "50.00 ms under emulation, qemu-user:cortex-a76" in checks["p99_latency_ms"]["detail"]
    e = emulated_entry(make_variant_entry("ort-fp32", "ort", "fp32", meas, 75.0, prof, "ssh://raspberry-pi-5"),
                       meas, prof)
    assert e["top1"] == 75.0 and e["agreement"] == 100.0  # the arm64 kernels' accuracy stays
    assert e["latency_ms"]["p99"] is None and e["throughput_fps"] is None and "peak_memory_mb" not in e
    assert e["emulation"]["latency_ms"]["p99"] == 50.0 and e["emulation"]["peak_memory_mb"] == 300.0
    assert e["emulation"]["emulator"] == "qemu-user:cortex-a76" and e["emulation"]["machine"] == "aarch64"
    assert e["status"] == "skipped" and "run the bundle on a real raspberry-pi-5" in e["reason"]
    ov = overall_verdict([e], "raspberry-pi-5")
    assert ov["verdict"] == "NOT MEASURED" and "1 accuracy-checked under emulation" in ov["headline"]  # never PASSED
    bad = {**meas, "accuracy": {**meas["accuracy"], "top1": 10.0}}  # an accuracy failure stays a failure
    e = emulated_entry(make_variant_entry("ort-int8", "ort", "int8", bad, 75.0, _strict_pi(), "ssh://raspberry-pi-5"),
                       bad, prof)
    assert e["status"] == "fail" and "under emulation" in e["reason"] and "top-1 10.00%" in e["reason"]


# ----------------------------------------------------------------------------- slow: real arm64 under qemu

def _userland() -> Path:
    if not (WRAPPER.is_file() and (AARCH64_HOME / ".complete").is_file()):
        pytest.skip(f"aarch64 userland not set up in {AARCH64_HOME}: run `make aarch64-userland` "
                    f"(scripts/aarch64-userland.sh, about 35 s with apt and PyPI reachable)")
    return WRAPPER


@pytest.mark.slow
def test_arm64_cpu_profile_runs_remote_in_emulated_aarch64(sshd, tmp_path):  # noqa: F811
    """`run_remote` alone with the shipped arm64-cpu profile: the runtime check sees aarch64 (the
    profile's arch; an x86 python would be refused), results come back labelled as emulated."""
    from test_devices_common import tiny_data, tiny_onnx

    from edgeskel.remote import SSHTarget, make_bundle, run_remote

    wrapper = _userland()
    w, b = tiny_onnx(tmp_path / "m.onnx")
    x, y, ref = tiny_data(w, b)
    prof = load_profile("arm64-cpu")
    bundle = make_bundle(tmp_path / "run" / "bundle", [{"name": "ort-fp32", "backend": "ort", "precision": "fp32",
                                                         "path": tmp_path / "m.onnx"}], x, y, ref, prof, runs=5)
    target = SSHTarget(name="arm64-cpu", host="testdevice", config_file=str(sshd["dir"] / "ssh_config"),
                       workdir=str(tmp_path / "remote"), python=str(wrapper), connect_timeout_s=10,
                       command_timeout_s=600)
    doc = run_remote(bundle, target, out=tmp_path / "results.json")
    assert doc["measured_on"] == "ssh://arm64-cpu" and doc["environment"]["machine"] == "aarch64"
    assert doc["environment"]["emulation"].startswith("qemu-user:")
    v = doc["variants"][0]
    assert v["status"] == "ok", v
    local = run_bundle(bundle, tmp_path / "x86.json", isolate=False)["variants"][0]
    assert v["accuracy"]["top1"] == local["accuracy"]["top1"] == 90.0  # 4 of 40 labels flipped
    assert v["accuracy"]["agreement"] == 100.0 and v["accuracy"]["max_abs_vs_ref"] < 1e-4


@pytest.mark.slow
def test_raspberry_pi_5_bundle_in_emulated_aarch64_over_ssh(sshd, tmp_path):  # noqa: F811
    from edgeskel.pipeline import run_pipeline

    wrapper = _userland()
    data = yaml.safe_load((profiles_dir() / "raspberry-pi-5.yaml").read_text())
    data["measure"] = {"warmup": 1, "runs": 5}
    data["rank_multiple"] = 1  # the tiny recipe's model is too narrow for the Pi's NEON rank multiple
    # budgets nothing meets: if emulated timing were gated, the run would be FAILED
    data["gates"].update(max_top1_drop=100, p99_latency_ms=0.001, max_memory_mb=1)
    data["ssh"] = {"host": "testdevice", "config_file": str(sshd["dir"] / "ssh_config"), "python": str(wrapper),
                   "workdir": str(tmp_path / "remote"), "connect_timeout_s": 10, "command_timeout_s": 900}
    (tmp_path / "raspberry-pi-5.yaml").write_text(yaml.safe_dump(data))
    (tmp_path / "recipe.yaml").write_text(RECIPE)
    assert load_profile(tmp_path / "raspberry-pi-5.yaml").name == "raspberry-pi-5"

    report = run_pipeline(str(tmp_path / "raspberry-pi-5.yaml"), recipe=str(tmp_path / "recipe.yaml"),
                          out_root=tmp_path / "runs", quiet=True, log=lambda s: None)
    rd = tmp_path / "runs" / "tiny" / "raspberry-pi-5"
    results = json.loads((rd / "validate" / "results.json").read_text())
    env = results["environment"]
    assert env["machine"] == "aarch64" and env["emulation"].startswith("qemu-user:")  # really arm64, labelled
    pins = dict(line.split("==") for line in (REPO / "requirements.txt").read_text().split()
                if line.startswith(("numpy==", "onnxruntime==")))
    assert env["numpy"] == pins["numpy"] and env["runtimes"]["ort"] == pins["onnxruntime"]

    assert report["verdict"] == "NOT MEASURED" and report["passed"] is False, report["headline"]
    assert [v["name"] for v in report["variants"]] == ["ort-fp32", "ort-int8"]
    for v in report["variants"]:
        assert v["measured_on"] == "ssh://raspberry-pi-5" and v["status"] == "skipped", (v["name"], v["reason"])
        assert v["top1"] is not None and v["agreement"] is not None and v["max_abs_vs_ref"] is not None
        gates = {c["gate"]: c for c in v["gates"]}
        assert gates["max_top1_drop"]["passed"] is True and gates["finite"]["passed"] is True
        assert gates["parity"]["passed"] is True  # the export's parity numbers are gated too
        for g in ("p99_latency_ms", "max_memory_mb"):
            assert gates[g]["passed"] is None and "not gated" in gates[g]["detail"]
        assert v["latency_ms"]["p99"] is None  # never in the device columns, the plot or the decision
        emu = v["emulation"]
        assert emu["machine"] == "aarch64" and emu["latency_ms"]["p99"] > 0.001 and emu["peak_memory_mb"] > 1
    assert report["decision"]["recommended"] is None
    md = (rd / "report" / "report.md").read_text()
    assert "Emulated device runs (latency NOT the device's)" in md and "EMULATED p99 ms" in md
    assert "Emulated device runs" in (rd / "report" / "report.html").read_text()

    # The arm64 kernels' accuracy vs this x86 host's on the very same bundle: fp32 must agree
    # closely; int8 kernels differ per ISA, so only the top-1 agreement is compared.
    local = {v["name"]: v for v in run_bundle(rd / "validate" / "bundle-raspberry-pi-5", tmp_path / "x86.json",
                                              isolate=False)["variants"]}
    arm = {v["name"]: v for v in results["variants"]}
    fa, fl = arm["ort-fp32"]["accuracy"], local["ort-fp32"]["accuracy"]
    assert fa["top1"] == fl["top1"] and fa["agreement"] == fl["agreement"]
    assert abs(fa["max_abs_vs_ref"] - fl["max_abs_vs_ref"]) < 1e-3
    assert abs(arm["ort-int8"]["accuracy"]["agreement"] - local["ort-int8"]["accuracy"]["agreement"]) <= 25.0

    # By hand: the same bundle run by the arm64 python directly, then `edgeskel results import`:
    # the imported emulated run is labelled and not gated either.
    import subprocess

    from edgeskel.pipeline.results_import import import_results

    bundle = rd / "validate" / "bundle-raspberry-pi-5"
    proc = subprocess.run([str(wrapper), str(bundle / "device_runner.py"), str(bundle), "--out",
                           str(tmp_path / "by-hand.json")], capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rep = import_results(rd, tmp_path / "by-hand.json", log=lambda s: None)
    assert rep["verdict"] == "NOT MEASURED"
    for v in rep["variants"]:
        assert v["measured_on"] == "imported://raspberry-pi-5" and v["status"] == "skipped"
        assert v["top1"] is not None and v["latency_ms"]["p99"] is None and v["emulation"]["machine"] == "aarch64"
