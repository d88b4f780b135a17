"""Honest verdicts and the by-hand results round trip (issue 14 items 5-6, issue 16 item 6).

A profile whose device is an aarch64 machine, run on this x86_64 host without SSH: the ORT
variant is only a *host check* (not a device number), so the run ends NOT MEASURED (exit 3).
The bundle is then really measured with the device runner (real ONNX Runtime, real numbers);
its results are refused while they say they were measured on x86_64. The device-side
results.json is simulated by marking the same real measurement as made on an aarch64 machine
(what `device_runner.py` writes on an arm64 board); importing it re-gates the report to
PASSED. Results of another bundle or with tampered artifact hashes are refused.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import yaml
from test_pipeline_e2e import TINY_RECIPE

from edgeskel.cli import main
from edgeskel.pipeline import run_pipeline
from edgeskel.remote.device_runner import run_bundle

PROFILE = """\
name: armdev
arch: aarch64
variants:
  - {backend: ort, precision: fp32}
batch_sizes: [1]
threads: 1
rank_multiple: 1
measure: {warmup: 1, runs: 5}
gates: {max_top1_drop: 100, p99_latency_ms: 10000, max_memory_mb: 100000}
peak: {gflops_fp32: 10, memory_bandwidth_gbs: 10, source: test}
"""


@pytest.fixture(scope="module")
def base_run(tmp_path_factory) -> dict:
    d = tmp_path_factory.mktemp("armrun")
    (d / "recipe.yaml").write_text(yaml.safe_dump(TINY_RECIPE))
    (d / "armdev.yaml").write_text(PROFILE)
    args = ["export", "--device", str(d / "armdev.yaml"), "--recipe", str(d / "recipe.yaml"), "--out", str(d / "runs"),
            "--quiet"]
    rc = main(args)
    rd = d / "runs" / "tiny" / "armdev"
    rep = json.loads((rd / "report.json").read_text())
    # the device's measurement of this very bundle: real ORT numbers, made here
    dev = run_bundle(rd / rep["bundle"], out=d / "host-results.json", log=lambda s: None)
    return {"d": d, "rd": rd, "rc": rc, "report": rep, "args": args, "host_results": dev}


def copy_run(base: dict, tmp_path: Path) -> Path:
    rd = tmp_path / "runs" / "tiny" / "armdev"
    shutil.copytree(base["rd"], rd)
    return rd


def device_results(base: dict, path: Path, **edit) -> Path:
    doc = json.loads(json.dumps(base["host_results"]))
    doc["environment"]["machine"] = "aarch64"  # as device_runner.py reports it on an arm64 board
    doc.update(edit)
    path.write_text(json.dumps(doc))
    return path


def test_host_only_run_is_not_measured_with_its_own_exit_code(base_run):
    rep = base_run["report"]
    assert base_run["rc"] == 3 and rep["verdict"] == "NOT MEASURED" and rep["exit_code"] == 3
    assert rep["passed"] is False  # old code: PASSED on the x86 host's numbers
    v = rep["variants"][0]
    assert v["status"] == "skipped" and v["measured_on"] == "none"
    assert v["top1"] is None and v["latency_ms"]["p99"] is None  # no host number in the device columns
    assert v["host_check"]["status"] == "pass" and v["host_check"]["top1"] is not None
    assert rep["decision"]["recommended"] is None
    md = (base_run["rd"] / "report.md").read_text()
    assert md.startswith("# tiny on armdev: NOT MEASURED")
    assert "## Host checks (NOT device numbers)" in md and "## To measure on the device" in md
    assert "edgeskel results import . results.json" in md and "python3 device_runner.py . --out results.json" in md
    html = (base_run["rd"] / "report.html").read_text()
    assert 'alt="scatter"' not in html  # nothing measured on the device: no "accuracy vs latency on armdev" plot


def test_import_device_results_regates_and_rewrites_the_report(base_run, tmp_path, capsys):
    rd = copy_run(base_run, tmp_path)
    res = device_results(base_run, tmp_path / "results.json")
    capsys.readouterr()
    assert main(["results", "import", str(rd), str(res), "--quiet"]) == 0
    rep = json.loads((rd / "report.json").read_text())
    assert rep["verdict"] == "PASSED" and rep["passed"] is True and rep["exit_code"] == 0
    v = rep["variants"][0]
    assert v["measured_on"] == "imported://armdev" and v["status"] == "pass"
    host = base_run["host_results"]["variants"][0]
    assert v["top1"] == host["accuracy"]["top1"]
    assert v["latency_ms"]["p99"] == host["latency_ms"]["1"]["p99"]
    assert v["peak_memory_mb"] == host["memory"]["peak_rss_mb"]
    assert rep["decision"]["recommended"] == "ort-fp32"
    assert json.loads((rd / "report" / "report.json").read_text()) == rep
    md = (rd / "report.md").read_text()
    assert md.startswith("# tiny on armdev: PASSED") and "imported://armdev" in md
    # a rerun of the pipeline keeps the imported results: every stage is up to date
    logs: list[str] = []
    rep2 = run_pipeline(str(base_run["d"] / "armdev.yaml"), str(base_run["d"] / "recipe.yaml"),
                        out_root=tmp_path / "runs", quiet=True, log=logs.append)
    assert sum("up to date, skipped" in ln for ln in logs) == 8, logs  # every stage up to validate (check and baseline included), then the report
    assert rep2 == rep


def _refused(capsys, rd: Path, res: Path, *words: str) -> None:
    before = (rd / "report.json").read_text()
    capsys.readouterr()
    assert main(["results", "import", str(rd), str(res), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "Traceback" not in err[0], err
    for w in words:
        assert w in err[0], err[0]
    assert (rd / "report.json").read_text() == before  # nothing changed
    assert not (rd / "validate" / "imported-results.json").exists()


def test_results_of_another_bundle_are_refused(base_run, tmp_path, capsys):
    rd = copy_run(base_run, tmp_path)
    res = device_results(base_run, tmp_path / "results.json", bundle_id="bundle-armdev-0123456789ab")
    _refused(capsys, rd, res, "bundle-armdev-0123456789ab", "not of this run's bundle")


def test_tampered_artifact_hashes_are_refused(base_run, tmp_path, capsys):
    rd = copy_run(base_run, tmp_path)
    doc = json.loads(device_results(base_run, tmp_path / "ok.json").read_text())
    assert doc["artifact_sha256"]  # the device runner hashes what it ran
    doc["artifact_sha256"] = {k: "0" * 64 for k in doc["artifact_sha256"]}
    (tmp_path / "results.json").write_text(json.dumps(doc))
    _refused(capsys, rd, tmp_path / "results.json", "artifact hashes differ")


def test_bundle_changed_after_export_is_refused(base_run, tmp_path, capsys):
    rd = copy_run(base_run, tmp_path)
    res = device_results(base_run, tmp_path / "results.json")
    model = next((rd / base_run["report"]["bundle"] / "artifacts").rglob("*.onnx"))
    model.write_bytes(model.read_bytes() + b"\0")
    _refused(capsys, rd, res, "files changed since the bundle was made")


def test_host_measured_results_are_not_device_numbers(base_run, tmp_path, capsys):
    rd = copy_run(base_run, tmp_path)
    res = tmp_path / "results.json"
    res.write_text(json.dumps(base_run["host_results"]))  # `device-run` on this x86_64 host
    _refused(capsys, rd, res, "measured on a x86_64 machine", "aarch64")


def test_not_results_and_not_a_run_are_clear_errors(base_run, tmp_path, capsys):
    rd = copy_run(base_run, tmp_path)
    bad = tmp_path / "bad.json"
    bad.write_text('{"format": "something-else"}')
    _refused(capsys, rd, bad, str(bad), "not a device runner results file")
    capsys.readouterr()
    assert main(["results", "import", str(tmp_path), str(bad)]) == 2
    assert "not a pipeline run folder" in capsys.readouterr().err
    fifo = tmp_path / "results.fifo"
    os.mkfifo(fifo)  # would block a plain open() forever
    _refused(capsys, rd, fifo, str(fifo), "a FIFO, not a regular file")
    _refused(capsys, rd, tmp_path, "a folder, not a regular file")


def test_import_after_an_unreachable_ssh_device_is_kept_on_rerun(tmp_path):
    """The profile's SSH device was unreachable (validation left to retry); the user ran the
    bundle by hand: once imported results cover every variant, a rerun keeps them instead of
    retrying SSH and reporting NOT MEASURED again."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once this block ends: connection refused
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(TINY_RECIPE))
    (tmp_path / "known_hosts").write_text("")
    ssh = {"host": "127.0.0.1", "port": port, "connect_timeout_s": 3, "workdir": str(tmp_path / "remote"),
           "known_hosts_file": str(tmp_path / "known_hosts")}
    prof = tmp_path / "sshdev.yaml"
    prof.write_text(PROFILE.replace("name: armdev", "name: sshdev").replace("arch: aarch64", "arch: x86_64")
                    + "ssh: " + json.dumps(ssh) + "\n")
    out = tmp_path / "runs"

    def export() -> dict:
        return run_pipeline(str(prof), str(tmp_path / "recipe.yaml"), out_root=out, quiet=True, log=lambda s: None)

    rep = export()
    assert rep["verdict"] == "NOT MEASURED" and "unreachable" in rep["variants"][0]["reason"]
    rd = out / "tiny" / "sshdev"
    run_bundle(rd / rep["bundle"], out=tmp_path / "results.json", log=lambda s: None)  # "on the device", x86_64
    assert main(["results", "import", str(rd), str(tmp_path / "results.json"), "--quiet"]) == 0
    rep2 = export()
    assert rep2["verdict"] == "PASSED" and rep2["variants"][0]["measured_on"] == "imported://sshdev"


@pytest.mark.parametrize("field, value, words", [
    ("accuracy", "high", "accuracy must be a mapping"),
    ("latency_ms", {"1": {"p99": "fast"}}, "latency_ms must map batch sizes"),
    ("latency_ms", {"one": {"p99": 1.0}}, "latency_ms must map batch sizes"),
    ("memory", {"peak_rss_mb": [1]}, "memory must be a mapping"),
])
def test_garbled_measurements_are_refused(base_run, tmp_path, capsys, field, value, words):
    rd = copy_run(base_run, tmp_path)
    doc = json.loads(device_results(base_run, tmp_path / "ok.json").read_text())
    doc["variants"][0][field] = value
    (tmp_path / "results.json").write_text(json.dumps(doc))
    _refused(capsys, rd, tmp_path / "results.json", "variant 'ort-fp32'", words)
