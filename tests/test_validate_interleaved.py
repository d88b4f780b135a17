"""Issue 18 item 4: the validate stage times variants interleaved (round-robin in one process,
accuracy and memory still per variant in its own process), flags noisy timing, and records
the host CPU, cores, threads and load average that the numbers were measured under."""

from __future__ import annotations

import numpy as np
from test_devices_common import tiny_data, tiny_onnx

from edgeskel.devices import profile_from_dict
from edgeskel.remote.bundle import make_bundle
from edgeskel.remote.device_runner import host_info, latency_stats, run_bundle, time_round_robin

PROFILE = profile_from_dict({
    "name": "ildev", "arch": "x86_64", "variants": [{"backend": "ort", "precision": "fp32"}], "batch_sizes": [1, 4],
    "threads": 1, "measure": {"warmup": 1, "runs": 12}, "gates": {"max_top1_drop": 100.0},
    "peak": {"gflops_fp32": 10, "memory_bandwidth_gbs": 10, "source": "test"},
})


def test_round_robin_times_every_variant_in_blocks_per_round_with_rotated_start():
    calls: list[str] = []
    infers = {n: (lambda x, n=n: calls.append(n)) for n in ("a", "b", "c")}
    times = time_round_robin(infers, np.zeros((1, 1)), warmup=0, runs=6, rounds=3)
    assert {n: len(t) for n, t in times.items()} == {"a": 6, "b": 6, "c": 6}
    rounds = [calls[i:i + 6] for i in range(0, 18, 6)]
    # every round holds every variant as one block of consecutive calls (call-by-call alternation
    # lets one runtime's spinning worker threads slow the next), never A x6 then B x6 ...
    assert all(r == [r[0]] * 2 + [r[2]] * 2 + [r[4]] * 2 and sorted(set(r)) == ["a", "b", "c"] for r in rounds)
    assert [r[0] for r in rounds] == ["a", "b", "c"]  # ... and nobody always goes first


def test_round_robin_rewarms_each_block_after_the_others_ran():
    calls: list[str] = []
    infers = {n: (lambda x, n=n: calls.append(n)) for n in ("a", "b")}
    times = time_round_robin(infers, np.zeros((1, 1)), warmup=3, runs=4, rounds=2)
    assert {n: len(t) for n, t in times.items()} == {"a": 4, "b": 4}
    assert calls[:6] == ["a"] * 3 + ["b"] * 3  # initial warm-up
    assert calls[6:] == ["a"] * 4 + ["b"] * 4 + ["b"] * 4 + ["a"] * 4  # 2 re-warm + 2 timed per block


def test_noisy_flag_from_spread():
    steady = latency_stats([1.0 + 0.01 * (i % 5) for i in range(100)], 1)
    tail = latency_stats([1.0] * 95 + [5.0] * 5, 1)
    assert steady["noisy"] is False and steady["spread"]["p99_over_p50"] < 1.1
    assert tail["noisy"] is True and tail["spread"]["p99_over_p50"] > 2.0


def test_host_info_names_cpu_cores_threads_and_load():
    h = host_info(threads=2)
    assert h["cpu_model"] and h["logical_cores"] >= 1 and h["usable_cores"] >= 1 and h["threads"] == 2
    assert len(h["load_avg_1_5_15"]) == 3


def test_run_bundle_times_variants_interleaved_in_one_process(tmp_path):
    paths = []
    for i in range(2):
        p = tmp_path / f"m{i}.onnx"
        w, b = tiny_onnx(p, seed=0)
        paths.append(p)
    x, y, ref = tiny_data(w, b)
    arts = [{"name": f"ort-fp32-{i}", "backend": "ort", "precision": "fp32", "path": p} for i, p in enumerate(paths)]
    bundle = make_bundle(tmp_path / "bundle", arts, x, y, ref, PROFILE, warmup=1, runs=12)
    doc = run_bundle(bundle, tmp_path / "results.json", log=lambda s: None)  # isolated: real child processes
    assert doc["timing"]["method"].startswith("interleaved") and doc["timing"]["variants"] == ["ort-fp32-0", "ort-fp32-1"]
    for r in doc["variants"]:
        assert r["status"] == "ok" and r["timing"] == "interleaved"
        assert r["accuracy"]["top1"] > 0 and r["memory"]["peak_rss_mb"] > 0  # still from its own process
        assert sorted(r["latency_ms"]) == ["1", "4"] and r["latency_ms"]["1"]["runs"] == 12
        assert "noisy" in r["latency_ms"]["1"]
    host = doc["environment"]["host"]
    assert host["cpu_model"] and host["threads"] == 1 and len(host["load_avg_after"]) == 3
    alone = run_bundle(bundle, tmp_path / "alone.json", isolate=False, interleave=False, log=lambda s: None)
    assert all(r["timing"] == "own process" for r in alone["variants"]) and "variants" not in alone["timing"]


def test_report_shows_timing_host_noise_and_achieved_compute(tmp_path):
    from edgeskel.pipeline.validation import assemble_report, measurement_conditions
    from edgeskel.report import write_reports
    from edgeskel.report.roofline import achieved_compute

    w, b = tiny_onnx(tmp_path / "m.onnx")
    x, y, ref = tiny_data(w, b)
    arts = [{"name": n, "backend": "ort", "precision": "fp32", "path": tmp_path / "m.onnx"} for n in ("ort-a", "ort-b")]
    bundle = make_bundle(tmp_path / "bundle", arts, x, y, ref, PROFILE, warmup=1, runs=12)
    doc = run_bundle(bundle, tmp_path / "results.json", isolate=False, log=lambda s: None)
    for i, busy in enumerate((False, True)):  # set both: the real host may itself have been busy during the run
        for stats in doc["variants"][i]["latency_ms"].values():
            stats["noisy"] = busy
    prof = profile_from_dict({**PROFILE.model_dump(mode="json"),
                              "variants": [{"backend": "ort", "precision": "fp32", "name": n} for n in ("ort-a", "ort-b")]})
    val = {"measured": {r["name"]: {**r, "measured_on": "local"} for r in doc["variants"]}, "not_measured": {},
           **measurement_conditions(doc)}
    exp = {n: {"status": "passed", "artifact": "m.onnx", "files": []} for n in ("ort-a", "ort-b")}
    report = assemble_report(prof, "tiny", {"num_val": 40, "num_calib": 8, "layout": "tiny", "classes": list("abcdef")},
                             {"top1": 90.0}, None, {"variants": exp}, val, {"params": 10, "gflops": 0.001}, {})
    assert report["measurement"]["timing"]["method"].startswith("interleaved")
    v = {e["name"]: e for e in report["variants"]}
    assert v["ort-b"]["latency_noisy"] and not v["ort-a"]["latency_noisy"] and v["ort-a"]["timing"] == "interleaved"
    assert v["ort-a"]["compute"]["batch1"]["fraction_of_peak"] is None  # local: the profile's peak is not this host's
    assert v["ort-a"]["throughput_batch_size"] in (1, 4)
    md = write_reports(report, tmp_path / "out")["md"].read_text()
    assert "Timing: interleaved round-robin" in md and "Host: " in md and "load average" in md
    assert "Noisy timing" in md and "ort-b (noisy)" not in md and " (noisy)" in md
    dev = achieved_compute(0.5, {"1": {"p50": 10.0}, "8": {"p50": 40.0}}, "int8",
                           {"gflops_fp32": 100, "tops_int8": 1}, peak_applies=True)
    assert dev["batch1"] == {"batch": 1, "gflops_per_s": 50.0, "fraction_of_peak": 0.05}
    assert dev["best"]["batch"] == 8 and dev["best"]["gflops_per_s"] == 100.0 and dev["peak_gflops"] == 1000.0


def test_device_run_cli_interleaves_unless_told_not_to(tmp_path):
    import json

    from edgeskel.cli import main

    w, b = tiny_onnx(tmp_path / "m.onnx")
    x, y, ref = tiny_data(w, b)
    arts = [{"name": n, "backend": "ort", "precision": "fp32", "path": tmp_path / "m.onnx"} for n in ("a", "b")]
    bundle = make_bundle(tmp_path / "bundle", arts, x, y, ref, PROFILE, warmup=1, runs=10)
    assert main(["device-run", str(bundle), "--out", str(tmp_path / "r1.json")]) == 0
    assert json.loads((tmp_path / "r1.json").read_text())["timing"]["method"].startswith("interleaved")
    assert main(["device-run", str(bundle), "--out", str(tmp_path / "r2.json"), "--no-interleave"]) == 0
    doc = json.loads((tmp_path / "r2.json").read_text())
    assert [r["timing"] for r in doc["variants"]] == ["own process", "own process"]
