"""Issue 27 (report problems): the decision weighs the uncompressed baseline it measured; the
tie wording never calls a slower variant the lowest; report.html has report.md's selection
lines; a Jetson report keeps skip reasons out of cells and host checks out of device columns;
'% peak' says which precision's peak it divides by.

Reports are built by `assemble_report` (the pipeline's own function) from device-runner-shaped
measurements; the numbers are inputs to the logic under test.
"""

from __future__ import annotations

import json

from test_report_verdict import exported, meas

from edgeskel.devices import profile_from_dict
from edgeskel.pipeline.validation import assemble_report
from edgeskel.report import write_reports
from edgeskel.report.console import print_report
from edgeskel.report.lines import compute_lines
from edgeskel.report.verdict import decide

GATES = {"max_top1_drop": 1.0, "p99_latency_ms": 20.0, "max_memory_mb": 500.0}


def profile(variants: list[dict], arch: str = "x86_64", name: str = "gatedev", threads: int = 1):
    trt = {"tensorrt": {"jetpack": "6.2", "version": "10.3"}} if any(v["backend"] == "tensorrt" for v in variants) else {}
    return profile_from_dict({
        "name": name, "arch": arch, "variants": variants, "batch_sizes": [1, 16], "threads": threads,
        "measure": {"warmup": 0, "runs": 3}, "gates": GATES,
        "peak": {"gflops_fp32": 10, "gflops_fp16": 20, "memory_bandwidth_gbs": 10, "source": "test"}, **trt,
    })


OV_INT8 = [{"backend": "openvino", "precision": "int8"}, {"backend": "ort", "precision": "fp32"}]


def report_with_baselines(prof, exp: dict, measured: dict, base_exp: dict, not_measured: dict | None = None,
                          conditions: dict | None = None, data: dict | None = None, comp: dict | None = None) -> dict:
    val = {"measured": measured, "not_measured": not_measured or {}}
    if conditions:
        val["conditions"] = conditions
    return assemble_report(
        prof, "r", data or {"num_val": 100, "num_calib": 8, "layout": "tiny", "classes": ["a", "b"]},
        {"top1": 94.27, "top5": 100.0, "params": 20, "gflops": 0.002, "source": "test"}, comp,
        {"variants": exp}, val, {"params": 10, "gflops": 0.001}, {"python": "test"},
        baseline={"variants": base_exp})


def both(size_c: int = 460_000, size_u: int = 525_000) -> tuple[dict, dict]:
    exp = {"openvino-int8": exported(size_c), "ort-fp32": exported(450_000)}
    base = {"baseline-openvino-int8": exported(size_u), "baseline-ort-fp32": exported(864_000)}
    return exp, base


def test_compression_that_buys_nothing_ships_the_uncompressed_variant(tmp_path, capsys):
    exp, base = both()
    m = {"openvino-int8": meas(93.75, 1.20), "ort-fp32": meas(93.75, 3.0),
         "baseline-openvino-int8": meas(94.27, 1.20), "baseline-ort-fp32": meas(94.27, 3.5)}
    rep = report_with_baselines(profile(OV_INT8), exp, m, base)
    d = rep["decision"]
    # the verdict is the variants' alone (baselines are never gated)
    assert rep["verdict"] == "PASSED" and rep["exit_code"] == 0
    assert d["recommended"] == "openvino-int8" and d["ship_uncompressed"] is True
    assert d["uncompressed"] == d["ship"] == "baseline-openvino-int8"
    assert d["compression_speedup"] == 1.0 and d["compression_speedup_p99"] == 1.0
    assert d["why"].startswith("ship the uncompressed openvino-int8: compression gave 1.00x here (p50 0.96 vs 0.96 ms "
                               "uncompressed, 1.00x; p99 1.20 vs 1.20 ms uncompressed, 1.00x), top-1 93.75 vs 94.27 "
                               "uncompressed")
    assert "among the compressed variants, openvino-int8 meets every gate" in d["why"]
    paths = write_reports(rep, tmp_path)
    assert json.loads(paths["json"].read_text())["decision"]["ship_uncompressed"] is True
    for text in (paths["md"].read_text(), paths["html"].read_text()):
        assert "ship the uncompressed openvino-int8: compression gave 1.00x here" in text
    assert "**Ship the uncompressed `openvino-int8`** (`baseline-openvino-int8`" in paths["md"].read_text()
    assert "<b>Ship the uncompressed <code>openvino-int8</code></b>" in paths["html"].read_text()
    capsys.readouterr()
    print_report(rep)
    assert "ship the uncompressed openvino-int8: compression gave 1.00x here" in capsys.readouterr().out


def test_uncompressed_faster_at_p50_only_still_ships_uncompressed():
    """The smaller of the p50 and p99 ratios counts: a p99 that happens to favour the compressed
    variant does not hide that it is slower at p50."""
    exp, base = both()
    fast_base = meas(94.27, 1.28)
    fast_base["latency_ms"]["1"]["p50"] = 0.85  # the compressed variant: 0.96 ms p50, 1.20 ms p99
    m = {"openvino-int8": meas(93.75, 1.20), "ort-fp32": meas(93.75, 3.0),
         "baseline-openvino-int8": fast_base, "baseline-ort-fp32": meas(94.27, 3.5)}
    d = report_with_baselines(profile(OV_INT8), exp, m, base)["decision"]
    assert d["ship_uncompressed"] is True and d["compression_speedup"] == round(0.85 / 0.96, 4)
    assert d["compression_speedup_p99"] == round(1.28 / 1.20, 4)
    assert d["why"].startswith("ship the uncompressed openvino-int8: compression gave 0.89x here")


def test_real_speedup_keeps_the_compressed_variant_and_says_by_how_much():
    exp, base = both()
    m = {"openvino-int8": meas(93.75, 1.0), "ort-fp32": meas(93.75, 3.0),
         "baseline-openvino-int8": meas(94.27, 2.0), "baseline-ort-fp32": meas(94.27, 3.5)}
    d = report_with_baselines(profile(OV_INT8), exp, m, base)["decision"]
    assert d["recommended"] == d["ship"] == "openvino-int8" and d["ship_uncompressed"] is False
    assert d["compression_speedup"] == 2.0 and "2.00x faster than the uncompressed openvino-int8" in d["why"]


def test_uncompressed_that_misses_a_gate_is_not_recommended():
    exp, base = both()
    m = {"openvino-int8": meas(93.75, 1.20), "ort-fp32": meas(93.75, 3.0),
         "baseline-openvino-int8": meas(94.27, 1.20, mem=900.0), "baseline-ort-fp32": meas(94.27, 3.5)}
    d = report_with_baselines(profile(OV_INT8), exp, m, base)["decision"]
    assert d["ship_uncompressed"] is False and d["ship"] == "openvino-int8"
    assert "misses peak memory 900 > 500 MB" in d["why"]


def test_baseline_timed_elsewhere_gives_no_ratio():
    """A host check of the uncompressed model (profile for another device) has no device
    latency: no ratio, no recommendation to ship it."""
    exp, base = both()
    host = {**meas(94.27, 0.5), "host_only": True, "host_arch": "x86_64"}
    m = {"openvino-int8": meas(93.75, 1.20), "ort-fp32": meas(93.75, 3.0),
         "baseline-openvino-int8": host, "baseline-ort-fp32": meas(94.27, 3.5)}
    rep = report_with_baselines(profile(OV_INT8), exp, m, base)
    d = rep["decision"]
    assert d["ship_uncompressed"] is False and d["compression_speedup"] is None and d["ship"] == "openvino-int8"
    assert "no uncompressed openvino-int8 timed on the same machine" in d["why"]
    row = next(b for b in rep["baselines"] if b["of"] == "openvino-int8")
    assert row["host_check"] is True and row["latency_ms"]["p50"] is None
    # ... and on another machine altogether (an imported device run vs a local baseline)
    v = {"name": "a", "status": "pass", "latency_ms": {"p50": 1.0, "p99": 1.2}, "size_mb": 1.0,
         "measured_on": "ssh://dev"}
    b = {"name": "baseline-a", "of": "a", "latency_ms": {"p50": 1.0, "p99": 1.2}, "measured_on": "local", "size_mb": 2.0}
    assert decide([v], "dev", [b])["compression_speedup"] is None
    assert decide([v], "dev", [{**b, "measured_on": "ssh://dev"}])["ship_uncompressed"] is True


def test_tie_wording_never_calls_the_slower_variant_lowest():
    def v(name: str, p99: float, size: float) -> dict:
        return {"name": name, "status": "pass", "latency_ms": {"p99": p99}, "size_mb": size, "measured_on": "local"}

    d = decide([v("ort-fp32", 1.15, 0.45), v("openvino-fp32", 1.13, 0.55)], "cpu")
    assert d["recommended"] == "ort-fp32"
    assert "lowest p99" not in d["why"] and "tied within 5% with" not in d["why"]
    assert d["why"].endswith("p99 1.15 ms at batch 1, within 5% of the lowest (openvino-fp32 1.13 ms); "
                             "the smaller artifact (0.45 MB vs openvino-fp32 0.55 MB)")
    # the lowest one winning its tie on size keeps "lowest"
    d = decide([v("ort-fp32", 1.13, 0.45), v("openvino-fp32", 1.15, 0.55)], "cpu")
    assert "lowest p99 at batch 1 (1.13 ms), tied within 5% with openvino-fp32 (1.15 ms)" in d["why"]


def test_html_has_the_selection_lines_of_the_markdown(tmp_path):
    exp, base = both()
    m = {"openvino-int8": meas(93.75, 1.0), "ort-fp32": meas(93.75, 3.0),
         "baseline-openvino-int8": meas(94.27, 2.0), "baseline-ort-fp32": meas(94.27, 3.5)}
    data = {"num_val": 72, "num_test": 192, "num_calib": 8, "layout": "tiny", "classes": ["a", "b"],
            "validation": {"source": "stratified slice of train", "samples": 72}}
    comp = {"top1": 93.75, "totals": {}, "selection": {"deployed": "factorized", "note": "fine-tuning did not help"}}
    rep = report_with_baselines(profile(OV_INT8), exp, m, base, data=data, comp=comp)
    paths = write_reports(rep, tmp_path)
    md, html = paths["md"].read_text(), paths["html"].read_text()
    assert "Deployed model: **factorized**" in md and "Accuracy is on the test split only (192 samples)" in md
    assert "Deployed model: <b>factorized</b> (fine-tuning did not help; chosen on the validation split)" in html
    assert "Accuracy is on the test split only (192 samples); epochs, models and INT8 gates were chosen" in html


def test_jetson_report_keeps_reasons_out_of_cells_and_host_checks_out_of_device_columns(tmp_path):
    variants = [{"backend": "tensorrt", "precision": "fp16"}, {"backend": "tensorrt", "precision": "int8"},
                {"backend": "ort", "precision": "fp32"}]
    prof = profile(variants, arch="aarch64", name="jetson-orin", threads=8)
    exp = {"tensorrt-fp16": exported(1_000_000), "tensorrt-int8": exported(600_000), "ort-fp32": exported(450_000)}
    base = {"baseline-tensorrt-fp16": exported(2_000_000), "baseline-tensorrt-int8": exported(1_000_000),
            "baseline-ort-fp32": exported(864_000)}
    why = "not measured on device (no NVIDIA GPU on this host); run the bundle on the device (see below)"
    host = {"host_only": True, "host_arch": "x86_64"}
    m = {"ort-fp32": {**meas(93.75, 3.0), **host}, "baseline-ort-fp32": {**meas(91.11, 3.5), **host}}
    skip = {k: why for k in ("tensorrt-fp16", "tensorrt-int8", "baseline-tensorrt-fp16", "baseline-tensorrt-int8")}
    cond = {"timing": {"method": "interleaved"}, "machine": "x86_64",
            "host": {"cpu_model": "AMD EPYC", "logical_cores": 2, "usable_cores": 2, "threads": 8,
                     "load_avg_1_5_15": [0.5, 0.5, 0.5]}}
    rep = report_with_baselines(prof, exp, m, base, not_measured=skip, conditions=cond)
    assert rep["verdict"] == "NOT MEASURED" and rep["decision"]["recommended"] is None
    paths = write_reports(rep, tmp_path)
    md, html = paths["md"].read_text(), paths["html"].read_text()
    section = md.split("## Compressed vs uncompressed")[1].split("\n## ")[0]
    table = [ln for ln in section.splitlines() if ln.startswith("| tensorrt") or ln.startswith("| ort-fp32")]
    assert len(table) == 3 and not any("no NVIDIA GPU" in ln for ln in table)
    assert all(ln.split(" | ")[1] == "not measured" for ln in table)
    assert section.count("no NVIDIA GPU") == 1  # the reason once, under the table
    assert "(tensorrt-fp16, tensorrt-int8): " + why in section
    # the host check's uncompressed top-1 (91.11) is not in the device table, but in the host checks
    assert "91.11" not in section and table[2].split(" | ")[-2] == "-"
    hosts = md.split("## Host checks (NOT device numbers)")[1].split("\n## ")[0]
    assert "Uncompressed top-1 (host)" in hosts and "91.11" in hosts
    hsection = html.split("<h2>Compressed vs uncompressed</h2>")[1].split("<h2>")[0]
    assert hsection.count("<td>not measured</td>") == 3 and hsection.count("no NVIDIA GPU") == 1
    assert "<td>91.11</td>" in html.split("Host checks")[1]
    line = next(ln for ln in md.splitlines() if ln.startswith("Host: "))
    assert ("runtime threads 8 (the jetson-orin profile's setting for the device, not chosen for this host; "
            "more than the 2 usable cores here: threads shared cores)") in line


def test_threads_above_usable_cores_on_the_device_itself_are_noted():
    rep = {"device": "cpu", "variants": [], "measurement": {"host": {"usable_cores": 2, "threads": 4, "logical_cores": 4}}}
    from edgeskel.report.lines import conditions_lines

    line = conditions_lines(rep)[0]
    assert "runtime threads 4 (more than the 2 usable cores: threads shared cores)" in line
    rep["measurement"]["host"]["threads"] = 2
    assert "runtime threads 2;" in conditions_lines(rep)[0]


def test_fraction_of_peak_names_the_peak_it_divides_by():
    from edgeskel.report.roofline import achieved_compute

    peak = {"gflops_fp32": 10.0, "gflops_fp16": 20.0}
    lat = {"1": {"p50": 1.0}}
    variants = [{"name": "trt-int8", "precision": "int8", "compute": achieved_compute(0.01, lat, "int8", peak, True)},
                {"name": "trt-fp16", "precision": "fp16", "compute": achieved_compute(0.01, lat, "fp16", peak, True)},
                {"name": "ort-fp32", "precision": "fp32", "compute": achieved_compute(0.01, lat, "fp32", peak, True)}]
    lines = compute_lines({"variants": variants})
    assert "(50.0% of fp16 peak; the profile gives no int8 peak)" in lines[0]
    assert "(50.0% of fp16 peak)" in lines[1] and "(100.0% of fp32 peak)" in lines[2]
    with_int8 = achieved_compute(0.01, lat, "int8", {**peak, "tops_int8": 1.0}, True)
    assert with_int8["peak_precision"] == "int8" and with_int8["batch1"]["fraction_of_peak"] == 0.01


def test_bench_peak_column_says_fp32_peak():
    from edgeskel.bench.report import variant_table

    m = {"variants": {"ov-int8": {"label": "openvino-int8", "params": 10, "gflops": 0.1, "status": "pass",
                                  "latency_ms": {"1": {"p50": 1.0, "p99": 1.2}}, "gflops_per_s_b1": 100.0,
                                  "fraction_of_peak_b1": 1.3}}}
    table = variant_table(m, 16)
    assert "| % fp32 peak b1 |" in table[0] and "| % peak b1 |" not in table[0]
    assert "| 130.0 |" in table[2]
