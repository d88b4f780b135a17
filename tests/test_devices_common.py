"""Shared helpers for the devices/remote/report tests (a tiny real ONNX model + data), plus
unit tests of the shared metric definitions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from edgeskel.remote.device_runner import accuracy_stats, latency_stats

SHAPE = (3, 8, 5, 1)  # C, T, V, M
K = 6


def tiny_onnx(path: Path, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A dynamic-batch linear classifier over (N, C, T, V, M): real ONNX, runs in microseconds."""
    rng = np.random.default_rng(seed)
    d = int(np.prod(SHAPE))
    w = (rng.standard_normal((d, K)) * 0.1).astype(np.float32)
    b = (rng.standard_normal(K) * 0.1).astype(np.float32)
    inp = helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", *SHAPE])
    out = helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", K])
    nodes = [helper.make_node("Reshape", ["input", "shape"], ["flat"]),
             helper.make_node("MatMul", ["flat", "W"], ["mm"]),
             helper.make_node("Add", ["mm", "b"], ["logits"])]
    inits = [numpy_helper.from_array(w, "W"), numpy_helper.from_array(b, "b"),
             numpy_helper.from_array(np.array([0, -1], dtype=np.int64), "shape")]
    m = helper.make_model(helper.make_graph(nodes, "tiny", [inp], [out], inits),
                          opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 9
    onnx.save(m, str(path))
    return w, b


def tiny_data(w: np.ndarray, b: np.ndarray, n: int = 40, wrong: int = 4, seed: int = 1):
    """x, labels (the model's prediction except `wrong` flipped ones), reference logits."""
    x = np.random.default_rng(seed).standard_normal((n, *SHAPE)).astype(np.float32)
    ref = (x.reshape(n, -1) @ w + b).astype(np.float32)
    y = ref.argmax(1)
    y[:wrong] = (y[:wrong] + 1) % K
    return x, y, ref


def test_accuracy_stats_units_and_nonfinite():
    logits = np.array([[0, 1, 0], [2, 0, 0], [np.nan, 0, 1], [0, 0, 5]], dtype=np.float32)
    y = np.array([1, 0, 2, 1])
    ref = np.array([[0, 1, 0], [0, 3, 0], [0, 0, 1], [0, 0, 5]], dtype=np.float32)
    s = accuracy_stats(logits, y, ref)
    assert s["top1"] == 75.0  # percent
    assert s["top5"] == 100.0  # K=3 < 5: top-3 covers everything
    assert s["agreement"] == 75.0
    assert s["nonfinite"] == 1
    assert s["max_abs_vs_ref"] is None  # undefined with NaN present


def test_latency_stats_percentiles():
    s = latency_stats(list(np.arange(1, 101, dtype=float)), batch_size=4)
    assert s["runs"] == 100 and s["min"] == 1 and s["max"] == 100
    assert abs(s["p50"] - 50.5) < 1e-9 and abs(s["p99"] - 99.01) < 1e-9
    assert abs(s["throughput_fps"] - 4 * 1000 / 50.5) < 1e-9
