"""validate/: accuracy, latency and memory measured on a real (tiny) ONNX model via ORT."""

from __future__ import annotations

import pytest
from test_devices_common import SHAPE, tiny_data, tiny_onnx

from edgeskel.errors import DataError
from edgeskel.runtime import get_runner
from edgeskel.validate.accuracy import evaluate_runner
from edgeskel.validate.latency import measure_latency, measure_peak_memory


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    d = tmp_path_factory.mktemp("m")
    w, b = tiny_onnx(d / "m.onnx")
    x, y, ref = tiny_data(w, b, n=37)  # 37: the last batch of 16 is partial
    runner = get_runner("ort", d / "m.onnx", threads=1).load()
    yield runner, x, y, ref
    runner.close()


def test_evaluate_runner(model):
    runner, x, y, ref = model
    r = evaluate_runner(runner, x, y, batch_size=16, ref_logits=ref, return_logits=True)
    assert r["num_samples"] == 37 and r["nonfinite"] == 0
    assert r["top1"] == pytest.approx(100 * 33 / 37)  # 4 labels flipped
    assert r["agreement"] == 100.0 and r["max_abs_vs_ref"] < 1e-5
    assert r["logits"].shape == (37, 6)
    # padded last batch gives the same numbers
    r2 = evaluate_runner(runner, x, y, batch_size=16, ref_logits=ref, pad_to_batch=True)
    assert r2["top1"] == r["top1"] and r2["agreement"] == r["agreement"]
    # disagreeing reference is reported
    r3 = evaluate_runner(runner, x, y, ref_logits=-ref)
    assert r3["agreement"] < 50


def test_evaluate_runner_bad_input(model):
    runner, x, y, ref = model
    with pytest.raises(DataError, match="labels"):
        evaluate_runner(runner, x, y[:-1])
    with pytest.raises(DataError, match=r"\(N, C, T, V, M\)"):
        evaluate_runner(runner, x[..., 0], y)


def test_measure_latency_100_runs(model):
    runner, x, *_ = model
    lat = measure_latency(runner, x[0], [1, 8], warmup=5, runs=100, progress=False)
    assert set(lat) == {"1", "8"}
    for bs, s in lat.items():
        assert s["runs"] == 100 and len(s["samples_ms"]) == 100 and s["batch_size"] == int(bs)
        assert 0 < s["min"] <= s["p50"] <= s["p90"] <= s["p99"] <= s["max"]
        assert s["throughput_fps"] == pytest.approx(int(bs) * 1000 / s["mean"])


def test_measure_latency_time_cap(model):
    runner, x, *_ = model
    lat = measure_latency(runner, x[0], [1], warmup=0, runs=10_000_000, max_seconds=0.05, progress=False)
    assert 10 <= lat["1"]["runs"] < 10_000_000


def test_measure_peak_memory(model):
    runner, x, *_ = model
    m = measure_peak_memory(runner, x[0], batch_size=4)
    assert m["peak_rss_mb"] >= m["baseline_rss_mb"] > 10  # an interpreter with onnxruntime is > 10 MB
    assert m["model_rss_mb"] >= 0 and "VmHWM" in m["method"]


def test_latency_rejects_batched_sample(model):
    runner, x, *_ = model
    from edgeskel.errors import EdgeskelError

    with pytest.raises(EdgeskelError, match="one"):
        measure_latency(runner, x[:2], [1], progress=False)
    assert x.shape[1:] == SHAPE


def test_peak_memory_of_a_runner_is_not_inherited_from_a_big_parent():
    """Linux carries ru_maxrss across fork+exec; the runner must report its own peak."""
    import subprocess
    import sys

    import numpy as np

    big = np.ones(600 * 2**20 // 8)  # the parent touches 600 MB
    out = subprocess.run([sys.executable, "-c", "from edgeskel.remote.device_runner import peak_rss_mb; print(peak_rss_mb())"],
                         capture_output=True, text=True, check=True)
    assert big[-1] == 1.0
    assert float(out.stdout) < 400, out.stdout


def test_warmup_stops_after_its_time_budget_but_runs_twice():
    """A slow model (1 s per batch-64 call) must not spend 10 s warming up per timed block."""
    import time

    import numpy as np

    from edgeskel.remote.device_runner import time_infer

    calls = []

    def slow(b):
        calls.append(1)
        time.sleep(0.02)
        return b

    times = time_infer(slow, np.zeros(1), warmup=50, runs=3, warmup_seconds=0.03)
    assert len(times) == 3
    assert 2 + 3 <= len(calls) <= 3 + 3  # 2 warm-up calls exceed 0.03 s; never fewer than 2
    calls.clear()
    time_infer(slow, np.zeros(1), warmup=4, runs=1)
    assert len(calls) == 5  # no budget: every warm-up call runs


def test_device_runner_runs_openvino_fp16_as_export_judged_it(tmp_path):
    """An fp16 IR is parity-checked at export with the f32 hint (fp16 weights, f32 compute);
    the device runner must measure that same configuration, not the f16 hint (which a CPU
    without native fp16 executes like bf16)."""
    import torch

    from edgeskel.quantize.openvino import to_openvino_ir
    from edgeskel.remote.device_runner import RUNTIMES

    onnx_path = tmp_path / "m.onnx"
    torch.onnx.export(torch.nn.Linear(4, 2).eval(), (torch.zeros(1, 4),), str(onnx_path), dynamo=False)
    xml = to_openvino_ir(onnx_path, tmp_path / "model.fp16.xml", fp16=True)
    infer = RUNTIMES["openvino"](xml, "fp16", 1, {})
    assert "float32" in str(infer.compiled.get_property("INFERENCE_PRECISION_HINT")).lower()
