"""Peak-FLOPs parsing, Markdown marker insertion, targets and settings of `edgeskel bench` (fast, no models)."""

from __future__ import annotations

import pytest

from edgeskel.bench.machine import cpu_peak, flops_per_cycle, parse_lscpu
from edgeskel.bench.measure import check_targets
from edgeskel.bench.report import insert_between_markers
from edgeskel.bench.settings import BEGIN_MARKER, END_MARKER, BenchSettings, quick_settings
from edgeskel.errors import ConfigError

LSCPU_ZEN5 = """Architecture:                            x86_64
CPU(s):                                  2
On-line CPU(s) list:                     0,1
Vendor ID:                               AuthenticAMD
Model name:                              AMD EPYC
CPU family:                              26
Model:                                   2
Thread(s) per core:                      1
Core(s) per socket:                      2
Socket(s):                               1
BogoMIPS:                                5192.23
Flags:                                   fpu sse sse2 avx fma avx2 avx512f avx512dq avx512bw avx512vl avx512_bf16 avx512_vnni
Hypervisor vendor:                       KVM
"""

LSCPU_INTEL_AVX2 = """Vendor ID:               GenuineIntel
Model name:              Intel(R) Core(TM) i7-8700 CPU @ 3.20GHz
CPU family:              6
Thread(s) per core:      2
Core(s) per socket:      6
Socket(s):               1
CPU max MHz:             4600.0000
CPU min MHz:             800.0000
Flags:                   fpu sse2 avx fma avx2
"""


def test_peak_from_lscpu_bogomips_only():
    p = cpu_peak(LSCPU_ZEN5, threads=2)
    assert p["cores_used"] == 2 and p["flops_per_cycle"] == 64
    assert p["clock_ghz"] == pytest.approx(2.596, abs=1e-3)  # BogoMIPS / 2
    assert p["gflops_fp32"] == pytest.approx(2 * 2.59611 * 64, abs=0.2)
    assert "2 cores" in p["formula"] and "64 FLOP/cycle" in p["formula"]


def test_peak_prefers_cpuinfo_mhz_then_max_mhz_and_uses_physical_cores():
    p = cpu_peak(LSCPU_ZEN5, "processor\t: 0\ncpu MHz\t\t: 3000.000\n", threads=8)
    assert p["clock_ghz"] == pytest.approx(3.0) and p["cores_used"] == 2  # threads capped at the cores
    q = cpu_peak(LSCPU_INTEL_AVX2, threads=2)
    assert q["cores_total"] == 6 and q["cores_used"] == 2  # physical cores, not SMT threads
    assert q["flops_per_cycle"] == 32 and q["clock_ghz"] == pytest.approx(4.6)
    assert q["gflops_fp32"] == pytest.approx(2 * 4.6 * 32, abs=0.1)


def test_flops_per_cycle_by_isa():
    assert flops_per_cycle({"avx512f"}, "AuthenticAMD", 25)[0] == 32  # Zen 4 double-pumps 512-bit ops
    assert flops_per_cycle({"avx512f"}, "GenuineIntel", 6)[0] == 64
    assert flops_per_cycle({"avx"})[0] == 16 and flops_per_cycle(set())[0] == 8
    assert parse_lscpu("A: 1\nB:  two words \nnot a pair")["B"] == "two words"


def test_markers_create_append_replace_keep_surrounding_text(tmp_path):
    md = tmp_path / "BENCHMARKS.md"
    insert_between_markers(md, "first")
    assert md.read_text().startswith("# Benchmarks") and f"{BEGIN_MARKER}\nfirst\n{END_MARKER}" in md.read_text()

    hand = tmp_path / "hand.md"
    hand.write_text("# Mine\n\nintro by hand\n")
    insert_between_markers(hand, "gen")
    assert hand.read_text() == f"# Mine\n\nintro by hand\n\n{BEGIN_MARKER}\ngen\n{END_MARKER}\n"

    hand.write_text(f"# Mine\nbefore\n{BEGIN_MARKER}\nold stuff\n{END_MARKER}\nafter | tail\n")
    insert_between_markers(hand, "new table")
    assert hand.read_text() == f"# Mine\nbefore\n{BEGIN_MARKER}\nnew table\n{END_MARKER}\nafter | tail\n"


@pytest.mark.parametrize("text", [f"x\n{BEGIN_MARKER}\nno end\n", f"{END_MARKER}\n{BEGIN_MARKER}\n",
                                  f"{BEGIN_MARKER}\n{END_MARKER}\n{BEGIN_MARKER}\n{END_MARKER}\n"])
def test_broken_markers_are_an_error_naming_the_file(tmp_path, text):
    md = tmp_path / "B.md"
    md.write_text(text)
    with pytest.raises(ConfigError, match="B.md"):
        insert_between_markers(md, "gen")
    assert md.read_text() == text  # untouched


def test_targets_say_by_how_much():
    best = {"speedup_vs_torch": 4.0, "speedup_vs_best_baseline": 1.2, "top1": 80.0, "size_reduction_vs_onnx": 2.0}
    t = {x["target"]: x for x in check_targets(best, ref_top1=82.5)}
    assert t["speedup_vs_torch"]["met"] and t["speedup_vs_torch"]["gap"] is None
    assert not t["speedup_vs_best_baseline"]["met"] and "short by 0.30x" in t["speedup_vs_best_baseline"]["gap"]
    assert not t["top1_drop"]["met"] and t["top1_drop"]["value"] == pytest.approx(2.5)
    assert "over by 1.50 points" in t["top1_drop"]["gap"]
    assert "short by 2.00x" in t["size_reduction_vs_onnx"]["gap"]
    none = check_targets(None, 80.0)
    assert all(not x["met"] and "no edgeskel variant" in x["gap"] for x in none)


def test_settings_validation_and_defaults(tmp_path):
    with pytest.raises(ConfigError, match="resnet"):
        BenchSettings(models=["resnet"])
    with pytest.raises(ConfigError, match="t_grid"):
        BenchSettings(t_grid=[0])
    assert BenchSettings(out=tmp_path / "docs" / "bench").markdown_path == tmp_path / "docs" / "BENCHMARKS.md"
    assert BenchSettings(out=tmp_path / "x").markdown_path == tmp_path / "x" / "BENCHMARKS.md"
    q = quick_settings()
    assert q.quick and q.models == ["stgcn"] and q.data == "synthetic" and str(q.out) != "docs/bench"
