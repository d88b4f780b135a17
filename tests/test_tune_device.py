"""`edgeskel tune` with a device profile that names an SSH device (issue 20 items 1-2): candidates
are timed ON THE DEVICE (a real sshd on 127.0.0.1 whose python is this venv's), in one bundle,
and the accuracy gate uses the device's top-1; the measured-rank option's per-layer latency
table is timed there too (one layer bundle). An unreachable device fails with one error and
caches nothing; the next run with the device back resumes (exports are not redone)."""

from __future__ import annotations

import json
import socket
import sys
from pathlib import Path

import pytest
import yaml
from test_remote_ssh import sshd  # noqa: F401 - module-scoped fixture: a real sshd
from test_tune_search import TINY, _profile

from edgeskel.errors import RemoteError
from edgeskel.tune import run_tune


def _ssh_profile(tmp: Path, sshd_info: dict, name: str, **ssh) -> Path:
    prof = yaml.safe_load(_profile(tmp).read_text())
    prof["ssh"] = {"host": "testdevice", "config_file": str(sshd_info["dir"] / "ssh_config"), "python": sys.executable,
                   "workdir": str(tmp / "remote"), "connect_timeout_s": 5, "command_timeout_s": 300, **ssh}
    p = tmp / name
    p.write_text(yaml.safe_dump(prof))
    return p


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_tune_times_candidates_on_the_ssh_device(sshd, tmp_path):  # noqa: F811
    rec = tmp_path / "tiny.yaml"
    rec.write_text(yaml.safe_dump(TINY))
    down = _ssh_profile(tmp_path, sshd, "down.yaml", host="127.0.0.1", port=_closed_port(),
                        known_hosts_file=str(sshd["dir"] / "known_hosts"), config_file=None)
    with pytest.raises(RemoteError, match="unreachable"):
        run_tune(str(down), str(rec), out_root=tmp_path / "runs", budgets=(0.8,), quiet=True, log=lambda s: None)
    run = tmp_path / "runs" / "tiny" / "tune-cpu"
    manifest = json.loads((run / "manifest.json").read_text())
    assert "latency" not in {k for k, v in manifest["stages"].items() if v.get("status") == "done"}

    up = _ssh_profile(tmp_path, sshd, "up.yaml")
    lines: list[str] = []
    res = run_tune(str(up), str(rec), out_root=tmp_path / "runs", budgets=(0.8,), quiet=True, log=lines.append)
    assert "[export-none] up to date, skipped" in lines  # the failed run's exports were kept
    assert res["timed_on"] == ["ssh://cpu"]
    timed = [c for c in res["candidates"] if c.get("latency_ms")]
    assert timed and all(c["measured_on"] == "ssh://cpu" for c in timed)
    for c in timed:
        assert c["latency_ms"]["1"]["runs"] == 10 and c["latency_ms"]["1"]["p50"] > 0
        assert abs(c["top1"] - c["top1_host"]) < 1e-9  # same ORT on both ends: the device's top-1 is the host's
    assert res["op_profiles"] == []  # host profilers would not describe the device
    # measured ranks: the layer table was timed ON THE DEVICE (one layer bundle, the device runner)
    lat_opt = res["options"]["latency-ort"]
    assert lat_opt["status"] in ("ok", "same as none"), lat_opt
    table = lat_opt["latency_policy"]["table"]
    assert table["timer"] == "device" and table["measured"] > 0 and table["versions"]["device"] == "ssh://cpu"
    assert table["versions"]["device_onnxruntime"] == __import__("onnxruntime").__version__
    cache = json.loads((tmp_path / "runs" / "_latency" / "cpu-ort.json").read_text())["entries"]
    assert cache and all(e["timed_by"] == "device" and e["p50_ms"] > 0 for e in cache.values())
    assert any(p.name.startswith("layers-") for p in (tmp_path / "remote").iterdir())  # the layer bundle went there
    assert (run / "latency" / "results.json").is_file()
    assert "timed: ssh://cpu" in (run / "tune.md").read_text()
    text = (run / "tune.json").read_text() + (run / "tune.md").read_text()
    assert "testdevice" not in text and str(sshd["dir"]) not in text
    # a rerun is fully cached, the device is not contacted again
    lines.clear()
    run_tune(str(up), str(rec), out_root=tmp_path / "runs", budgets=(0.8,), quiet=True, log=lines.append)
    assert "[latency] up to date, skipped" in lines


def test_tune_includes_tensorrt_variants_on_an_ssh_jetson_and_labels_the_double(sshd, tmp_path):  # noqa: F811
    """On a Jetson profile with an ssh block, TensorRT variants are candidates: exported here (the
    pipeline's route and engines per batch), engines built and timed on the device. Here the
    "device" runs the TensorRT CONTRACT DOUBLE (tests/doubles), so tune must say its timing is
    not TensorRT's and not a Jetson measurement."""
    from trt_doubles import install

    rec = tmp_path / "tiny.yaml"
    rec.write_text(yaml.safe_dump(TINY))
    dbl = install(tmp_path, "10.3.0")
    prof = yaml.safe_load((Path(__file__).resolve().parents[1] / "devices" / "jetson-orin.yaml").read_text())
    prof.update(arch="x86_64", batch_sizes=[1], measure={"warmup": 2, "runs": 10}, threads=1, rank_multiple=1)
    prof["ssh"] = {"host": "testdevice", "config_file": str(sshd["dir"] / "ssh_config"), "python": str(dbl.python),
                   "workdir": str(tmp_path / "remote"), "connect_timeout_s": 5, "command_timeout_s": 600}
    path = tmp_path / "jetson-orin.yaml"
    path.write_text(yaml.safe_dump(prof))
    # TensorRT only: the ORT layer latency table timed on an SSH device is the test above's
    res = run_tune(str(path), str(rec), out_root=tmp_path / "runs", budgets=(0.8,), variants=["tensorrt-fp16"],
                   quiet=True, log=lambda s: None)
    assert "latency-ort" not in res["options"], res["options"].keys()
    trt = [c for c in res["candidates"] if c["backend"] == "tensorrt" and c.get("latency_ms")]
    assert {c["compression"] for c in trt} >= {"none", "budget-0.8"}, res["candidates"]
    for c in trt:
        assert c["measured_on"] == "ssh://jetson-orin" and "double" in c["emulated"], c
        assert c["latency_ms"]["1"]["p50"] > 0 and c["top1"] is not None and "top1_host" in c
    assert res["decision"]["caution"].startswith("timed under emulation (TensorRT contract double")
    assert "NOT jetson-orin latency" in res["decision"]["caution"]
    doc = json.loads((tmp_path / "runs" / "tiny" / "tune-jetson-orin" / "latency" / "results.json").read_text())
    built = [v for v in doc["variants"] if v["backend"] == "tensorrt"]
    assert built and all(v["status"] == "ok" and v.get("engine_build_s", 0) >= 0 for v in built), built
    assert res["recipe_file"] and Path(res["recipe_file"]).is_file()
    if res["decision"]["chosen"] is not None:  # None only if a loaded host broke the p99 gate
        assert res["decision"]["chosen"].split("/")[1] == "tensorrt-fp16"
        assert "engine itself runs on the device only" in res["decision"]["test_top1_by"]


@pytest.mark.slow  # 15 s; the host path of the same search is test_tune_streams', the bundle path the pipeline's
def test_tune_times_streaming_candidates_on_the_ssh_device(sshd, tmp_path):  # noqa: F811
    """A stream workload over SSH: the windowed finals and the step graphs go to the device in one
    bundle (recorded validation sequences with them); the device's streaming top-1 is judged."""
    rec = tmp_path / "tiny-stream.yaml"
    rec.write_text(yaml.safe_dump({**TINY, "name": "tiny-stream", "streaming": {"max_sequences": 4}}))
    res = run_tune(str(_ssh_profile(tmp_path, sshd, "up.yaml")), str(rec), out_root=tmp_path / "runs", budgets=(0.8,),
                   quiet=True, log=lambda s: None)
    streams = [c for c in res["candidates"] if c.get("form") == "streaming"]
    assert streams and all(c["measured_on"] == "ssh://cpu" and c["latency_ms"]["1"]["p50"] > 0 for c in streams)
    assert all(abs(c["top1"] - c["top1_host"]) < 1e-9 for c in streams)  # the device's streaming top-1 (same ORT)
    bundle = json.loads(next((tmp_path / "runs" / "tiny-stream" / "tune-cpu" / "stream-latency").glob(
        "bundle-*/bundle.json")).read_text())
    assert bundle["data"]["stream"]["num_sequences"] == 4
    assert {v.get("form") for v in bundle["variants"]} == {None, "streaming"}
