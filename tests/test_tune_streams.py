"""Issue 30: `edgeskel tune` searches windowed vs streaming for a stream workload (the recipe's or
the profile's `streaming:`): step graphs of the final candidates, streaming top-1 on validation
sequences, timed at batch 1 in one run with the windowed candidates; a streaming choice writes a
recipe that exports it."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from test_tune_search import TINY, _profile

from edgeskel.recipe import load_recipe
from edgeskel.tune.search import run_tune


def step_fast_measure(infers, batches):
    """Deterministic timing: step graphs 1 ms, windows 4 ms; every candidate really runs."""
    out = {}
    for cid, fn in infers.items():
        fn(next(iter(batches.values())))
        ms = 1.0 if cid.endswith("-stream") else 4.0
        out[cid] = {str(b): {"p50": ms, "p99": ms * 1.1, "batch_size": b} for b in batches}
    return out


def test_tune_searches_windowed_vs_streaming(tmp_path: Path):
    rec = tmp_path / "tiny-stream.yaml"
    rec.write_text(yaml.safe_dump({**TINY, "name": "tiny-stream", "streaming": {"max_sequences": 6}}))
    prof = _profile(tmp_path, variants=[{"backend": "ort", "precision": "fp32"}, {"backend": "openvino", "precision": "fp32"}],
                    gates={"max_top1_drop": 100.0})  # two backends: streaming is searched per backend and precision
    res = run_tune(str(prof), str(rec), out_root=tmp_path / "runs", budgets=(0.8,), quiet=True, log=lambda s: None,
                   measure=step_fast_measure)
    streams = [c for c in res["candidates"] if c.get("form") == "streaming"]
    windowed = [c for c in res["candidates"] if c.get("form") != "streaming" and c["status"] == "ok"]
    assert {c["variant"] for c in streams} == {"ort-fp32", "openvino-fp32"}
    assert {c["compression"] for c in streams} == {c["compression"] for c in windowed}  # every final option streams
    for c in streams:
        assert c["status"] == "ok" and 0 <= c["top1"] <= 100 and c["latency_ms"]["1"]["p50"] == 1.0
        assert list(c["latency_ms"]) == ["1"] and c["stride"] >= 1
    assert all(c["latency_ms"]["1"]["p50"] == 4.0 for c in windowed)  # re-timed beside the streams
    chosen = next(c for c in res["candidates"] if c["id"] == res["decision"]["chosen"])
    assert chosen["form"] == "streaming" and "a step graph" in res["decision"]["why"]
    assert res["decision"]["test_top1_by"].startswith("streaming")
    tuned, _ = load_recipe(res["recipe_file"])
    assert tuned.streaming is not None and tuned.streaming.variants == [chosen["variant"]]
    doc = json.loads((tmp_path / "runs" / "tiny-stream" / "tune-cpu" / "tune.json").read_text())
    assert "-stream" in doc["table"]

    # the same search on a window workload (no streaming section) has no step graphs
    rec.write_text(yaml.safe_dump({**TINY, "name": "tiny-window"}))
    res = run_tune(str(prof), str(rec), out_root=tmp_path / "runs", budgets=(0.8,), quiet=True, log=lambda s: None,
                   measure=step_fast_measure)
    assert not any(c.get("form") == "streaming" for c in res["candidates"])
