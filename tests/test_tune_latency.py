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
