"""The device runner does not hide failures (issue 27 A): each variant's error is printed once,
and the exit status says whether every variant was measured (0), some errored with
results.json written (3), or the bundle/arguments were wrong (2). The callers that read
results.json (`edgeskel device-run`, the SSH path) keep reporting errored variants as ERROR
entries of a completed run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from test_devices_common import tiny_data, tiny_onnx

from edgeskel.devices import load_profile
from edgeskel.remote import SSHTarget, make_bundle, run_remote

TRT = "tensorrt-fp16"
EXIT_OK, EXIT_USAGE, EXIT_VARIANT_ERRORS = 0, 2, 3  # the documented statuses


@pytest.fixture(scope="module")
def blocked(tmp_path_factory) -> Path:
    """A PYTHONPATH folder where neither edgeskel (the runner is standalone) nor tensorrt (this
    machine has no TensorRT, as in the issue) can be imported, also in the runner's children."""
    d = tmp_path_factory.mktemp("block")
    (d / "edgeskel.py").write_text("raise ImportError('edgeskel must not be needed on the device')\n")
    (d / "tensorrt.py").write_text("raise ModuleNotFoundError(\"No module named 'tensorrt'\")\n")
    return d


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    """ort-fp32 (runs here) and a TensorRT variant (cannot: no tensorrt module)."""
    d = tmp_path_factory.mktemp("b")
    w, b = tiny_onnx(d / "m.onnx")
    x, y, ref = tiny_data(w, b)
    arts = [{"name": n, "backend": "ort", "precision": "fp32", "path": d / "m.onnx"} for n in ("ort-fp32", TRT)]
    out = make_bundle(d / "run" / "bundle", arts, x, y, ref, load_profile("cpu"), warmup=2, runs=10)
    meta = json.loads((out / "bundle.json").read_text())
    meta["variants"][1].update(backend="tensorrt", precision="fp16")  # needs `import tensorrt`, first thing
    (out / "bundle.json").write_text(json.dumps(meta))
    return out


def _runner(bundle: Path, blocked: Path, *args: str, tmp: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(bundle / "device_runner.py"), *args], cwd=tmp, capture_output=True,
                          text=True, timeout=300, env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(blocked)})


def test_errored_variant_is_printed_once_and_exits_3(bundle, blocked, tmp_path):
    out = tmp_path / "r.json"
    proc = _runner(bundle, blocked, str(bundle), "--out", str(out), tmp=tmp_path)
    assert proc.returncode == EXIT_VARIANT_ERRORS, proc.stderr[-2000:]
    doc = json.loads(out.read_text())  # written all the same
    status = {v["name"]: v["status"] for v in doc["variants"]}
    assert status == {"ort-fp32": "ok", TRT: "error"}
    assert "No module named 'tensorrt'" in doc["variants"][1]["error"]
    err = proc.stderr.splitlines()
    assert sum("No module named 'tensorrt'" in ln for ln in err) == 1, proc.stderr  # was printed twice
    assert sum(ln.startswith(f"variant {TRT} ") for ln in err) == 1, proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == {"ok": 1, "errors": [TRT]}
    last = [ln for ln in err if ln.startswith("error:")]
    assert len(last) == 1 and f"1 of 2 variants failed ({TRT})" in last[0], proc.stderr


def test_all_measured_exits_0(bundle, blocked, tmp_path):
    proc = _runner(bundle, blocked, str(bundle), "--variant", "ort-fp32", "--out", str(tmp_path / "r.json"),
                   tmp=tmp_path)
    assert proc.returncode == EXIT_OK, proc.stderr[-2000:]
    assert "error" not in proc.stderr.lower()


@pytest.mark.parametrize("args", [["{tmp}"], ["{bundle}", "--variant", "nope"], ["{bundle}", "--bogus"]],
                         ids=["not-a-bundle", "unknown-variant", "bad-option"])
def test_usage_and_bundle_errors_exit_2_without_results(bundle, blocked, tmp_path, args):
    out = tmp_path / "r.json"
    argv = [a.format(tmp=tmp_path, bundle=bundle) for a in args] + ["--out", str(out)]
    proc = _runner(bundle, blocked, *argv, tmp=tmp_path)
    assert proc.returncode == EXIT_USAGE, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr and not out.exists()


def test_help_documents_the_exit_status(bundle, blocked, tmp_path):
    proc = _runner(bundle, blocked, "--help", tmp=tmp_path)
    assert proc.returncode == 0
    text = " ".join(proc.stdout.split())
    assert "exit status: 0 every variant measured; 3 results.json written but some variant errored" in text
    assert "2 usage or bundle error" in text


def test_device_run_cli_reports_error_rows_and_exits_3(bundle, blocked, tmp_path, monkeypatch, capsys):
    from edgeskel.cli import main

    monkeypatch.setenv("PYTHONPATH", str(blocked))  # the runner's child processes: no tensorrt
    out = tmp_path / "cli.json"
    assert main(["device-run", str(bundle), "--out", str(out)]) == EXIT_VARIANT_ERRORS
    cap = capsys.readouterr()
    assert "ERROR" in cap.out and "'tensorrt'" in cap.out  # the variant's row (wrapped in the cell)
    assert [ln for ln in cap.err.splitlines() if ln.startswith("error:")] == [
        f"error: 1 of 2 variants failed ({TRT}); the reasons are in the table and in {out}"]
    assert [v["status"] for v in json.loads(out.read_text())["variants"]] == ["ok", "error"]
    assert main(["device-run", str(bundle), "--variant", "nope"]) == EXIT_USAGE
    assert "error: --variant nope: not in this bundle (has: ort-fp32, tensorrt-fp16)" in capsys.readouterr().err


class _LocalShell(SSHTarget):
    """The real SSHTarget with `ssh HOST CMD` replaced by `bash -c CMD` on this machine."""

    def ssh_args(self) -> list[str]:
        return ["bash", "-c"]


@pytest.fixture()
def broken_bundle(tmp_path) -> Path:
    """Two ORT variants, one with a corrupt model: runtimes present, one variant errors."""
    w, b = tiny_onnx(tmp_path / "m.onnx")
    x, y, ref = tiny_data(w, b)
    arts = [{"name": n, "backend": "ort", "precision": "fp32", "path": tmp_path / "m.onnx"}
            for n in ("ort-fp32", "ort-broken")]
    out = make_bundle(tmp_path / "run" / "bundle", arts, x, y, ref, load_profile("cpu"), warmup=2, runs=10)
    (out / "artifacts" / "ort-broken" / "m.onnx").write_bytes(b"not an onnx model")
    return out


def test_remote_run_with_an_errored_variant_is_not_a_failed_run(broken_bundle, tmp_path):
    """Exit 3 from the runner on the device: results.json is fetched and the variant is an
    ERROR entry (the pipeline's report row); it must not read as a failed transport."""
    target = _LocalShell(name="cpu", host="localhost", workdir=str(tmp_path / "remote"), python=sys.executable,
                         connect_timeout_s=5, command_timeout_s=300)
    out = tmp_path / "results.json"
    doc = run_remote(broken_bundle, target, out=out)
    assert out.is_file() and doc["measured_on"] == "ssh://cpu"
    status = {v["name"]: v["status"] for v in doc["variants"]}
    assert status == {"ort-fp32": "ok", "ort-broken": "error"}
    assert "1 of 2 variants failed (ort-broken)" in out.with_suffix(".log").read_text()


def test_remote_runner_crash_is_still_a_failed_run(broken_bundle, tmp_path):
    from edgeskel.errors import RemoteError

    crashing = tmp_path / "python-crash"
    crashing.write_text("#!/bin/sh\ncase \"$*\" in *device_runner.py*) echo boom >&2; exit 1;; esac\n"
                        f"exec {sys.executable} \"$@\"\n")
    crashing.chmod(0o755)
    target = _LocalShell(name="cpu", host="localhost", workdir=str(tmp_path / "remote"), python=str(crashing),
                         connect_timeout_s=5, command_timeout_s=300)
    out = tmp_path / "results.json"
    with pytest.raises(RemoteError, match="device_runner.py failed on device 'cpu' with exit code 1"):
        run_remote(broken_bundle, target, out=out)
    assert not out.exists()
