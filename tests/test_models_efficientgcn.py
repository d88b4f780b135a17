"""EfficientGCN: the official B0 fixture reproduced from the RAW skeleton (the J/V/B inputs are
computed inside the model), the official graph/bone parents, B1-B4 compound scaling, other
configurations round-tripping through shape inference, any T / M, ORT/OpenVINO export."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn

from edgeskel import models
from edgeskel.errors import ConfigError
from edgeskel.importers.efficientgcn_official import infer_efficientgcn
from edgeskel.layouts import get_layout
from edgeskel.models.efficientgcn import bone_parents, rescale_block
from edgeskel.models.profile import count_params

torch.set_num_threads(1)

FIXTURE = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "official" / "efficientgcn-b0-ntu60"
RELEASED = [[48, 1, 0.5], [24, 1, 0.5], [64, 2, 1], [128, 2, 1]]
# The official rescale_block worked by hand: channels * 1.2^s rounded to 16s, depth * 1.35^s.
SCALED = {
    0: [[48, 1, 0], [32, 1, 0], [64, 2, 1], [128, 2, 1]],
    2: [[64, 1, 1], [32, 1, 1], [96, 2, 2], [192, 2, 2]],
    4: [[96, 1, 2], [48, 1, 2], [128, 2, 3], [272, 2, 3]],
}


def fixture() -> Path:
    if not (FIXTURE / "checkpoint.pth.tar").is_file():
        pytest.skip(f"official fixture {FIXTURE} not present")
    return FIXTURE


def official_state() -> dict[str, torch.Tensor]:
    return torch.load(fixture() / "checkpoint.pth.tar", map_location="cpu", weights_only=True)["model"]


def load_official(state: dict[str, torch.Tensor], layout: str) -> nn.Module:
    """Build from the shapes in `state` and load it strictly (what the importer adapter does)."""
    facts = infer_efficientgcn(state, "test")
    net = models.build("efficientgcn", facts["num_classes"], layout, **facts["kwargs"])
    net.load_state_dict(state, strict=True)
    return net.eval()


def calibrated(net: nn.Module, x: torch.Tensor, seed: int = 0) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in net.named_parameters():
            p.add_(torch.randn(p.shape, generator=g) * (0.05 if name.endswith("edge") else 0.2))
        for m in net.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.reset_running_stats()
                m.momentum = None
        net.train()
        net(x)
    return net.eval()


# ---- official fixture ---------------------------------------------------------------------------
def test_fixture_logits_from_the_raw_skeleton():
    d = fixture()
    net = load_official(official_state(), "ntu25")
    with torch.no_grad():
        logits = net(torch.from_numpy(np.load(d / "raw_input.npy"))).numpy()  # (N, C, T, V, M)
    np.testing.assert_allclose(logits, np.load(d / "logits.npy"), rtol=0, atol=1e-4)


def test_in_graph_multi_input_equals_the_official_feeder():
    d = fixture()
    net = models.build("efficientgcn", 60, "ntu25")
    raw = torch.from_numpy(np.load(d / "raw_input.npy"))
    n, c, t, v, m = raw.shape
    with torch.no_grad():
        feats = net.multi_input(raw.permute(0, 4, 1, 2, 3).reshape(n * m, c, t, v))
    official = np.load(d / "input.npy")  # (N, I, 2C, T, V, M), float64 feeder -> float32
    for i, f in enumerate(feats):
        ours = f.reshape(n, m, 2 * c, t, v).permute(0, 2, 3, 4, 1).numpy()
        np.testing.assert_allclose(ours, official[:, i], rtol=0, atol=2e-5, err_msg="JVB"[i])


def test_graph_and_bone_parents_are_the_official_ones():
    state = official_state()
    net = models.build("efficientgcn", 60, "ntu25")
    ours = net.state_dict()
    graphs = [k for k in state if k.endswith(".conv.A")]
    assert len(graphs) == 11
    for k in graphs:
        torch.testing.assert_close(ours[k], state[k], rtol=0, atol=0)
    meta = json.loads((fixture() / "meta.json").read_text())
    assert bone_parents(get_layout("ntu25"), 1) == meta["input"]["connect_joint"]


def test_param_count_is_the_official_trainable_count():
    """326,826 official parameters include the 11 frozen (3, 25, 25) graphs, buffers here."""
    assert count_params(models.build("efficientgcn", 60, "ntu25")) == 326_826 - 11 * 3 * 25 * 25


# ---- B0-B4 --------------------------------------------------------------------------------------
@pytest.mark.parametrize("scale", sorted(SCALED))
def test_compound_scaling_is_the_official_rule(scale):
    assert rescale_block(RELEASED, (1.2, 1.35), scale) == SCALED[scale]


@pytest.mark.parametrize("variant", ["B1", "B2", "B3", "B4"])
def test_variants_round_trip_through_shape_inference(variant):
    net = models.build("efficientgcn", 11, "ntu25", variant=variant)
    x = torch.randn(2, 3, 12, 25, 2, generator=torch.Generator().manual_seed(0))
    net = calibrated(net, x)
    state = net.state_dict()
    facts = infer_efficientgcn(state, "test")
    assert facts["kwargs"] == {"variant": variant} and facts["num_classes"] == 11
    again = load_official(state, "ntu25")
    with torch.no_grad():
        np.testing.assert_allclose(again(x).numpy(), net(x).numpy(), rtol=0, atol=1e-4)


def test_variant_is_validated():
    with pytest.raises(ConfigError, match="variant"):
        models.build("efficientgcn", 5, "ntu25", variant="large")


# ---- other configurations -----------------------------------------------------------------------
@pytest.mark.parametrize(
    "kwargs",
    [
        {"width": 0.25, "layer_type": "Sep", "expand_ratio": 2, "reduct_ratio": 4},
        {"width": 0.25, "layer_type": "Bottleneck", "kernel_size": 3, "bias": False},
        {"width": 0.25, "layer_type": "Basic", "edge": False, "stem_channel": 16, "max_graph_distance": 1},
    ],
    ids=["sep", "bottleneck", "basic"],
)
def test_other_layouts_classes_layers_round_trip(kwargs):
    """kinect20, 1 person, 5 classes and the other official temporal layers: the shapes alone
    give back a model with the same logits."""
    net = models.build("efficientgcn", 5, "kinect20", num_person=1, **kwargs)
    x = torch.randn(3, 3, 16, 20, 1, generator=torch.Generator().manual_seed(1))
    net = calibrated(net, x)
    state = net.state_dict()
    facts = infer_efficientgcn(state, "test")
    assert (facts["num_classes"], facts["num_joints"], facts["in_channels"]) == (5, 20, 3)
    assert facts["kwargs"].get("layer_type", "SG") == kwargs["layer_type"]
    again = load_official(state, "kinect20")
    with torch.no_grad():
        np.testing.assert_allclose(again(x).numpy(), net(x).numpy(), rtol=0, atol=1e-4)


@pytest.mark.parametrize(("frames", "persons"), [(30, 2), (64, 1), (17, 3), (2, 1), (1, 2)])
def test_any_frames_and_persons(frames, persons):
    """No weight depends on T or M (the official feeder truncates to 288 frames; any T runs)."""
    net = load_official(official_state(), "ntu25")
    with torch.no_grad():
        out = net(torch.randn(2, 3, frames, 25, persons))
    assert out.shape == (2, 60) and torch.isfinite(out).all()


# ---- export -------------------------------------------------------------------------------------
@pytest.mark.slow  # the fast suite exports every registered model at its tiny size (test_models_export.py)
def test_export_einsum_free_ort_openvino_parity(tmp_path):
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    # small but complete: 3 input branches (stem + 1 block), main stream with a stride-2 SG layer
    net = models.build("efficientgcn", 6, "ntu25", stem_channel=8, blocks=[[8, 1, 0], [16, 2, 1]], fusion_stage=1)
    x0 = torch.randn(4, 3, 16, 25, 2, generator=torch.Generator().manual_seed(0))
    net = calibrated(net, x0)
    path = tmp_path / "efficientgcn.onnx"
    torch.onnx.export(net, (x0[:2],), str(path), input_names=["x"], output_names=["logits"],
                      dynamic_shapes=({0: torch.export.Dim("batch")},), verbose=False)
    ops = {n.op_type for n in onnx.load(str(path)).graph.node}
    assert "Einsum" not in ops and not {"OneHot", "Loop", "If"} & ops, ops
    assert "Acos" in ops  # the bone-angle input is computed in the graph
    x = np.random.default_rng(1).standard_normal((3, 3, 16, 25, 2)).astype(np.float32)
    with torch.no_grad():
        ref = net(torch.from_numpy(x)).numpy()
    assert np.abs(ref).max() > 1e-3
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(sess.run(None, {"x": x})[0], ref, rtol=0, atol=1e-4)
    ov = pytest.importorskip("openvino")
    compiled = ov.Core().compile_model(str(path), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    np.testing.assert_allclose(compiled(x)[0], ref, rtol=0, atol=1e-4)


# ---- importer adapter + CLI ---------------------------------------------------------------------
def test_cli_import_without_flags_then_predict_on_the_raw_skeleton(tmp_path):
    """`edgeskel import CKPT --out FILE` (no flag) + `edgeskel predict raw_input.npy` (N, C, T, V, M)."""
    from edgeskel.cli import main

    d = fixture()
    ckpt = tmp_path / "eff.ckpt"
    assert main(["import", str(d / "checkpoint.pth.tar"), "--out", str(ckpt)]) == 0
    assert main(["predict", "--checkpoint", str(ckpt), "--input", str(d / "raw_input.npy"),
                 "--out", str(tmp_path / "y.npy")]) == 0
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), np.load(d / "logits.npy"), rtol=0, atol=1e-4)


def test_paddle_port_imports_through_the_restricted_unpickler(tmp_path):
    """A Paddle port's file (pickled dict of numpy arrays, BN stats `_mean`/`_variance`, as
    JustinXu0/EfficientGCN_paddle transferForPth.py writes it; here also without
    `num_batches_tracked`, as natively trained Paddle weights are) imports and reproduces the
    official logits."""
    import pickle
    from collections import OrderedDict

    from edgeskel.importers import import_checkpoint

    d = fixture()
    paddle = OrderedDict()
    for k, v in official_state().items():
        if k.endswith("num_batches_tracked"):
            continue
        k = k.replace(".running_mean", "._mean").replace(".running_var", "._variance")
        paddle[k] = v.numpy()
    path = tmp_path / "2001_EfficientGCN-B0_ntu-xsub.pdparams.tar"
    with path.open("wb") as fh:
        pickle.dump({"model": paddle, "best_state": {"acc_top1": 0.9, "cm": np.zeros((60, 60))}}, fh, protocol=4)
    net, spec, info = import_checkpoint(path)
    assert info["format"] == "paddle" and info["source"] == "efficientgcn" and spec.kwargs["variant"] == "B0"
    with torch.no_grad():
        logits = net(torch.from_numpy(np.load(d / "raw_input.npy"))).numpy()
    np.testing.assert_allclose(logits, np.load(d / "logits.npy"), rtol=0, atol=1e-4)


def test_adapter_reports_a_foreign_graph(tmp_path):
    """The stored graphs A must be the one our layout builds (else the spec lies)."""
    from edgeskel.errors import CheckpointError
    from edgeskel.importers import import_checkpoint

    state = dict(official_state())
    state["main_stream.block-0_scn.conv.A"] = state["main_stream.block-0_scn.conv.A"].flip(-1)
    torch.save({"model": state}, tmp_path / "w.pth.tar")
    with pytest.raises(CheckpointError, match="graph stored in main_stream.block-0_scn.conv.A"):
        import_checkpoint(tmp_path / "w.pth.tar")
