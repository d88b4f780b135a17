"""The per-layer latency table timed ON THE DEVICE (issue 20 item 1, "or over SSH with the device
runner"): layer forms go to the device as one layer bundle, the standalone device runner times the
forms of each layer interleaved, and the table keys its cache on the device's runtime versions."""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import torch.nn as nn
import yaml
from test_remote_ssh import sshd  # noqa: F401 - module-scoped fixture: a real sshd
from test_tune_latency import SHAPE, FakeTimer, _cfg, _low_rank_model, _tiny_recipe

from edgeskel.compress import compress_model
from edgeskel.compress.device_latency import latency_table_for
from edgeskel.compress.latency_table import LatencyTable
from edgeskel.errors import ConfigError
from edgeskel.export.onnx import export_layer
from edgeskel.remote.bundle import make_layer_bundle
from edgeskel.remote.device_runner import run_bundle

REPO = Path(__file__).resolve().parents[1]
PROFILE = SimpleNamespace(name="testdev", arch="x86_64", threads=1, ssh=None)


def test_device_runner_times_a_layer_bundle_group_by_group(tmp_path: Path):
    """Forms of one layer share an input and are timed together; a form that cannot load fails
    its own group only."""
    torch.manual_seed(0)
    x = torch.randn(2, 16, 8, 5)
    dense = nn.Conv2d(16, 32, 1).eval()
    low = nn.Sequential(nn.Conv2d(16, 4, 1, bias=False), nn.Conv2d(4, 32, 1)).eval()
    forms = [{"name": "g0-f0", "group": "g0", "path": export_layer(dense, x, tmp_path / "d.onnx"), "backend": "ort",
              "input_shape": list(x.shape)},
             {"name": "g0-f1", "group": "g0", "path": export_layer(low, x, tmp_path / "l.onnx"), "backend": "ort",
              "input_shape": list(x.shape)}]
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not an onnx model")
    forms.append({"name": "g1-f0", "group": "g1", "path": broken, "backend": "ort", "input_shape": [1, 3, 4, 4]})
    bundle = make_layer_bundle(tmp_path / "layers", forms, PROFILE, warmup=1, runs=6, rounds=2, max_seconds=None)
    meta = json.loads((bundle / "bundle.json").read_text())
    assert meta["kind"] == "layers" and meta["bundle_id"].startswith("layers-") and "val_x" not in json.dumps(meta)
    doc = run_bundle(bundle, tmp_path / "results.json", log=lambda s: None)
    by = {r["name"]: r for r in doc["variants"]}
    assert doc["kind"] == "layers" and doc["timing"]["method"].startswith("layer forms interleaved")
    for n in ("g0-f0", "g0-f1"):
        assert by[n]["status"] == "ok" and by[n]["latency_ms"]["2"]["runs"] == 6 and by[n]["latency_ms"]["2"]["p50"] > 0
        assert "accuracy" not in by[n]  # a layer's output is not logits
    assert by["g1-f0"]["status"] == "error" and by["g1-f0"]["error"]


class FakeDevice:
    """A device timer double: the FakeTimer's numbers, but through the batch interface the SSH
    device timer has; records how many device runs (bundles) there were."""

    def __init__(self, version: str = "1.0"):
        self.version, self.runs, self.fake = version, [], FakeTimer()

    def versions(self):
        return {"device": "ssh://fake", "device_onnxruntime": self.version}

    def time_groups(self, jobs):
        self.runs.append(len(jobs))
        return [self.fake(*job) for job in jobs]


def test_device_table_times_every_layer_in_one_device_run_and_keys_on_device_versions(tmp_path: Path):
    cache = tmp_path / "cache.json"
    cfg = _cfg(cache)
    dev = FakeDevice()
    table = LatencyTable("ort", [1, 4], threads=1, profile="test", cache_file=cache, device=dev)
    _, rep = compress_model(_low_rank_model(), cfg, SHAPE, latency=table)
    assert dev.runs == [len(dev.fake.calls)] and len(dev.fake.calls) >= 4  # one bundle: all layers x batch sizes
    assert rep["latency"]["table"]["timer"] == "device" and rep["latency"]["kept_dense"] == ["b"]
    n_forms = rep["latency"]["table"]["measured"]
    assert n_forms == sum(len(c[1]) for c in dev.fake.calls) and rep["latency"]["table"]["cache_hits"] == 0
    assert all(e["timed_by"] == "device" for e in json.loads(cache.read_text())["entries"].values())
    again = FakeDevice()
    _, rep2 = compress_model(_low_rank_model(), cfg, SHAPE, latency=LatencyTable("ort", [1, 4], threads=1, profile="test",
                                                                                cache_file=cache, device=again))
    assert again.runs == []  # same device runtime: all cache hits, each counted once
    assert rep2["latency"]["table"]["cache_hits"] == n_forms and rep2["latency"]["table"]["measured"] == 0
    upgraded = FakeDevice("2.0")
    compress_model(_low_rank_model(), cfg, SHAPE, latency=LatencyTable("ort", [1, 4], threads=1, profile="test",
                                                                       cache_file=cache, device=upgraded))
    assert upgraded.runs  # the device's runtime changed: measured again, never a stale hit
    host = FakeTimer()  # host timings never answer for the device, nor the other way round
    compress_model(_low_rank_model(), cfg, SHAPE, latency=LatencyTable("ort", [1, 4], threads=1, profile="test",
                                                                       cache_file=cache, timer=host))
    assert host.calls


def test_device_tables_need_the_runs_own_ssh_device(tmp_path: Path):
    cfg = _cfg(None, latency_on="device", latency_profile="orin")
    with pytest.raises(ConfigError, match="latency_on 'device'"):
        compress_model(_low_rank_model(), cfg, SHAPE)  # no device profile: nothing to time on
    assert latency_table_for(_cfg(None), PROFILE) is None  # host tables: compress_model builds them
    with pytest.raises(ConfigError, match="timed on that device, but this run is for 'testdev'"):
        latency_table_for(cfg, PROFILE)
    with pytest.raises(ConfigError, match="needs an `ssh:` block"):
        latency_table_for(cfg, SimpleNamespace(name="orin", ssh=None))


def test_make_export_times_the_layer_table_on_the_ssh_device(sshd, tmp_path: Path):  # noqa: F811
    """A recipe whose measured ranks are for an SSH device (what `edgeskel tune` writes for one):
    `make export` times the layers there, and records it."""
    from edgeskel.cli import main

    recipe = copy.deepcopy(_tiny_recipe())
    recipe["compress"] = {"policy": "latency", "energy": 0.5, "min_params": 256, "calib_batches": 1,
                          "latency_backend": "ort", "latency_threads": 1, "latency_profile": "cpu",
                          "latency_on": "device", "latency_cache": str(tmp_path / "lat.json")}
    rp = tmp_path / "tinydev.yaml"
    rp.write_text(yaml.safe_dump({**recipe, "name": "tinydev"}))
    prof = yaml.safe_load((REPO / "devices" / "cpu.yaml").read_text())
    prof.update(variants=[{"backend": "ort", "precision": "fp32", "options": {"providers": ["CPUExecutionProvider"]}}],
                batch_sizes=[1], threads=1, measure={"warmup": 2, "runs": 10})
    prof["ssh"] = {"host": "testdevice", "config_file": str(sshd["dir"] / "ssh_config"), "python": sys.executable,
                   "workdir": str(tmp_path / "remote"), "connect_timeout_s": 5, "command_timeout_s": 300}
    pp = tmp_path / "cpu.yaml"
    pp.write_text(yaml.safe_dump(prof))
    assert main(["export", "--device", str(pp), "--recipe", str(rp), "--out", str(tmp_path / "runs"), "--quiet"]) == 0
    comp = json.loads((tmp_path / "runs" / "tinydev" / "cpu" / "compress" / "compression.json").read_text())
    table = comp["latency"]["table"]
    assert table["timer"] == "device" and table["versions"]["device"] == "ssh://cpu" and table["measured"] > 0
    timed = [e for e in comp["layers"] if "latency" in (e.get("notes") or {})]
    assert timed and all(e["notes"]["latency"]["dense_ms"] > 0 for e in timed)
    assert json.loads(table["versions"]["session_options"]) == {"providers": ["CPUExecutionProvider"]}
    shipped = [json.loads(p.read_text()) for p in (tmp_path / "remote").glob("layers-*/bundle.json")]
    assert shipped and all(v["options"] == {"providers": ["CPUExecutionProvider"]}  # the profile's session settings
                           for b in shipped for v in b["variants"])
    md = (tmp_path / "runs" / "tinydev" / "cpu" / "report.md").read_text()
    assert "layer latencies timed on ssh://cpu with ort" in md
