"""Latency-aware ranks (issue 20): the per-layer latency table is cached and reused, and the
'latency' policy leaves a layer dense when its factorized form measures slower."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn as nn

from edgeskel.compress import compress_model
from edgeskel.compress.config import CompressionConfig
from edgeskel.compress.latency_table import LatencyTable


class TwoLayers(nn.Module):
    """(N, C, T, V, M) -> logits through two 1x1 convs (both factorizable) and a head."""

    def __init__(self, c: int = 64, k: int = 5):
        super().__init__()
        self.a = nn.Conv2d(3, c, 1)
        self.b = nn.Conv2d(c, c, 1)
        self.c = nn.Conv2d(c, 96, 1)  # another shape than b: its own latency-table entries
        self.fc = nn.Linear(96, k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, t, v, m = x.shape
        x = x.permute(0, 4, 1, 2, 3).reshape(n * m, c, t, v)
        x = self.c(torch.relu(self.b(torch.relu(self.a(x)))))
        return self.fc(x.mean((2, 3)).reshape(n, m, -1).mean(1))


def _low_rank_model() -> nn.Module:
    """Layers b and c hold rank-8 weights, so a low rank keeps all their energy."""
    torch.manual_seed(0)
    net = TwoLayers()
    with torch.no_grad():
        for conv in (net.b, net.c):
            w = torch.randn(conv.out_channels, 8) @ torch.randn(8, 64)
            conv.weight.copy_(w[:, :, None, None])
    return net.eval()


SHAPE = (1, 3, 16, 10, 1)


class FakeTimer:
    """Deterministic timing: dense layer 'b' 1.0 ms and its factorized forms 2.0 ms (slower);
    layer 'c' dense 1.0 ms and factorized 0.1 + rank/100 ms (faster, fastest at the lowest rank).
    Counts calls."""

    def __init__(self):
        self.calls: list[tuple[str, tuple[str, ...]]] = []

    def __call__(self, info, modules, x):
        self.calls.append((info.name, tuple(sorted(modules))))
        slow = info.name == "b"
        return {k: 1.0 if k == "dense" else (2.0 if slow else 0.1 + int(k.split("=")[1]) / 100) for k in modules}


def _cfg(cache: Path | None, **kw) -> CompressionConfig:
    return CompressionConfig(policy="latency", energy=0.99, rank_multiple=8, min_params=256, data_aware=False,
                             latency_cache=str(cache) if cache else None, **kw)


def test_policy_leaves_layer_dense_when_factorized_measures_slower(tmp_path: Path):
    timer = FakeTimer()
    cfg = _cfg(tmp_path / "cache.json")
    table = LatencyTable("ort", [1], threads=1, profile="test", cache_file=cfg.latency_cache, timer=timer)
    _, rep = compress_model(_low_rank_model(), cfg, SHAPE, latency=table)
    by = {e["name"]: e for e in rep["layers"]}
    assert by["b"]["status"] == "skipped" and "measures slower" in by["b"]["reason"]
    assert by["c"]["status"] == "factorized" and by["c"]["rank"] == 8
    assert by["c"]["notes"]["latency"]["dense_ms"] == 1.0
    assert rep["latency"]["kept_dense"] == ["b"] and rep["latency"]["layers_chosen_ms"] < rep["latency"]["layers_dense_ms"]
    assert rep["policy"]["policy"] == "latency"  # recorded with the other policy settings
    plan = {p["name"] for p in rep["plan"]["layers"]}
    assert plan == {"c"}


def test_latency_table_is_cached_on_disk_and_reused(tmp_path: Path):
    cache = tmp_path / "cache.json"
    cfg = _cfg(cache)
    t1 = FakeTimer()
    table = LatencyTable("ort", [1, 4], threads=1, profile="test", cache_file=cache, timer=t1)
    _, rep1 = compress_model(_low_rank_model(), cfg, SHAPE, latency=table)
    assert t1.calls and table.measured > 0
    data = json.loads(cache.read_text())
    assert data["format"] == "edgeskel-latency-table/1"
    assert {e["batch"] for e in data["entries"].values()} == {1, 4}
    # a fresh table (new process in practice) reads the file and times nothing
    t2 = FakeTimer()
    table2 = LatencyTable("ort", [1, 4], threads=1, profile="test", cache_file=cache, timer=t2)
    _, rep2 = compress_model(_low_rank_model(), cfg, SHAPE, latency=table2)
    assert t2.calls == [] and table2.measured == 0 and table2.hits > 0
    assert rep2["plan"] == rep1["plan"]
    # another profile (or thread count) is another key: measured again
    t3 = FakeTimer()
    table3 = LatencyTable("ort", [1], threads=2, profile="test", cache_file=cache, timer=t3)
    compress_model(_low_rank_model(), cfg, SHAPE, latency=table3)
    assert t3.calls


def test_real_ort_measurement_fills_the_table(tmp_path: Path):
    """One real ONNX Runtime measurement: the layer alone, exported and timed interleaved."""
    cache = tmp_path / "cache.json"
    cfg = _cfg(cache, latency_threads=1, latency_candidates=2)
    _, rep = compress_model(_low_rank_model(), cfg, SHAPE)  # default table from the config
    for name in ("b", "c"):
        lat = {e["name"]: e for e in rep["layers"]}[name]["notes"]["latency"]
        assert lat["dense_ms"] > 0 and all(v > 0 for v in lat["forms_ms"].values())
        assert "svd:rank=8" in lat["forms_ms"]
    assert rep["latency"]["table"]["timer"] == "runtime" and rep["latency"]["table"]["measured"] >= 4
    entries = json.loads(cache.read_text())["entries"]
    assert all(e["p50_ms"] > 0 for e in entries.values())


def test_latency_table_refuses_unmeasurable_backend():
    with pytest.raises(ValueError, match="cannot be timed here"):
        LatencyTable("tensorrt")


def test_pipeline_records_the_latency_policy_and_reuses_the_cache(tmp_path: Path):
    """`make export` of a recipe with policy 'latency' (what `edgeskel tune` writes): the
    compress stage measures the table once, records the policy and per-layer latency notes in
    compression.json and the manifest, and a second recipe on the same cache measures nothing."""
    import copy

    import yaml

    from edgeskel.cli import main

    recipe = copy.deepcopy(_tiny_recipe())
    recipe["compress"] = {"policy": "latency", "energy": 0.5, "min_params": 256, "calib_batches": 1,
                          "latency_backend": "ort", "latency_threads": 1, "latency_cache": str(tmp_path / "lat.json")}
    recipe["finetune"]["epochs"] = 0
    rp = tmp_path / "tinylat.yaml"
    rp.write_text(yaml.safe_dump(recipe))
    prof = yaml.safe_load((Path(__file__).resolve().parents[1] / "devices" / "cpu.yaml").read_text())
    prof.update(variants=[{"backend": "ort", "precision": "fp32"}], batch_sizes=[1], threads=1,
                measure={"warmup": 2, "runs": 10})
    pp = tmp_path / "cpu.yaml"
    pp.write_text(yaml.safe_dump(prof))
    assert main(["export", "--device", str(pp), "--recipe", str(rp), "--out", str(tmp_path / "runs"), "--quiet"]) == 0
    run = tmp_path / "runs" / "tinylat" / "cpu"
    comp = json.loads((run / "compress" / "compression.json").read_text())
    assert comp["policy"]["policy"] == "latency" and comp["policy"]["latency_backend"] == "ort"
    timed = [e for e in comp["layers"] if "latency" in (e.get("notes") or {})]
    assert timed and all(e["notes"]["latency"]["dense_ms"] > 0 for e in timed)
    n_entries = len(json.loads((tmp_path / "lat.json").read_text())["entries"])
    assert n_entries > 0
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["stages"]["compress"]["status"] == "done"
    # the same layers again (another recipe name, same cache): every timing is a cache hit
    recipe["name"] = "tinylat2"
    rp.write_text(yaml.safe_dump(recipe))
    assert main(["export", "--device", str(pp), "--recipe", str(rp), "--out", str(tmp_path / "runs"), "--quiet"]) == 0
    assert len(json.loads((tmp_path / "lat.json").read_text())["entries"]) == n_entries
    comp2 = json.loads((tmp_path / "runs" / "tinylat2" / "cpu" / "compress" / "compression.json").read_text())
    assert [e["status"] for e in comp2["layers"]] == [e["status"] for e in comp["layers"]]


def _tiny_recipe() -> dict:
    return {
        "name": "tinylat",
        "model": {"name": "stgcn", "width": 0.25, "kwargs": {"num_stages": 3}},
        "data": {"spec": "synthetic?classes=4&per_class=8&test_per_class=4&frames=16", "frames": 16},
        "train": {"epochs": 1, "batch_size": 8, "optimizer": "adamw", "lr": 0.003, "warmup_epochs": 0, "threads": 1},
        "finetune": {"epochs": 0, "batch_size": 8, "optimizer": "adamw", "lr": 0.001, "warmup_epochs": 0,
                     "kd_weight": 0.5, "threads": 1},
        "export": {"calib_samples": 16},
    }
