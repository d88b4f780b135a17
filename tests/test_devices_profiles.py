"""Device profiles load and fail loudly; gates; roofline."""

from __future__ import annotations

import math

import pytest
import yaml

from edgeskel.devices import DeviceProfile, list_profiles, load_profile, profiles_dir
from edgeskel.errors import ConfigError
from edgeskel.report.roofline import roofline_ms
from edgeskel.validate.gates import apply_gates

SHIPPED = ["cpu", "arm64-cpu", "raspberry-pi-5", "jetson-orin", "jetson-orin-nx", "jetson-orin-nano", "jetson-orin-jp7"]


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_profiles_load(name):
    p = load_profile(name)
    assert isinstance(p, DeviceProfile) and p.name == name
    assert p.peak.source and p.peak.gflops_fp32 > 0
    if name.startswith("jetson"):
        assert p.arch == "aarch64" and p.tensorrt is not None
        assert any(v.backend == "tensorrt" for v in p.variants)
        assert any(v.backend == "ort" and v.precision == "fp32" for v in p.variants)  # CPU fallback
        assert p.ssh is None  # example only, commented out
    assert (p.tensorrt is None) or (p.tensorrt.dla_cores == 0) == (name == "jetson-orin-nano")


def test_all_yaml_files_listed_and_documented():
    assert set(SHIPPED) <= set(list_profiles())
    for n in list_profiles():
        text = (profiles_dir() / f"{n}.yaml").read_text()
        assert text.count("#") >= 10, f"{n}.yaml: fields must be documented with comments"


def _write(tmp_path, mutate):
    data = yaml.safe_load((profiles_dir() / "cpu.yaml").read_text())
    mutate(data)
    p = tmp_path / "bad.yaml"
    p.write_text(yaml.safe_dump(data))
    return p


def test_unknown_key_names_file_path_and_allowed(tmp_path):
    p = _write(tmp_path, lambda d: d["gates"].update(max_top1_dorp=2))
    with pytest.raises(ConfigError) as e:
        load_profile(p)
    msg = str(e.value)
    assert str(p) in msg and "gates.max_top1_dorp" in msg and "unknown key" in msg
    assert "max_top1_drop" in msg and "p99_latency_ms" in msg  # allowed keys listed


def test_wrong_type_and_bad_value(tmp_path):
    p = _write(tmp_path, lambda d: d["gates"].update(max_top1_drop="lots"))
    with pytest.raises(ConfigError, match=r"gates\.max_top1_drop.*given: 'lots'.*allowed: float"):
        load_profile(p)
    p = _write(tmp_path, lambda d: d["variants"][0].update(precision="int4"))
    with pytest.raises(ConfigError) as e:
        load_profile(p)
    msg = str(e.value)
    assert "variants.0.precision: 'int4' is not one of: fp32, fp16, bf16, int8" in msg, msg
    p = _write(tmp_path, lambda d: d.update(batch_sizes=[1, 0]))
    with pytest.raises(ConfigError, match="batch_sizes"):
        load_profile(p)
    p = _write(tmp_path, lambda d: d["gates"].update(max_top1_drop=-1))
    with pytest.raises(ConfigError, match=r"gates\.max_top1_drop.*allowed: >= 0"):
        load_profile(p)


def test_dla_on_module_without_dla_is_rejected(tmp_path):
    data = yaml.safe_load((profiles_dir() / "jetson-orin-nano.yaml").read_text())
    data["tensorrt"]["use_dla"] = True
    p = tmp_path / "nano.yaml"
    p.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match="no DLA"):
        load_profile(p)


def test_missing_profile_lists_available():
    with pytest.raises(ConfigError) as e:
        load_profile("no-such-device")
    assert "not found" in str(e.value) and "jetson-orin-nano" in str(e.value) and "cpu" in str(e.value)


def _result(top1=90.0, p99=5.0, mem=100.0, nonfinite=0, agreement=99.0, parity=None):
    r = {"accuracy": {"top1": top1, "agreement": agreement, "nonfinite": nonfinite, "num_samples": 40},
         "latency_ms": {"1": {"p99": p99}}, "memory": {"peak_rss_mb": mem}}
    if parity is not None:
        r["parity"] = parity
    return r


def test_gates():
    prof = load_profile("cpu")  # drop 1.0, p99 50 ms, 2048 MB
    assert apply_gates(_result(), prof, 90.5)[0] == "pass"
    st, why = apply_gates(_result(top1=88.0), prof, 90.5)
    assert st == "fail" and "2.50 points" in why
    st, why = apply_gates(_result(p99=75.0), prof, 90.0)
    assert st == "fail" and "75.00 ms > budget 50 ms" in why
    st, why = apply_gates(_result(mem=4096), prof, 90.0)
    assert st == "fail" and "4096 MB > budget 2048 MB" in why
    st, why = apply_gates(_result(nonfinite=3), prof, 90.0)
    assert st == "fail" and "3/40" in why
    st, why = apply_gates(_result(top1=float("nan")), prof, 90.0)
    assert st == "fail"
    st, why = apply_gates(_result(p99=float("nan")), prof, 90.0)
    assert st == "fail" and "p99" in why
    parity = {"passed": False, "max_abs": 0.7, "agreement": 0.5, "nonfinite": 0, "tol": {"bound": 0.5, "min_agreement": 0.9}}
    st, why = apply_gates(_result(parity=parity), prof, 90.0)
    assert st == "fail" and "parity failed" in why and "0.7" in why
    # an unmeasured latency is not a failure, but it is said
    r = _result()
    del r["latency_ms"]
    st, why = apply_gates(r, prof, 90.0)
    assert st == "pass" and "not measured" in why


def test_min_agreement_gate():
    prof = load_profile("cpu").model_copy(deep=True)
    prof.gates.min_agreement = 95.0
    st, why = apply_gates(_result(agreement=90.0), prof, 90.0)
    assert st == "fail" and "agreement" in why


def test_roofline_estimate():
    peak = load_profile("jetson-orin").peak
    # compute bound: 85 GFLOP at 5300 GFLOP/s fp32
    assert math.isclose(roofline_ms(85.0, 1e3, peak), 1000 * 85 / 5300)
    # memory bound: 204.8 MB at 204.8 GB/s = 1 ms
    assert math.isclose(roofline_ms(1e-3, 204.8e6, peak), 1.0)
    assert roofline_ms(85.0, 1e3, peak, "int8") < roofline_ms(85.0, 1e3, peak, "fp16") < roofline_ms(85.0, 1e3, peak)


def test_devices_cli(capsys):
    from edgeskel.cli import main

    assert main(["devices"]) == 0
    out = capsys.readouterr().out
    assert "jetson-orin-nano" in out and "raspberry-pi-5" in out
    assert main(["devices", "show", "jetson-orin-nx"]) == 0
    shown = yaml.safe_load(capsys.readouterr().out)
    assert shown["tensorrt"]["dla_cores"] == 2 and shown["rank_multiple"] == 16
    assert main(["devices", "show", "nope"]) == 2
    assert main(["devices", "check", "cpu"]) == 2  # no ssh block: clear ConfigError
    assert "no `ssh:` block" in capsys.readouterr().err
