"""INT8 (ORT QDQ, NNCF), OpenVINO IR paths and export_variant on every precision, with real
inference and parity numbers checked."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
import torch.nn as nn
from onnx import numpy_helper

from edgeskel.checkpoint import ModelSpec, Preprocess
from edgeskel.errors import ConfigError, ExportError, ParityError
from edgeskel.export.api import export_variant
from edgeskel.export.onnx import export_onnx, read_onnx_metadata
from edgeskel.io import sha256_file
from edgeskel.layouts import SkeletonLayout
from edgeskel.quantize.int8_search import quantize_with_fallback
from edgeskel.quantize.ort_qdq import quantize_ort_int8
from edgeskel.quantize.tensorrt import lint_tensorrt
from edgeskel.runtime import get_runner
from edgeskel.validate.parity import check_parity

LAYOUT = SkeletonLayout(name="tiny5", joints=tuple(f"j{i}" for i in range(5)),
                        bones=((1, 0), (2, 1), (3, 0), (4, 3)), center=0)
SPEC = ModelSpec(name="tinynet", num_classes=4, layout=LAYOUT, class_names=["a", "b", "c", "d"],
                 preprocess=Preprocess(num_frames=16, num_person=1))


class TinyNet(nn.Module):
    """(N, 3, 16, 5, 1) -> (N, 4)."""

    def __init__(self, width: int = 8):
        super().__init__()
        self.c1 = nn.Conv2d(3, width, (3, 1), padding=(1, 0))
        self.bn = nn.BatchNorm2d(width)
        self.c2 = nn.Conv2d(width, width, (3, 1), padding=(1, 0))
        self.fc = nn.Linear(width, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, t, v, m = x.shape
        x = x.permute(0, 4, 1, 2, 3).reshape(n * m, c, t, v)
        x = torch.relu(self.bn(self.c1(x)))
        x = torch.relu(self.c2(x))
        return self.fc(x.mean(dim=(2, 3)).reshape(n, m, -1).mean(1))


@pytest.fixture(scope="module")
def model() -> TinyNet:
    torch.manual_seed(0)
    return TinyNet().eval()


@pytest.fixture(scope="module")
def xs() -> np.ndarray:
    return np.random.default_rng(0).standard_normal((32, 3, 16, 5, 1)).astype(np.float32)


@pytest.fixture(scope="module")
def fp32_onnx(model, tmp_path_factory) -> Path:
    return export_onnx(model, SPEC, tmp_path_factory.mktemp("q") / "model.onnx")


def torch_ref(model, x):
    with torch.no_grad():
        return model(torch.from_numpy(x)).numpy()


def zero_points(path: Path) -> dict[str, np.ndarray]:
    proto = onnx.load(str(path))
    inits = {i.name: numpy_helper.to_array(i) for i in proto.graph.initializer}
    return {n.name: inits[n.input[2]] for n in proto.graph.node
            if n.op_type in ("QuantizeLinear", "DequantizeLinear") and len(n.input) > 2}


def test_int8_symmetric_zero_points_and_parity(model, xs, fp32_onnx, tmp_path):
    out = tmp_path / "q.onnx"
    settings = quantize_ort_int8(fp32_onnx, out, xs[:16], method="minmax", quantize_bias=False)
    assert settings["symmetric_activations"] and settings["per_channel"] and settings["quantized_tensors"] > 0
    zps = zero_points(out)
    assert zps, "no Q/DQ nodes in the quantized graph"
    for name, zp in zps.items():
        assert zp.dtype == np.int8, name
        assert not np.any(zp), f"{name}: zero-point {zp}"
    # per-channel weights: a DequantizeLinear with a 1-D scale over the output channels
    proto = onnx.load(str(out))
    inits = {i.name: numpy_helper.to_array(i) for i in proto.graph.initializer}
    assert any(n.op_type == "DequantizeLinear" and inits.get(n.input[1], np.zeros(())).ndim == 1
               for n in proto.graph.node)
    assert read_onnx_metadata(out)["model"] == "tinynet"  # metadata survives quantization
    assert lint_tensorrt(out)["passed"]
    with get_runner("ort", out, threads=1) as r:
        res = check_parity(torch_ref(model, xs), r.infer(xs), "int8")
    assert res["passed"] and res["agreement"] >= 0.9 and res["max_abs"] > 0, res


def test_int8_asymmetric_option_and_methods(model, xs, fp32_onnx, tmp_path):
    out = tmp_path / "u8.onnx"
    quantize_ort_int8(fp32_onnx, out, xs[:16], method="percentile", symmetric_activations=False)
    zps = zero_points(out)
    assert any(zp.dtype == np.uint8 and np.any(zp) for zp in zps.values())
    assert not lint_tensorrt(out)["passed"]
    with get_runner("ort", out) as r:
        assert check_parity(torch_ref(model, xs), r.infer(xs), "int8")["passed"]
    with pytest.raises(ExportError, match="calibration method"):
        quantize_ort_int8(fp32_onnx, out, xs, method="kl")
    with pytest.raises(ExportError, match="NaN"):
        quantize_ort_int8(fp32_onnx, out, np.full_like(xs[:4], np.nan))


def test_fallback_excludes_sensitive_nodes_until_gate_passes(model, xs, fp32_onnx, tmp_path):
    ref = torch_ref(model, xs)
    labels = ref.argmax(1)  # fp32 top-1 = 1.0, so the gate (max_drop 0) needs full agreement
    calib = xs[:16].copy()
    calib[0] *= 1e4  # one absurd calibration sample: activation ranges blow up, INT8 collapses
    res = quantize_with_fallback(fp32_onnx, tmp_path / "fb.onnx", calib, xs, labels, ref, max_drop=0.0)
    assert res["rounds"][0]["passed"] is False and res["rounds"][0]["drop"] > 0
    assert res["status"] == "passed", res
    assert res["excluded_nodes"] and len(res["rounds"]) >= 2
    assert res["ranking"][0]["sqnr_db"] <= res["ranking"][-1]["sqnr_db"]
    proto = onnx.load(str(tmp_path / "fb.onnx"))
    names = {n.name for n in proto.graph.node}
    assert set(res["excluded_nodes"]) <= names  # excluded nodes stay float, under their own name
    # an impossible gate is reported, not hidden
    bad = quantize_with_fallback(fp32_onnx, tmp_path / "fb2.onnx", xs[:16], xs, labels, ref, max_drop=-0.5)
    assert bad["status"] == "failed" and "max_drop" in bad["reason"]


def test_gentle_gate_passes_without_exclusions(model, xs, fp32_onnx, tmp_path):
    ref = torch_ref(model, xs)
    res = quantize_with_fallback(fp32_onnx, tmp_path / "ok.onnx", xs[:16], xs, ref.argmax(1), ref, max_drop=0.2)
    assert res["status"] == "passed" and res["excluded_nodes"] == [] and len(res["rounds"]) == 1


@pytest.mark.parametrize(
    "backend,precision,max_abs_limit",
    [
        ("onnx", "fp32", 1e-5),
        ("ort", "int8", 0.5),
        ("onnx", "int8", 0.5),
        ("openvino", "fp32", 1e-5),
        ("openvino", "fp16", 5e-2),
        ("openvino", "bf16", 1e-1),
        ("openvino", "int8", 0.5),
        ("tensorrt", "fp16", 5e-2),  # strongly typed route: the kit's ONNX is fp16-typed
        ("tensorrt", "int8", 0.5),
    ],
)
def test_export_variant_every_precision(backend, precision, max_abs_limit, model, xs, tmp_path):
    labels = np.random.default_rng(1).integers(0, 4, len(xs))
    res = export_variant(model, SPEC, backend, precision, tmp_path, calib=xs[:16], val=(xs, labels),
                         options={"threads": 1})
    assert res["status"] == "passed"
    par = res["parity"]
    assert par["passed"] and par["n"] == len(xs) and par["nonfinite"] == 0
    assert par["max_abs"] <= max_abs_limit
    reduced = precision != "fp32"
    if reduced:
        assert par["max_abs"] > 0  # a real reduced-precision path, not the fp32 graph again
    record = json.loads((tmp_path / "export.json").read_text())
    assert record["status"] == "passed" and record["parity"]["max_abs"] == par["max_abs"]
    for entry in record["files"]:
        f = tmp_path / entry["path"]
        assert f.stat().st_size == entry["bytes"] and sha256_file(f) == entry["sha256"]
    assert (tmp_path / record["artifact"]).is_file()
    if precision == "int8":
        assert record["calibration"]["calib_samples"] == 16
    if backend == "openvino" and precision == "fp16":
        sizes = {e["path"]: e["bytes"] for e in record["files"]}
        assert record["openvino"]["compress_to_fp16"] and "model.fp16.bin" in sizes
    if backend == "tensorrt":
        assert record["lint"]["passed"] and record["engine"]["status"] in ("skipped", "built")
        assert (tmp_path / "tensorrt" / "build_engine.sh").is_file()


def test_openvino_int8_with_accuracy_control(model, xs, tmp_path):
    labels = torch_ref(model, xs).argmax(1)
    res = export_variant(model, SPEC, "openvino", "int8", tmp_path, calib=xs[:16], val=(xs, labels),
                         options={"threads": 1, "max_drop": 5.0})  # points
    cal = res["calibration"]
    # NNCF's default ranges already meet a 5-point gate: no layer is reverted to float
    assert cal["tool"] == "nncf.quantize" and [a["activation_ranges"] for a in cal["attempts"]] == ["minmax"]
    assert cal["top1_fp32"] - cal["top1_int8"] <= 0.05 + 1e-9


def test_failed_parity_raises_and_records(model, xs, tmp_path):
    with pytest.raises(ParityError, match=r"max_abs=.*bound.*agreement="):
        export_variant(model, SPEC, "openvino", "bf16", tmp_path, val=(xs, np.zeros(len(xs))),
                       options={"threads": 1, "tolerances": {"max_abs": 1e-9}})
    record = json.loads((tmp_path / "export.json").read_text())
    assert record["status"] == "failed" and not record["parity"]["passed"]
    assert record["parity"]["max_abs"] > 1e-9


def test_export_variant_rejects_bad_requests(model, xs, tmp_path):
    with pytest.raises(ConfigError, match="precisions"):
        export_variant(model, SPEC, "tensorrt", "fp32", tmp_path)
    with pytest.raises(ConfigError, match="backend"):
        export_variant(model, SPEC, "tflite", "fp32", tmp_path)
    with pytest.raises(ExportError, match="calibration"):
        export_variant(model, SPEC, "ort", "int8", tmp_path)


@pytest.mark.parametrize("max_drop_points", [0.0, 1.0])
def test_export_variant_int8_gate_uses_fallback(model, xs, tmp_path, max_drop_points):
    # max_drop is in points (device-profile units): 1.0 must mean 1%, not 100% of top-1.
    labels = torch_ref(model, xs).argmax(1)
    calib = xs[:16].copy()
    calib[0] *= 1e4
    res = export_variant(model, SPEC, "ort", "int8", tmp_path, calib=calib, val=(xs, labels),
                         options={"threads": 1, "max_drop": max_drop_points})
    gate = res["accuracy_gate"]
    assert gate["rounds"][0]["drop"] > 0.01 and not gate["rounds"][0]["passed"]
    assert gate["status"] == "passed" and gate["excluded_nodes"]
    assert gate["gate"]["drop"] <= max_drop_points / 100 + 1e-9
    assert res["calibration"]["exclude_nodes"] == gate["excluded_nodes"]


def test_tensorrt_variant_with_asymmetric_qdq_fails_lint_and_records(model, xs, tmp_path):
    with pytest.raises(ExportError, match="not TensorRT-ready.*asymmetric"):
        export_variant(model, SPEC, "tensorrt", "int8", tmp_path, calib=xs[:16],
                       options={"symmetric_activations": False})
    record = json.loads((tmp_path / "export.json").read_text())
    assert record["status"] == "failed" and not record["lint"]["passed"]


def _scales(path: Path) -> dict[str, np.ndarray]:
    proto = onnx.load(str(path))
    inits = {t.name: numpy_helper.to_array(t) for t in proto.graph.initializer}
    return {n.input[0]: inits[n.input[1]] for n in proto.graph.node if n.op_type == "QuantizeLinear" and n.input[1] in inits}


@pytest.mark.parametrize("method", ["minmax", "percentile"])
def test_strided_calibration_gives_the_ranges_of_the_whole_set(fp32_onnx, xs, tmp_path, monkeypatch, method):
    """Calibration in strides (bounded memory) must see every sample: min/max ranges equal a
    single pass; histogram ranges stay close."""
    import edgeskel.quantize.ort_qdq as q

    calib = xs.copy()
    calib[-1] *= 50  # an outlier in the last stride: skipping strides would miss it
    one = quantize_ort_int8(fp32_onnx, tmp_path / "one.onnx", calib, method=method, calib_batch=4)
    monkeypatch.setattr(q, "CALIB_STRIDE_SAMPLES", 8)
    strided = quantize_ort_int8(fp32_onnx, tmp_path / "strided.onnx", calib, method=method, calib_batch=4)
    assert "calib_stride_batches" not in one and strided["calib_stride_batches"] == 2
    a, b = _scales(tmp_path / "one.onnx"), _scales(tmp_path / "strided.onnx")
    assert a.keys() == b.keys() and a
    for k in a:
        np.testing.assert_allclose(b[k], a[k], rtol=1e-6 if method == "minmax" else 0.1)


def test_calib_stride_divides_the_batches():
    from edgeskel.quantize.ort_qdq import calib_stride

    assert calib_stride(4, 8) is None  # 32 samples: one pass
    assert calib_stride(32, 8) == 4
    assert calib_stride(30, 8) == 3  # must divide 30 batches
    assert calib_stride(7, 8) == 1


def test_long_sequences_calibrate_in_smaller_strides(fp32_onnx, tmp_path):
    """Memory per stride follows the input size: T=300 Hyperformer calibration in one 32-sample
    stride was OOM-killed at 24 GB."""
    from edgeskel.quantize.ort_qdq import CALIB_STRIDE_SAMPLES, stride_samples

    assert stride_samples((3, 52, 20, 1)) == CALIB_STRIDE_SAMPLES
    assert stride_samples((3, 300, 20, 1)) == 5
    assert stride_samples((3, 64, 25, 2)) == 10  # NTU: two persons, 25 joints
    assert stride_samples((3, 100_000, 25, 2)) == 1
    import edgeskel.quantize.ort_qdq as q

    xs = np.random.default_rng(1).standard_normal((12, 3, 16, 5, 1)).astype(np.float32)
    old = q.CALIB_STRIDE_INPUT_VALUES
    q.CALIB_STRIDE_INPUT_VALUES = 3 * 3 * 16 * 5  # pretend only 3 samples fit in memory
    try:
        settings = quantize_ort_int8(fp32_onnx, tmp_path / "q.onnx", xs, method="percentile")
    finally:
        q.CALIB_STRIDE_INPUT_VALUES = old
    assert settings["calib_batch"] == 3 and settings["calib_stride_batches"] == 1 and settings["calib_samples"] == 12


def test_calibration_cache_is_reused(fp32_onnx, xs, tmp_path):
    cache = tmp_path / "calib.json"
    quantize_ort_int8(fp32_onnx, tmp_path / "a.onnx", xs, calibration_cache=cache)
    assert cache.is_file()
    # a second call with a different calibration set still uses the cached ranges
    quantize_ort_int8(fp32_onnx, tmp_path / "b.onnx", xs * 100, calibration_cache=cache)
    a, b = _scales(tmp_path / "a.onnx"), _scales(tmp_path / "b.onnx")
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])


class GatedNet(TinyNet):
    """TinyNet with a 0-d weight (like Hyperformer's scalar gates), which broke ORT's
    compute_weight_error inside the fallback's sensitivity ranking."""

    def __init__(self):
        super().__init__()
        self.gate = nn.Parameter(torch.tensor(0.7))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x * self.gate)


def test_fallback_ranks_models_with_scalar_weights(xs, tmp_path):
    torch.manual_seed(0)
    model = GatedNet().eval()
    onnx_path = export_onnx(model, SPEC, tmp_path / "gated.onnx")
    ref = torch_ref(model, xs)
    res = quantize_with_fallback(onnx_path, tmp_path / "q.onnx", xs[:16], xs, ref.argmax(1), ref, max_drop=-0.5,
                                 max_rounds=1)
    assert res["status"] == "failed" and res["ranking"]  # ranked, then failed the impossible gate


def test_percentile_candidates_are_tried_before_excluding_nodes(model, fp32_onnx, xs, tmp_path):
    ref = torch_ref(model, xs)
    y = ref.argmax(1)
    easy = quantize_with_fallback(fp32_onnx, tmp_path / "easy.onnx", xs[:16], xs, y, ref, max_drop=1.0,
                                  method="percentile", percentiles=[99.99, 99.0])
    assert easy["status"] == "passed" and [r["percentile"] for r in easy["rounds"]] == [99.99]
    assert easy["settings"]["percentile"] == 99.99 and easy["settings"]["percentile_candidates"] == [99.99, 99.0]

    hard = quantize_with_fallback(fp32_onnx, tmp_path / "hard.onnx", xs[:16], xs, y, ref, max_drop=-0.5,
                                  method="percentile", percentiles=[99.99, 99.0, 90.0], max_rounds=1)
    pcts = [r.get("percentile") for r in hard["rounds"]]
    assert hard["status"] == "failed" and pcts[:3] == [99.99, 99.0, 90.0]
    tried = hard["rounds"][:3]
    best = min(tried, key=lambda r: (r["drop"], -r["agreement"]))["percentile"]
    # exclusion rounds (and the graph left in `out`) start from the best candidate
    assert all(p == best for p in pcts[3:]) and hard["settings"]["percentile"] == best
    sqnr_rounds = [r for r in hard["rounds"][3:] if r["excluded"] > 0]
    assert sqnr_rounds and len(pcts) <= 3 + 1 + 1 + len(hard["group_damage"])  # + module-group rounds


def test_op_types_limit_what_is_quantized(fp32_onnx, xs, tmp_path):
    settings = quantize_ort_int8(fp32_onnx, tmp_path / "conv.onnx", xs, op_types=["Conv"])
    proto = onnx.load(str(tmp_path / "conv.onnx"))
    producers = {o: n for n in proto.graph.node for o in n.output}
    gemm_inputs = [i for n in proto.graph.node if n.op_type in ("Gemm", "MatMul") for i in n.input]
    assert not any(producers.get(i) is not None and producers[i].op_type == "DequantizeLinear" for i in gemm_inputs)
    assert any(n.op_type == "QuantizeLinear" for n in proto.graph.node) and settings["op_types"] == ["Conv"]
    with pytest.raises(ExportError, match=r"Einsumm"):
        quantize_ort_int8(fp32_onnx, tmp_path / "bad.onnx", xs, op_types=["Conv", "Einsumm"])
    assert not (tmp_path / "bad.onnx").exists()


def test_ort_noise_is_filtered_but_other_warnings_kept(caplog):
    import logging

    from edgeskel.quantize.ort_qdq import quiet_ort_noise

    with caplog.at_level(logging.WARNING), quiet_ort_noise():
        logging.warning("Axis 1 is out-of-range for weight 'bn.weight' with rank 1")
        logging.error("Model Error in '/tmp/pre.onnx': weight tensor 'onnx::Conv_13270' not found!")
        logging.warning("something else")
    logging.warning("Axis 1 is out-of-range for weight 'x' with rank 1")  # filter removed afterwards
    msgs = [r.getMessage() for r in caplog.records]
    assert "something else" in msgs and sum("out-of-range" in m for m in msgs) == 1
    assert not any("Model Error" in m for m in msgs)


class OutlierNet(nn.Module):
    """One module (`amp`) blows a single channel up 1e5x and the next conv all but ignores it:
    exact in float, but a per-tensor INT8 range on that tensor flattens every other channel."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(3, 8, 1)
        self.amp = nn.Conv2d(8, 8, 1, bias=False)
        self.c2 = nn.Conv2d(8, 8, 1)
        self.fc = nn.Linear(8, 4)
        with torch.no_grad():
            self.amp.weight.copy_(torch.diag(torch.tensor([1e5] + [1.0] * 7)).view(8, 8, 1, 1))
            self.c2.weight[:, 0] /= 1e7  # channel 0 barely matters downstream
            for m in (self.c1, self.c2, self.fc):  # no biases: predictions must vary with the input
                m.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, t, v, m = x.shape
        x = x.permute(0, 4, 1, 2, 3).reshape(n * m, c, t, v)
        x = self.c2(self.amp(torch.relu(self.c1(x))))
        return self.fc(torch.relu(x).mean(dim=(2, 3)).reshape(n, m, -1).mean(1))


def test_outlier_channel_int8_is_rescued_by_the_fallback(xs, tmp_path):
    torch.manual_seed(0)
    model = OutlierNet().eval()
    onnx_path = export_onnx(model, SPEC, tmp_path / "outlier.onnx")
    ref = torch_ref(model, xs)
    plain = quantize_with_fallback(onnx_path, tmp_path / "plain.onnx", xs, xs, ref.argmax(1), ref, max_drop=0.0,
                                   min_agreement=1.0, max_rounds=0, method="minmax")
    assert plain["status"] == "failed"  # the outlier really breaks per-tensor INT8
    res = quantize_with_fallback(onnx_path, tmp_path / "q.onnx", xs, xs, ref.argmax(1), ref, max_drop=0.0,
                                 min_agreement=1.0, max_rounds=2, method="minmax")
    assert res["status"] == "passed", res["rounds"]
    assert any(n.startswith(("/amp/", "/c2/")) for n in res["excluded_nodes"])


def test_module_group_fallback_excludes_worst_modules_first(tmp_path):
    """`_group_fallback` on a fake quantizer: the damage of quantizing a module alone decides the
    order, whole modules are kept in float until the gate passes, never all of them."""
    from edgeskel.quantize.int8_search import _group_fallback, module_group

    assert module_group("/l10/tcn1/Conv") == "l10" and module_group("/Gemm") == "(top)" and module_group("") == "(top)"
    names = ["/a/Conv", "/a/Relu", "/b/Conv", "/c/Conv", "/Gemm"]
    g = onnx.helper
    nodes = [g.make_node("Identity", [f"t{i}"], [f"t{i + 1}"], name=n) for i, n in enumerate(names)]
    graph = g.make_graph(nodes, "g", [g.make_tensor_value_info("t0", onnx.TensorProto.FLOAT, [1])],
                         [g.make_tensor_value_info("t5", onnx.TensorProto.FLOAT, [1])])
    onnx.save(g.make_model(graph), str(tmp_path / "pre.onnx"))
    cost = {"a": 0.5, "b": 3.0, "c": 1.0, "(top)": 0.1}  # logit error when a module is quantized
    ref = np.zeros((4, 2), np.float32)

    def quantized_groups(excluded):
        return {module_group(n) for n in names if n not in excluded}

    def measure(excluded, pct):
        return {}, ref + sum(cost[k] for k in quantized_groups(excluded))

    calls = []

    def attempt(excluded, pct):
        calls.append(sorted(set(module_group(n) for n in excluded)))
        err = sum(cost[k] for k in quantized_groups(excluded))
        return {}, {"passed": err < 1.0}

    excluded, _, gate, damage = _group_fallback(tmp_path / "pre.onnx", [], 99.9, attempt, measure,
                                                ref, ([], {}, {"passed": False}))
    assert damage == {"a": 0.5, "b": 3.0, "c": 1.0, "(top)": 0.1}
    assert calls == [["b"], ["b", "c"]] and gate["passed"]  # b first (worst), then c: 0.6 < 1.0
    assert set(excluded) == {"/b/Conv", "/c/Conv"}


def test_ort_int8_study_counts_what_ort_fused_and_times_against_fp32(fp32_onnx, xs, tmp_path):
    """The study behind "ORT INT8 is slower than fp32 on CTR-GCN": both quantizations are real,
    ORT's optimized graph is inspected (u8 activations fuse every Conv; fp32 has no QLinear
    kernels) and every variant is timed in the same interleaved run."""
    from edgeskel.bench.ort_int8_study import fused_graph_counts, ort_int8_study, study_table

    res = ort_int8_study(fp32_onnx, xs[:16], xs, tmp_path, op_type_sets=[["Conv", "Relu"]], threads=1, rounds=1, runs=5,
                         max_seconds=1.0, progress=False)
    rows = {r["variant"]: r for r in res["rows"]}
    assert set(rows) == {"fp32", "int8 s8 symmetric", "int8 s8 symmetric (no NHWC rewrite)", "int8 u8 asymmetric",
                         "int8 u8 asymmetric (no NHWC rewrite)", "int8 u8 asymmetric, only Conv,Relu",
                         "int8 u8 asymmetric, only Conv,Relu (no NHWC rewrite)"}
    assert rows["fp32"]["graph"]["QLinearConv"] == 0 and rows["fp32"]["graph"]["float Conv"] == 2
    assert rows["fp32"]["vs_fp32"] == pytest.approx(1.0)
    u8 = rows["int8 u8 asymmetric"]["graph"]
    assert u8["QLinearConv"] == 2 and u8["float Conv"] == 0 and u8["runtime weight DequantizeLinear"] == 0
    assert rows["int8 u8 asymmetric, only Conv,Relu"]["graph"]["QLinearConv"] == 2  # Conv -> Relu -> Q: still fused
    assert all(r["p50_ms"] > 0 for r in rows.values())
    assert json.loads((tmp_path / "ort_int8_study.json").read_text())["rows"][0]["variant"] == "fp32"
    assert len(study_table(res)) == 2 + len(rows)
    assert fused_graph_counts(fp32_onnx)["float Conv"] == 2


def _ov_predictions(xml: Path, x: np.ndarray) -> np.ndarray:
    import openvino as ov

    compiled = ov.Core().compile_model(str(xml), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    return np.concatenate([np.asarray(compiled(x[i : i + 1])[compiled.output(0)]) for i in range(len(x))]).argmax(1)


class VariedNet(nn.Module):
    """Bias-free convs + ReLU: predictions vary with heavy-tailed inputs, so INT8 ranges matter."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(3, 16, 1, bias=False)
        self.c2 = nn.Conv2d(16, 16, 1, bias=False)
        self.fc = nn.Linear(16, 4, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, t, v, m = x.shape
        x = x.permute(0, 4, 1, 2, 3).reshape(n * m, c, t, v)
        x = torch.relu(self.c2(torch.relu(self.c1(x))))
        return self.fc(x.mean(dim=(2, 3)).reshape(n, m, -1).mean(1))


def test_openvino_int8_tries_range_estimators_in_order_until_the_gate_passes(tmp_path):
    """Gate 0 points on heavy-tailed inputs, where histogram ranges flip some predictions and
    min-max ranges flip none: asked for [histogram, minmax], the search must fail the first,
    go on to the second and stop there, without reverting layers (accuracy control)."""
    from edgeskel.quantize.openvino import quantize_nncf

    torch.manual_seed(0)
    model = VariedNet().eval()
    fp32_onnx = export_onnx(model, SPEC, tmp_path / "varied.onnx")
    xs = np.random.default_rng(0).standard_t(2, (64, 3, 16, 5, 1)).astype(np.float32)
    labels = torch_ref(model, xs).argmax(1)
    cal = quantize_nncf(fp32_onnx, tmp_path / "q.xml", xs, xs, labels, 0.0, ranges=["histogram", "minmax"])
    assert [a["activation_ranges"] for a in cal["attempts"]] == ["histogram", "minmax"]
    assert cal["attempts"][0]["drop"] > 0 >= cal["attempts"][1]["drop"] - 1e-12
    assert cal["tool"] == "nncf.quantize" and cal["activation_ranges"] == "minmax"
    assert (_ov_predictions(tmp_path / "q.xml", xs) == labels).all()


def test_openvino_int8_gate_failure_names_every_range_tried(model, xs, tmp_path):
    labels = (torch_ref(model, xs).argmax(1) + np.arange(len(xs)) % 2) % 4  # half the labels no model predicts
    with pytest.raises(ExportError, match=r"activation ranges minmax, histogram and NNCF accuracy control"):
        export_variant(model, SPEC, "openvino", "int8", tmp_path, calib=xs[:16], val=(xs, labels),
                       options={"threads": 1, "max_drop": -50.0, "nncf_ranges": ["minmax", "histogram"]})
    record = json.loads((tmp_path / "export.json").read_text())
    assert [a["activation_ranges"] for a in record["calibration"]["attempts"]] == ["minmax", "histogram"]
    assert record["calibration"]["tool"] == "nncf.quantize_with_accuracy_control"


def test_unknown_nncf_range_estimator_is_refused(fp32_onnx, xs, tmp_path):
    from edgeskel.quantize.openvino import quantize_nncf

    with pytest.raises(ExportError, match="unknown NNCF activation range estimator 'p99'"):
        quantize_nncf(fp32_onnx, tmp_path / "q.xml", xs, ranges=["p99"])
