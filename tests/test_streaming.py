"""Streaming inference (issue 29, part 1): the step model equals its written definition
(edgeskel/stream/semantics.py, docs/STREAMING.md) after every call, in PyTorch, ONNX Runtime
and OpenVINO; streaming.json alone drives the exported graph; unstreamable models refuse."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn

from edgeskel import models
from edgeskel.checkpoint import ModelSpec, Preprocess, save_checkpoint
from edgeskel.layouts import get_layout
from edgeskel.models.lowrank import LowRankConv1x1, LowRankConvK, Tucker2Conv
from edgeskel.stream import NotStreamable, StepModel, build_step_model, run_stream
from edgeskel.stream.export import export_streaming, parity_sequence
from edgeskel.stream.semantics import reference_logits
from edgeskel.stream.step import end_calls


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny convs on a shared 2-core box: extra torch threads only spin (1 s per call measured)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _randomize(net: nn.Module, seed: int = 0) -> nn.Module:
    """Trained-looking numbers: BN statistics and affine terms away from identity, a head with
    unit-scale logits (PYSKL's init gives 0.01-scale ones, which would hide errors)."""
    g = torch.Generator().manual_seed(seed)
    for m in net.modules():
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
        elif isinstance(m, nn.Linear):
            m.weight.data.copy_(torch.randn(m.weight.shape, generator=g) * 0.5)
            m.bias.data.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
    for name, prm in net.named_parameters():
        if name.endswith("alpha"):  # CTR-GCN's refinement weight starts at 0 (topology unused)
            prm.data.copy_(torch.rand(prm.shape, generator=g) * 0.1 + 0.05)
        elif name.endswith("static_input"):  # static CTR-GCN: a topology input away from zero
            prm.data.copy_(torch.randn(prm.shape, generator=g))
    return net.eval()


def _factorize(net: nn.Module) -> nn.Module:
    """Swap every temporal conv for edgeskel's factorized structures (models/lowrank.py): the
    first k x 1 conv SVD (k x 1 -> 1x1), the others Tucker-2 (1x1 -> k x 1 -> 1x1), strided
    1x1 convs low-rank (strided 1x1 -> 1x1). Weights are random: structure is what is tested."""
    first = True
    for mod in list(net.modules()):
        for name, c in list(mod.named_children()):
            if type(c) is not nn.Conv2d:
                continue
            if c.kernel_size[0] > 1:
                if first:
                    new = LowRankConvK(c.in_channels, c.out_channels, c.kernel_size, 3, c.stride, c.padding, c.dilation)
                    first = False
                else:
                    new = Tucker2Conv(c.in_channels, c.out_channels, c.kernel_size, max(1, c.in_channels // 2),
                                      max(1, c.out_channels // 2), c.stride, c.padding, c.dilation)
            elif c.stride[0] > 1:
                new = LowRankConv1x1(c.in_channels, c.out_channels, max(1, c.out_channels // 2), 1, c.stride, c.padding)
            else:
                continue
            setattr(mod, name, new)
    return net


def _model(name: str = "stgcn", *, persons: int = 2, frames: int = 16, stream: str = "joint", factorized: bool = False,
           num_classes: int = 5, center: bool = True, upsample: int = 1, **kw) -> tuple[nn.Module, ModelSpec]:
    layout = get_layout("ntu25")
    kwargs = {k: v for k, v in {"width": 0.125, "num_stages": 5, **kw}.items() if v is not None}  # None: not an argument
    torch.manual_seed(0)  # the conv weights too: a test's model must not depend on which tests ran before it
    net = models.build(name, num_classes, layout, num_person=persons, **kwargs)
    if factorized:
        _factorize(net)
    spec = ModelSpec(name, num_classes, layout, {"num_person": persons, **kwargs},
                     preprocess=Preprocess(num_frames=frames, num_person=persons, streams=stream, center=center,
                                           native_rate=upsample > 1, upsample=upsample))
    return _randomize(net), spec


def _stream(step, extra_calls: int = 5, seed: int = 1) -> np.ndarray:
    return parity_sequence(step, extra_calls=extra_calls, seed=seed)


CASES = {
    "stgcn-keep-stride": dict(),
    "stgcn-remove-stride-motion": dict(stream="motion", stride_mode="remove"),
    "stgcn-mvc-bone-1person": dict(persons=1, stream="bone", data_bn_type="MVC"),
    "stgcn-factorized": dict(factorized=True),
    "stgcnpp-keep-stride": dict(name="stgcnpp"),
    "stgcnpp-factorized-bone_motion": dict(name="stgcnpp", factorized=True, stream="bone_motion"),
    "stgcnpp-remove-stride-no-centring": dict(name="stgcnpp", stride_mode="remove", center=False),
    "stgcn-10-stages-stride-4": dict(num_stages=10, width=0.0625, frames=12),
    "stgcn-keep-stride-upsample-2": dict(num_stages=10, width=0.0625, frames=24, upsample=2),
    "stgcn-keep-stride-upsample-4-motion": dict(num_stages=10, width=0.0625, frames=24, upsample=4, stream="motion"),
    "ctrgcn-causal-keep-stride": dict(name="ctrgcn", topology_window=16),
    "ctrgcn-causal-remove-stride-bone": dict(name="ctrgcn", topology_window=16, stride_mode="remove", stream="bone"),
    "ctrgcn-causal-factorized-short-topology": dict(name="ctrgcn", topology_window=6, factorized=True),
    "ctrgcn-causal-upsample-2-bone": dict(name="ctrgcn", topology_window=16, upsample=2, stream="bone"),
    "ctrgcn-static-keep-stride": dict(name="ctrgcn", static_topology=True),
    "ctrgcn-static-remove-stride-bone": dict(name="ctrgcn", static_topology=True, stride_mode="remove", stream="bone"),
    "ctrgcn-static-upsample-2": dict(name="ctrgcn", static_topology=True, upsample=2),
    "ctrgcn-static-factorized-motion": dict(name="ctrgcn", static_topology=True, factorized=True, stream="motion"),
    "hyperformer-keep-stride": dict(name="hyperformer", width=0.2, num_heads=3, num_stages=5),
    "hyperformer-remove-stride-motion": dict(name="hyperformer", width=0.2, num_heads=3, num_stages=5,
                                             stride_mode="remove", stream="motion"),
    "shiftgcn-keep-stride": dict(name="shiftgcn", shift_radius=3),
    "msg3d-keep-stride": dict(name="msg3d", width=0.0625, num_gcn_scales=3, num_g3d_scales=2, window_sizes=[3, 5],
                              num_stages=None),
    "msg3d-remove-stride-motion": dict(name="msg3d", width=0.0625, num_gcn_scales=3, num_g3d_scales=2,
                                       window_sizes=[3], stride_mode="remove", stream="motion", num_stages=None),
    "shiftgcn-remove-stride-bone": dict(name="shiftgcn", shift_radius=[2, 3, 1, 2, 3, 1, 2, 2, 1, 3],
                                        stride_mode="remove", stream="bone"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_step_model_equals_full_history_definition(case):
    """After every call the step model's decision equals the definition computed from scratch:
    the unchanged network over the whole (causally preprocessed) history, mean of the per-frame
    logits of the last W complete output frames. Covers the pre-start masks (first calls),
    the delayed residual/branches, strides kept (stride 2 and 4), strides removed, an empty
    call (held), an absent second person, and factorized temporal convs."""
    kw = dict(CASES[case])
    mode = kw.pop("stride_mode", "keep")
    net, spec = _model(**kw)
    step = build_step_model(net, spec, mode)
    x = _stream(step)
    got = run_stream(step, torch.from_numpy(x)).numpy()
    s = step.plan.stride
    ref = np.stack([reference_logits(step, x[:, : (i + 1) * s]) for i in range(len(got))])
    assert np.abs(ref).max() > 0.1  # non-trivial logits
    assert np.abs(got - ref).max() <= 1e-5 * max(1.0, np.abs(ref).max()), np.abs(got - ref).max(axis=1)
    first = -(-step.plan.valid_from // s) - 1  # the first call whose decision averages a full window
    assert np.all(ref[: step.plan.lag] == 0) and np.all(ref[first:] != 0)


END_CASES = ["stgcn-keep-stride", "stgcn-remove-stride-motion", "stgcnpp-factorized-bone_motion",
             "stgcn-10-stages-stride-4", "stgcn-keep-stride-upsample-2", "stgcn-keep-stride-upsample-4-motion",
             "ctrgcn-causal-keep-stride", "ctrgcn-static-keep-stride", "hyperformer-keep-stride",
             "shiftgcn-keep-stride", "msg3d-keep-stride"]


@pytest.mark.parametrize("case", END_CASES)
def test_ending_a_stream_equals_the_network_over_the_whole_clip(case):
    """A stream that ends (leftover frames, then flush calls): after every call from the end
    call on, the decision equals the definition; after `flush_calls` it equals, for a clip no
    longer than the window, the windowed network's own forward over the (causally preprocessed)
    clip at its length -- padding at both ends, mean over all its output frames -- for clip
    lengths that end mid-call, on a call boundary, shorter than one call and of one frame."""
    from edgeskel.data.preprocess import center, to_stream, upsample_frames

    kw = dict(CASES[case])
    mode = kw.pop("stride_mode", "keep")
    net, spec = _model(**kw)
    step = build_step_model(net, spec, mode)
    p = step.plan
    x = parity_sequence(step, extra_calls=5, seed=7, hold=False)  # no empty call: the clip is all frames
    for length in sorted({1, p.stride - 1 or 1, 2 * p.stride, 2 * p.stride + 1, p.window - 1, p.window + 3 * p.stride - 1}):
        clip = x[:, :length]
        got = run_stream(step, torch.from_numpy(clip), end=True).numpy()
        whole = length // p.stride
        ends = got[whole:]  # from the end call on
        assert len(ends) == p.flush_calls
        for k in range(1, len(ends) + 1):
            ref = reference_logits(step, clip, end_calls=k)
            assert np.abs(ends[k - 1] - ref).max() <= 1e-5 * max(1.0, np.abs(ref).max()), (length, k)
        if length <= p.window:
            h = clip.copy()
            if spec.preprocess.center:
                h = center(h, spec.layout)
            h = to_stream(upsample_frames(h, p.upsample), spec.layout, spec.preprocess.streams)
            with torch.no_grad():
                windowed = step.reference_model(torch.from_numpy(np.ascontiguousarray(h))[None])[0].numpy()
            assert np.abs(got[-1] - windowed).max() <= 1e-5 * max(1.0, np.abs(windowed).max()), length
    # extra flush calls change nothing
    states = step.initial_states()
    calls = end_calls(10, p.stride, p.flush_calls + 3)
    outs = []
    with torch.no_grad():
        for first, real in calls:
            chunk = torch.zeros(step.frame_shape())
            chunk[0, :, :real] = torch.from_numpy(x[:, first:first + real])
            res = step(chunk, torch.full((1,), float(real)), *states)
            outs.append(res[0])
            states = list(res[1:])
    assert all(torch.equal(o, outs[-1]) for o in outs[-4:])


def test_a_longer_window_covers_a_whole_long_clip():
    """--window: decisions average more outputs than the trained T; the definition holds call by
    call, and an ended clip longer than T but within the window gets the whole-clip decision."""
    from edgeskel.data.preprocess import center, to_stream

    net, spec = _model(persons=1)
    step = build_step_model(net, spec, "keep", window=40)
    assert (step.plan.window, step.plan.window_outputs) == (40, 20)
    x = parity_sequence(step, extra_calls=2, seed=4, hold=False)
    got = run_stream(step, torch.from_numpy(x)).numpy()
    for i in (len(got) // 2, len(got) - 1):
        ref = reference_logits(step, x[:, : (i + 1) * step.plan.stride])
        assert np.abs(got[i] - ref).max() <= 1e-5 * max(1.0, np.abs(ref).max())
    clip = x[:, :35]
    final = run_stream(step, torch.from_numpy(clip), end=True)[-1].numpy()
    h = to_stream(center(clip.copy(), spec.layout), spec.layout, spec.preprocess.streams)
    with torch.no_grad():
        whole = net(torch.from_numpy(np.ascontiguousarray(h))[None])[0].numpy()
    assert np.abs(final - whole).max() <= 1e-5 * max(1.0, np.abs(whole).max())
    short = run_stream(build_step_model(net, spec, "keep"), torch.from_numpy(clip), end=True)[-1].numpy()
    assert np.abs(short - whole).max() > 1e-3  # the trained T (16) covers only the clip's end


def test_plan_matches_the_receptive_field():
    """Independent of the lag algebra: ST-GCN's temporal look-ahead is the sum of its 9x1
    convs' paddings in input frames; 5 blocks (the 5th with stride 2) see 4*4 + 4 = 20 frames
    ahead, so a keep-stride stream (a decision every 2 frames) averages W = 8 outputs and the
    stride-removed one 16 outputs, 20 frames (+1 for motion) late."""
    net, spec = _model()
    plan = build_step_model(net, spec, "keep").plan
    assert (plan.stride, plan.delay, plan.window_outputs, plan.window, plan.valid_from) == (2, 20, 8, 16, 36)
    net, spec = _model(stream="motion")
    plan = build_step_model(net, spec, "remove").plan
    assert (plan.stride, plan.delay, plan.window_outputs, plan.valid_from) == (1, 21, 16, 37)


def test_empty_frames_hold_the_state_and_the_decision():
    net, spec = _model()
    step = build_step_model(net, spec, "remove")
    x = _stream(step)
    states = step.initial_states()
    with torch.no_grad():
        for i in range(30):
            out = step(torch.from_numpy(x[:, i:i + 1]).unsqueeze(0), step.full_valid(), *states)
            states = list(out[1:])
        held = step(torch.zeros(step.frame_shape()), step.full_valid(), *states)
    assert torch.equal(held[0], out[0])
    assert all(torch.equal(a, b) for a, b in zip(held[1:], states, strict=True))


def test_windowed_model_is_not_changed():
    net, spec = _model()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    x = torch.randn(1, 3, 16, 25, 2)
    y0 = net(x)
    build_step_model(net, spec, "remove")
    assert torch.equal(net(x), y0) and all(torch.equal(before[k], v) for k, v in net.state_dict().items())


# make test: one graph per kind of stateful layer (factorized convs, causal means, shifts) and CTR-GCN's
# static topology (a folded constant product); the rest
# (same layers in other arrangements, ~10 s each) under make test-slow
@pytest.mark.parametrize("case", ["stgcn-factorized", "ctrgcn-causal-keep-stride", "ctrgcn-static-keep-stride",
                                  "shiftgcn-keep-stride",
                                  *(pytest.param(c, marks=pytest.mark.slow)
                                    for c in ("stgcnpp-keep-stride", "hyperformer-keep-stride", "msg3d-keep-stride"))]
                         + ["stgcn-keep-stride-upsample-4-motion"])
def test_exported_step_graph_matches_pytorch_on_ort_and_openvino(tmp_path, case):
    """fp32 step graphs replayed call by call: ONNX Runtime and OpenVINO equal the PyTorch step
    model (export_streaming's own parity gate), which equals the definition (test above); here
    also checked directly against the definition at the last calls."""
    from edgeskel.stream.replay import session_for

    kw = dict(CASES[case])
    net, spec = _model(**kw)
    res = export_streaming(net, spec, "openvino", "fp32", tmp_path)
    assert res["status"] == "ok"
    assert res["parity"]["ort"]["passed"] and res["parity"]["openvino"]["passed"], res["parity"]
    assert res["parity"]["ort"]["scale"] > 0.1
    step = build_step_model(net, spec, "keep")
    x = _stream(step, seed=3)
    s = step.plan.stride
    for backend in ("ort", "openvino"):
        got = session_for(tmp_path, backend, threads=1).replay(x)
        for i in (len(got) - 2, len(got) - 1):
            ref = reference_logits(step, x[:, : (i + 1) * s])
            assert np.abs(got[i] - ref).max() <= 1e-4 * max(1.0, np.abs(ref).max()), backend
    assert {"model.onnx", "model.xml", "model.bin", "streaming.json"} <= {p.name for p in tmp_path.iterdir()}


def test_openvino_bf16_step_graph(tmp_path):
    """bf16: the fp32 IR compiled with OpenVINO's bf16 inference hint, judged by the bf16 rule
    (validate/parity.py) over a whole stream and its end; the ONNX stays fp32 and is held to fp32."""
    net, spec = _model()
    res = export_streaming(net, spec, "openvino", "bf16", tmp_path)
    assert res["parity"]["ort"]["max_abs"] <= 1e-4 * max(1.0, res["parity"]["ort"]["scale"])
    assert res["parity"]["openvino"]["passed"] and res["parity"]["openvino"]["calls"] > 20
    assert json.loads((tmp_path / "streaming.json").read_text())["precision"] == "bf16"


def test_ort_int8_step_graph_calibrated_on_streams(tmp_path):
    """INT8 (ORT QDQ, Conv/MatMul only: the state path stays float) calibrated on recorded
    streams, judged by the INT8 rule on other streams and their ends; without data it refuses."""
    import onnx

    from edgeskel.errors import ConfigError

    net, spec = _model(persons=1)
    step = build_step_model(net, spec, "keep")
    seqs = [parity_sequence(step, extra_calls=k, seed=10 + k, hold=False) for k in range(6)]
    with pytest.raises(ConfigError, match="--calib-data"):
        export_streaming(net, spec, "ort", "int8", tmp_path / "none")
    res = export_streaming(net, spec, "ort", "int8", tmp_path, calib=seqs[:4], holdout=seqs[4:])
    assert res["status"] == "ok" and res["parity"]["ort"]["passed"], res["parity"]
    assert res["parity"]["ort"]["calls"] > 30 and res["quantization"]["calib_samples"] > 30
    ops = {n.op_type for n in onnx.load(str(tmp_path / "model.onnx")).graph.node}
    assert "QuantizeLinear" in ops and "DequantizeLinear" in ops
    contract = json.loads((tmp_path / "streaming.json").read_text())
    assert contract["precision"] == "int8" and not (tmp_path / "model.fp32.onnx").exists()


def test_openvino_stateful_form_equals_the_stateless_graph_and_is_timed(tmp_path):
    """OpenVINO's ReadValue/Assign form (states kept by the request; a call feeds frames and
    `valid` only; `reset` starts a stream): checked against PyTorch at export, the same decisions
    as the stateless IR, both forms timed and the faster one named in streaming.json."""
    import openvino as ov

    from edgeskel.stream.replay import session_for

    net, spec = _model(persons=1)
    res = export_streaming(net, spec, "openvino", "fp32", tmp_path)
    assert res["parity"]["openvino"]["passed"] and res["parity"]["openvino-stateful"]["agreement"] == 1.0
    contract = json.loads((tmp_path / "streaming.json").read_text())
    assert contract["files"]["openvino_stateful"] == "model.stateful.xml"
    form = contract["openvino_stateful"]
    assert set(form["p50_ms"]) == {"stateless", "stateful"} and form["preferred"] == (
        form["p50_ms"]["stateful"] < form["p50_ms"]["stateless"] and form["parity"]["passed"])
    model = ov.Core().read_model(str(tmp_path / "model.stateful.xml"))
    assert [i.get_any_name() for i in model.inputs] == ["frame", "valid"] and len(model.get_sinks()) == len(contract["state"])
    step = build_step_model(net, spec, "keep")
    x = parity_sequence(step, extra_calls=8, seed=3)
    a = session_for(tmp_path, "openvino").replay(x, end=True)
    stateful = session_for(tmp_path, "openvino", stateful=True)
    b = stateful.replay(x, end=True)
    # the same decisions up to the plugin's variable precision (fp32 rule: 1e-7 here; stateful 2-4e-4)
    assert np.abs(a - b).max() <= 2e-3 * max(1.0, np.abs(a).max()) and (a.argmax(1) == b.argmax(1)).all()
    assert np.abs(stateful.replay(x, end=True) - b).max() == 0  # a replay resets the request's states


def test_openvino_int8_step_graph_calibrated_on_streams(tmp_path):
    """OpenVINO INT8 (NNCF, Convolution/MatMul only) from the same recorded-stream feeds, judged
    by the INT8 rule on other streams; the ONNX beside it stays fp32 (ORT checks that one)."""
    import openvino as ov

    net, spec = _model(persons=1)
    step = build_step_model(net, spec, "keep")
    seqs = [parity_sequence(step, extra_calls=k, seed=20 + k, hold=False) for k in range(6)]
    res = export_streaming(net, spec, "openvino", "int8", tmp_path, calib=seqs[:4], holdout=seqs[4:])
    assert res["parity"]["ort"]["passed"] and res["parity"]["openvino"]["passed"], res["parity"]
    assert res["quantization"]["fake_quantize_nodes"] > 0
    assert res["quantization"]["activation_ranges"] == "minmax"  # all calls' range, not NNCF's per-call mean
    ops = {op.get_type_name() for op in ov.Core().read_model(str(tmp_path / "model.xml")).get_ordered_ops()}
    assert "FakeQuantize" in ops
    assert json.loads((tmp_path / "streaming.json").read_text())["files"] == {
        "onnx": "model.onnx", "openvino": "model.xml", "openvino_stateful": "model.stateful.xml"}


STANDALONE = textwrap.dedent("""
    # A deployment: numpy + onnxruntime + streaming.json, nothing else.
    import json, sys
    sys.modules["edgeskel"] = None  # any edgeskel import would fail
    import numpy as np
    import onnxruntime as ort
    d = sys.argv[1]
    c = json.load(open(d + "/streaming.json"))
    sess = ort.InferenceSession(d + "/" + c["files"]["onnx"], providers=["CPUExecutionProvider"])
    states = {s["input"]: np.full(s["shape"], s["initial"], dtype=s["dtype"]) for s in c["state"]}
    frames = np.load(sys.argv[2])  # (C, L, V, M) raw
    outs = [s["output"] for s in c["state"]]
    decisions = []
    S = c["stride"]
    calls = [(i, S) for i in range(0, frames.shape[1] - S + 1, S)]
    left = frames.shape[1] % S
    calls += [(frames.shape[1] - left, left)] + [(frames.shape[1], 0)] * (c["flush_calls"] - 1)  # end it
    for i, valid in calls:
        chunk = np.zeros((1, frames.shape[0], S) + frames.shape[2:], np.float32)
        chunk[0, :, :valid] = frames[:, i:i + valid]
        feeds = {c["frame_input"]: chunk, c["valid_input"]: np.full([1], valid, np.float32), **states}
        res = sess.run([c["logits_output"]] + outs, feeds)
        decisions.append(res[0][0])
        states = {s["input"]: v for s, v in zip(c["state"], res[1:])}
    np.save(sys.argv[3], np.stack(decisions))
""")


def test_streaming_json_alone_drives_the_exported_graph(tmp_path):
    net, spec = _model(stream="motion")
    export_streaming(net, spec, "ort", "fp32", tmp_path / "art", stride_mode="remove", check=False)
    contract = json.loads((tmp_path / "art" / "streaming.json").read_text())
    for key in ("frame_input", "valid_input", "logits_output", "state", "stride", "window", "valid_from",
                "flush_calls"):
        assert key in contract
    assert contract["state"][0] == {"input": "s0", "output": "s0_out", "shape": [1], "dtype": "float32", "initial": 0.0,
                                    "rows": "stream"}
    assert contract["batch"] == 1 and contract["valid_shape"] == [1]
    step = build_step_model(net, spec, "remove")
    x = _stream(step, seed=5)
    np.save(tmp_path / "frames.npy", x)
    (tmp_path / "run.py").write_text(STANDALONE)
    subprocess.run([sys.executable, str(tmp_path / "run.py"), str(tmp_path / "art"), str(tmp_path / "frames.npy"),
                    str(tmp_path / "out.npy")], check=True, timeout=120)
    got = np.load(tmp_path / "out.npy")
    ref = run_stream(step, torch.from_numpy(x), end=True).numpy()
    assert got.shape == ref.shape and np.abs(got - ref).max() <= 1e-4 * max(1.0, np.abs(ref).max())


@pytest.mark.parametrize("name, says", [
    ("ctrgcn", "mean over the whole window"),
    ("pyskl_ctrgcn", "mean over the whole"),
    ("aagcn", "product over all T frames"),
    ("efficientgcn", "averages over the whole"),
])
def test_unstreamable_models_refuse_with_the_reason(name, says):
    entry = models.model_entry(name)
    tiny = dict(entry.tiny or {})
    layout = get_layout(tiny.pop("layout", "ntu25"))
    net = models.build(name, 4, layout, **tiny)
    spec = ModelSpec(name, 4, layout, tiny)
    with pytest.raises(NotStreamable, match=says):
        build_step_model(net, spec)


def test_upsampling_needs_whole_camera_frames_per_call():
    """A stride-removed step takes one network frame per call: it cannot upsample (keep-stride
    ST-GCN takes 4, so 2 and 4 stream), and says so."""
    net, spec = _model(persons=1, frames=24, upsample=2, num_stages=10, width=0.0625)
    assert build_step_model(net, spec, "keep").plan.stride == 2
    with pytest.raises(NotStreamable, match="upsample 2 needs a whole number of source frames per call"):
        build_step_model(net, spec, "remove")


def test_an_ensemble_refuses_and_says_what_to_do_instead():
    from edgeskel.stream.support import family_for

    with pytest.raises(NotStreamable, match="stream a member checkpoint instead"):
        family_for("ensemble")


def test_a_module_with_no_streaming_rule_is_refused():
    class MeanOverT(nn.Module):  # a global temporal op hidden in a block
        def forward(self, x):
            return x - x.mean(2, keepdim=True)

    net, spec = _model()
    net.gcn[1].tcn = nn.Sequential(net.gcn[1].tcn, MeanOverT())
    with pytest.raises(NotStreamable, match="MeanOverT"):
        build_step_model(net, spec)


def test_cli_export_form_streaming(tmp_path, capsys):
    from edgeskel.cli import main

    net, spec = _model()
    ckpt = save_checkpoint(tmp_path / "m.pt", net, spec)
    rc = main(["export", "--checkpoint", str(ckpt), "--backend", "ort", "--precision", "fp32", "--form", "streaming",
               "--out", str(tmp_path / "s")])
    assert rc in (0, None)
    out = json.loads(capsys.readouterr().out)
    assert out["status"] == "ok" and out["plan"]["stride"] == 2
    c = json.loads((tmp_path / "s" / "streaming.json").read_text())
    assert (c["stride"], c["window"], c["valid_from"], c["files"]) == (2, 16, 36, {"onnx": "model.onnx"})

    other = models.build("ctrgcn", 4, get_layout("kinect20"), width=0.125, num_stages=5)
    bad = save_checkpoint(tmp_path / "c.pt", other, ModelSpec("ctrgcn", 4, get_layout("kinect20"),
                                                              {"width": 0.125, "num_stages": 5}))
    rc = main(["export", "--checkpoint", str(bad), "--backend", "ort", "--form", "streaming", "--out", str(tmp_path / "c")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and err[0].startswith("error:") and "CTR-GCN refines its topology" in err[0]
    rc = main(["export", "--checkpoint", str(ckpt), "--backend", "ort", "--stride-mode", "remove", "--out",
               str(tmp_path / "w")])
    assert rc == 2 and "only for --form streaming" in capsys.readouterr().err


OFFICIAL = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "official"


def _official_stream(name: str, file: str, to_ctvm, frames: int) -> tuple[StepModel, np.ndarray, np.ndarray]:
    """An official fixture's checkpoint imported and streamed over its input repeated to `frames`
    frames: (step model, its last decision, the definition's decision there)."""
    from edgeskel.importers import import_official

    d = OFFICIAL / name
    if not (d / file).is_file():
        pytest.skip(f"official fixture {name} not present")
    model, spec = import_official("auto", d / file, None, get_layout("ntu25"),
                                  preprocess=Preprocess(num_frames=32, num_person=2, center=False))
    step = build_step_model(model.eval(), spec, "keep")
    x = to_ctvm(np.load(d / "input.npy")[0])
    x = np.ascontiguousarray(np.concatenate([x] * (-(-frames // x.shape[1])), axis=1)[:, :frames])
    got = run_stream(step, torch.from_numpy(x)).numpy()
    return step, got[-1], reference_logits(step, x[:, : len(got) * step.plan.stride])


def test_official_shiftgcn_checkpoint_streams_as_defined():
    """The official NTU-60 Shift-GCN weights (learned shifts of radius up to 9) stream exactly:
    the decisions after the delay equal the definition on a 280-frame stream."""
    step, got, ref = _official_stream("shiftgcn-ntu60-xview", "checkpoint.pt", lambda x: x, 280)
    assert step.plan.delay == 224
    assert np.abs(ref).max() > 1 and np.abs(got - ref).max() <= 1e-5 * np.abs(ref).max()


def test_official_pyskl_msg3d_checkpoint_streams_as_defined():
    """PYSKL's NTU-60 MS-G3D weights (G3D windows 3 and 5, MS-TCNs, stride 4 overall) stream
    exactly: the decision after 120 frames equals the definition."""
    # PYSKL's input is (M, T, V, C)
    step, got, ref = _official_stream("pyskl-msg3d-ntu60", "checkpoint.pth", lambda x: x.transpose(3, 1, 2, 0), 120)
    assert np.abs(ref).max() > 0.1 and np.abs(got - ref).max() <= 1e-5 * max(1.0, np.abs(ref).max())


@pytest.mark.parametrize("case", ["stgcn-keep-stride", "ctrgcn-causal-keep-stride", "stgcn-remove-stride-motion"])
def test_batched_streams_are_independent_streams(case):
    """One call serves N streams (`build_step_model(batch=N)`): each has its own counter, end and
    state rows, so streams of one batch start on different calls (their rows reset to the
    initial value), end on different calls and hold empty calls on their own; every stream's
    decisions equal the batch-1 step model run on that stream alone."""
    from edgeskel.stream.step import end_calls

    kw = dict(CASES[case])
    mode = kw.pop("stride_mode", "keep")
    net, spec = _model(**kw)
    one = build_step_model(net, spec, mode)
    n = 3
    many = build_step_model(net, spec, mode, batch=n)
    p = one.plan
    rng = np.random.default_rng(5)
    lengths, starts = [p.valid_from + 7, 5, p.valid_from + 2 * p.stride + 1], [0, 4, 2]
    seqs = [rng.normal(size=(p.channels, L, p.joints, p.persons)).astype(np.float32) for L in lengths]
    seqs[0][:, 3 * p.stride:4 * p.stride] = 0  # an empty call in one stream only: held there, not in the others
    calls = [end_calls(L, p.stride, p.flush_calls) for L in lengths]
    want = [run_stream(one, torch.from_numpy(x), end=True).numpy() for x in seqs]
    rows = many.state_rows()
    states = many.initial_states()
    got: list[list[np.ndarray]] = [[] for _ in range(n)]
    with torch.no_grad():
        for t in range(max(s + len(c) for s, c in zip(starts, calls, strict=True))):
            frame = torch.zeros(many.frame_shape())
            valid = torch.full((n,), float(p.stride))
            for k in range(n):
                j = t - starts[k]
                if j == 0:  # stream k starts: its rows back to the initial value
                    for i, r in enumerate(rows):
                        per = 1 if r == "stream" else p.persons
                        states[i][k * per:(k + 1) * per] = 0
                if 0 <= j < len(calls[k]):
                    first, real = calls[k][j]
                    frame[k, :, :real] = torch.from_numpy(seqs[k][:, first:first + real])
                    valid[k] = float(real)
                elif j >= len(calls[k]):
                    valid[k] = 0.0  # ended: stays ended
            out = many(frame, valid, *states)
            states = list(out[1:])
            for k in range(n):
                if 0 <= t - starts[k] < len(calls[k]):
                    got[k].append(out[0][k].numpy())
    for k in range(n):
        g = np.stack(got[k])
        assert g.shape == want[k].shape
        assert np.abs(g - want[k]).max() <= 1e-5 * max(1.0, np.abs(want[k]).max()), (k, np.abs(g - want[k]).max())


def test_batched_step_graph_on_ort_keeps_rows_apart(tmp_path):
    """The exported batch-3 graph (streaming.json `batch`, per-state `rows`) equals the PyTorch
    batched step model call by call with a different stream in every row, ending at different
    calls; `last_decisions` (the device runner's accuracy replay, N sequences per call) equals
    each stream's own ended decision."""
    from edgeskel.remote.device_runner import last_decisions
    from edgeskel.stream.replay import session_for

    net, spec = _model(persons=2)
    res = export_streaming(net, spec, "ort", "fp32", tmp_path, batch=3)
    assert res["parity"]["ort"]["passed"]
    contract = json.loads((tmp_path / "streaming.json").read_text())
    assert contract["batch"] == 3 and contract["valid_shape"] == [3] and contract["frame_shape"][0] == 3
    assert {s["rows"] for s in contract["state"]} == {"stream", "stream x person"}
    one = build_step_model(net, spec, "keep")
    p = one.plan
    rng = np.random.default_rng(9)
    seqs = [rng.normal(size=(p.channels, L, p.joints, p.persons)).astype(np.float32) for L in (9, 30, 17, 4)]
    session = session_for(tmp_path, "ort")
    got = last_decisions(session, seqs)
    want = np.stack([run_stream(one, torch.from_numpy(x), end=True).numpy()[-1] for x in seqs])
    assert np.abs(got - want).max() <= 1e-5 * max(1.0, np.abs(want).max())
