"""`edgeskel bench` end to end at tiny settings: tiny ST-GCN trained for 2 epochs on a small
synthetic set, every baseline and edgeskel variant measured, results/plots/Markdown written."""

from __future__ import annotations

import json

import pytest

from edgeskel.bench import BEGIN_MARKER, END_MARKER, quick_settings, run_bench

BASELINES = {"baseline/torch-fp32", "baseline/ort-fp32", "baseline/openvino-fp32", "baseline/ort-dynamic-int8",
             "baseline/nncf-int8"}
EDGESKEL = {"edgeskel/ort-fp32", "edgeskel/ort-int8", "edgeskel/openvino-fp32", "edgeskel/openvino-fp16",
            "edgeskel/openvino-bf16", "edgeskel/openvino-int8"}


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    root = tmp_path_factory.mktemp("bench")
    md = root / "docs" / "BENCHMARKS.md"
    md.parent.mkdir()
    md.write_text(f"# Benchmarks\n\nHand-written intro.\n\n{BEGIN_MARKER}\nstale\n{END_MARKER}\n\n## Hand-written notes\nkeep me\n")
    s = quick_settings(models=["stgcn"], data="synthetic?classes=4&per_class=12&test_per_class=6", out=root / "docs" / "bench",
                       cache_dir=root / "cache", width=0.25, frames=16, train_epochs=2, finetune_epochs=1, val_samples=24,
                       runs=5, rounds=2, warmup=2, max_seconds=2.0, t_grid=[16, 32], batch_grid=[1, 2], scaling_runs=3,
                       scaling_rounds=1, profile_runs=3, throughput_batch=4, profile_always=True, command="pytest",
                       threads=1)  # 1 thread: the test must not oversubscribe a shared 2-core box
    return run_bench(s, progress=False), s, md


def test_every_variant_has_numbers(bench):
    res, s, _ = bench
    m = res["models"]["stgcn"]
    keys = set(m["variants"])
    assert BASELINES | EDGESKEL <= keys
    for k, r in m["variants"].items():
        assert r.get("status") in ("pass", "fail"), f"{k}: {r.get('reason')}"
        assert 0 <= r["top1"] <= 100 and r["size_bytes"] > 0 and r["params"] > 0 and r["gflops"] > 0
        stream = r["group"] == "streaming"  # a step call: batch 1 only, one decision per call
        for b in ("1",) if stream else ("1", "4"):
            lat = r["latency_ms"][b]
            assert 0 < lat["p50"] <= lat["p99"] and lat["runs"] >= 2 * 2 and lat["rounds"] == 2
        assert (r["throughput_fps"] is None) if stream else r["throughput_fps"] > 0
    # streaming rows (issue 30): both models' step graphs, timed in the same run, fewer FLOPs per decision
    streams = {k: r for k, r in m["variants"].items() if r["group"] == "streaming"}
    assert set(streams) == {"streaming/ort-fp32-original", "streaming/ort-fp32-compressed"}
    for r in streams.values():
        assert list(r["latency_ms"]) == ["1"] and r["num_samples"] == m["num_val"] and r["stride"] >= 1
        windowed = m["variants"]["baseline/ort-fp32" if r["model"] == "original" else "edgeskel/ort-fp32"]
        assert r["gflops"] < windowed["gflops"] and r["speedup_vs_torch"] > 0
    assert m["variants"]["edgeskel/ort-int8"]["params"] < m["variants"]["baseline/ort-fp32"]["params"]
    assert m["reference"]["source"].startswith("trained here")  # no checkpoint: trained, never random weights
    # baselines are judged by the parity rule edgeskel's own artifacts of that precision must pass
    nncf = m["variants"]["baseline/nncf-int8"]["parity_vs_torch"]
    assert nncf["precision"] == "int8" and nncf["quantile_abs_x_scale"] <= nncf["max_abs_x_scale"]
    assert 100 * nncf["agreement"] == pytest.approx(m["variants"]["baseline/nncf-int8"]["agreement"])
    assert m["variants"]["baseline/ort-fp32"]["parity_vs_torch"]["passed"]  # plain fp32 export: tight parity holds
    assert "parity_vs_torch" not in m["variants"]["edgeskel/ort-int8"]  # checked at export instead


def test_ratios_are_consistent_with_the_numbers(bench):
    res, _, _ = bench
    m = res["models"]["stgcn"]
    v = m["variants"]
    p50 = {k: r["latency_ms"]["1"]["p50"] for k, r in v.items()}
    peak = res["machine"]["peak"]["gflops_fp32"]
    baselines = {k for k in v if k.startswith("baseline/")}  # every baseline the run measured, not a hand list
    ours = {k for k in v if k.startswith("edgeskel/")}
    assert m["best_baseline"] in baselines and m["best"] in ours
    ok_base = [k for k in baselines if v[k]["accuracy_ok"]]
    assert p50[m["best_baseline"]] == min(p50[k] for k in ok_base)
    passing = [k for k in ours if v[k]["status"] == "pass"]
    assert p50[m["best"]] == min(p50[k] for k in passing)
    for k, r in v.items():
        assert r["speedup_vs_torch"] == pytest.approx(p50["baseline/torch-fp32"] / p50[k])
        assert r["speedup_vs_best_baseline"] == pytest.approx(p50[m["best_baseline"]] / p50[k])
        assert r["size_reduction_vs_onnx"] == pytest.approx(v["baseline/ort-fp32"]["size_bytes"] / r["size_bytes"])
        assert r["gflops_per_s_b1"] == pytest.approx(r["gflops"] / (p50[k] / 1000))
        assert r["fraction_of_peak_b1"] == pytest.approx(r["gflops_per_s_b1"] / peak)
    t = {x["target"]: x for x in m["targets"]}
    assert t["speedup_vs_torch"]["value"] == pytest.approx(v[m["best"]]["speedup_vs_torch"])
    assert t["speedup_vs_torch"]["met"] == (v[m["best"]]["speedup_vs_torch"] >= 3.0)
    assert t["top1_drop"]["value"] == pytest.approx(m["reference"]["top1"] - v[m["best"]]["top1"])


def test_profile_and_scaling(bench):
    res, _, _ = bench
    m = res["models"]["stgcn"]
    prof = m["op_profile"]
    assert prof["variant"] == m["best"] and prof["ops"], prof
    assert sum(o["share"] for o in prof["ops"]) == pytest.approx(1.0)
    t_rows = m["scaling"]["T"]["rows"]
    assert {r["T"] for r in t_rows} == {16, 32} and len({r["variant"] for r in t_rows}) == 3
    b_rows = m["scaling"]["batch"]["rows"]
    assert {r["batch"] for r in b_rows} == {1, 2} and all(r["p50_ms"] > 0 and r["throughput_fps"] > 0 for r in b_rows)
    ct = res["compression_times"]
    assert ct and ct[0]["model"] == "stgcn" and ct[0]["wall_time_s"] > 0


def test_outputs_written_and_markdown_between_markers(bench):
    res, s, md = bench
    on_disk = json.loads((s.out / "results.json").read_text())
    assert on_disk["format"] == "edgeskel-bench/1" and set(on_disk["models"]) == {"stgcn"}
    assert on_disk["machine"]["peak"]["gflops_fp32"] > 0 and on_disk["libraries"]["onnxruntime"]
    for p in res["outputs"]["plots"].values():
        assert p.endswith(".png") and (s.out / p.split("/")[-1]).stat().st_size > 1000
    text = md.read_text()
    assert res["outputs"]["markdown"] == str(md)
    assert text.startswith("# Benchmarks\n\nHand-written intro.\n\n" + BEGIN_MARKER)
    assert text.endswith(END_MARKER + "\n\n## Hand-written notes\nkeep me\n")
    assert "stale" not in text and text.count(BEGIN_MARKER) == 1
    inner = text.split(BEGIN_MARKER)[1].split(END_MARKER)[0]
    assert "Command: `pytest`" in inner and "ONNX Runtime dynamic INT8" in inner and "★ best" in inner
    assert "(bench/stgcn-latency-vs-T.png)" in inner  # image links relative to the Markdown file


def test_pipeline_artifacts_are_reused_only_when_they_passed(tmp_path):
    from edgeskel.bench.variants import pipeline_artifact

    def variant(key: str, status: str, make_file: bool = True) -> None:
        d = tmp_path / key
        d.mkdir()
        if make_file:
            (d / "model.onnx").write_bytes(b"x")
        (d / "export.json").write_text(json.dumps({"status": status, "artifact": "model.onnx",
                                                   "runtime": {"backend": "ort", "precision": "fp32"}}))

    variant("ort-fp32", "passed")
    variant("ort-int8", "failed")
    variant("openvino-fp32", "passed", make_file=False)
    (tmp_path / "openvino-fp16").mkdir()
    (tmp_path / "openvino-fp16" / "export.json").write_text("{not json")
    got = pipeline_artifact(tmp_path, "ort-fp32")
    assert got["artifact"] == tmp_path / "ort-fp32" / "model.onnx" and "pipeline export" in got["source"]
    for key in ("ort-int8", "openvino-fp32", "openvino-fp16", "openvino-bf16"):
        assert pipeline_artifact(tmp_path, key) is None, key
    assert pipeline_artifact(None, "ort-fp32") is None


def test_resume_keeps_finished_models_and_a_stopped_run_keeps_them_on_disk(bench, monkeypatch):
    """Sessions get cut off: a stopped multi-model run must leave every finished model in
    results.json (marked partial) and `--resume` must not measure it again."""
    import dataclasses

    import edgeskel.bench.api as api

    res, s, md = bench
    first = res["models"]["stgcn"]

    def stopped(name, *a, **k):
        raise KeyboardInterrupt(f"stopped while measuring {name}")

    monkeypatch.setattr(api, "bench_model", stopped)
    again = dataclasses.replace(s, models=["stgcn", "ctrgcn"], resume=True)
    with pytest.raises(KeyboardInterrupt, match="ctrgcn"):
        run_bench(again, progress=False)
    on_disk = json.loads((s.out / "results.json").read_text())
    assert on_disk["complete"] is False and on_disk["missing_models"] == ["ctrgcn"]
    assert on_disk["models"]["stgcn"]["measured_at"] == first["measured_at"]  # kept, not measured again
    assert "Partial results" in md.read_text() and "ctrgcn" in md.read_text()

    # different settings: nothing is resumable (and the reason is logged)
    logged = []
    other = dataclasses.replace(s, runs=s.runs + 1, resume=True)
    assert api.resumable_models(other, {"format": on_disk["format"], "settings": other.to_json(),
                                        "machine": on_disk["machine"], "libraries": on_disk["libraries"]},
                                logged.append) == {}
    assert "different settings" in logged[0]
    same = api.resumable_models(s, {"format": on_disk["format"], "settings": s.to_json(), "machine": on_disk["machine"],
                                    "libraries": on_disk["libraries"]}, logged.append)
    assert set(same) == {"stgcn"}
    # another recipe for a model (e.g. tune's): that model is measured again, the others are kept
    tuned = dataclasses.replace(s, recipes={"stgcn": "runs/x/tune-cpu/recipe.yaml"}, resume=True)
    assert api.resumable_models(tuned, {"format": on_disk["format"], "settings": tuned.to_json(),
                                        "machine": on_disk["machine"], "libraries": on_disk["libraries"]},
                                logged.append) == {}


def test_rows_say_where_their_choices_were_made():
    """Rows measured before validation splits existed must not claim validation selection."""
    from edgeskel.bench.report import selection_note

    old = {"top1": {"reference": 84.7, "after_compression": 84.7, "after_finetune": 85.1}}
    new = {"top1": {"reference": 83.0, "after_finetune": 81.3, "deployed": 81.3},
           "selection": {"split": "validation"}}
    assert "before validation splits existed" in selection_note(old)
    assert "validation slice" in selection_note(new) and "before" not in selection_note(new)


def test_edgeskel_exports_are_gated_on_validation_not_on_the_test_columns(bench, monkeypatch):
    """The accuracy columns are test numbers; the INT8 gates and parity of the exports the bench
    makes must use the validation slice (they were given the test arrays)."""
    import dataclasses

    import numpy as np

    import edgeskel.bench.api as api
    from edgeskel.bench.models import prepare_model
    from edgeskel.devices import load_profile

    _, s, _ = bench
    seen = {}

    class Stop(Exception):
        pass

    def capture(model, spec, profile, recipe, calib, val, *a, **k):
        seen["val"] = val
        raise Stop

    monkeypatch.setattr("edgeskel.bench.variants.edgeskel_variants", capture)
    quiet = dataclasses.replace(s, resume=False, out=s.out.parent / "gate-check")
    profile = load_profile(quiet.device)
    with pytest.raises(Stop):
        api.bench_model("stgcn", quiet, profile, {"flags_summary": "", "peak": {"gflops_fp32": 1.0}},
                        lambda m: None, False)
    # the profile's rank multiple, as bench_model uses: the cached compressed model, not a new compression
    prep = prepare_model("stgcn", quiet, profile.rank_multiple, lambda m: None)
    gx, gy = seen["val"]
    assert np.array_equal(gx, prep.gate_x) and np.array_equal(gy, prep.gate_y)
    assert not (len(gx) == len(prep.val_x) and np.array_equal(gx, prep.val_x))
