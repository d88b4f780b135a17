"""Shift-GCN: the official fixture's logits, the temporal shift against a per-element port of
the official CUDA kernel, other configurations, any T, and export to ORT/OpenVINO."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn

from edgeskel import models
from edgeskel.errors import CheckpointError
from edgeskel.importers.shiftgcn_official import from_official_keys, infer_shiftgcn, to_official_keys
from edgeskel.models.profile import count_params
from edgeskel.models.shiftgcn import Shift, spatial_shift_index

torch.set_num_threads(1)

FIXTURE = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "official" / "shiftgcn-ntu60-xview"


def fixture() -> Path:
    if not (FIXTURE / "checkpoint.pt").is_file():
        pytest.skip(f"official fixture {FIXTURE} not present")
    return FIXTURE


def load_official(state: dict[str, torch.Tensor], layout: str) -> nn.Module:
    """Map the official names, build from the shapes and load strictly (what the adapter does)."""
    state = from_official_keys(state)
    facts = infer_shiftgcn(state, "test")
    net = models.build("shiftgcn", facts["num_classes"], layout, num_person=facts["num_person"], **facts["kwargs"])
    net.load_state_dict(state, strict=True)
    return net.eval()


def kernel_reference(inp: np.ndarray, xpos: np.ndarray, ypos: np.ndarray, stride: int) -> np.ndarray:
    """The official `ShiftFunction.forward` + `shift_cuda_forward_kernel`, one output row and
    channel at a time, float32 arithmetic in the kernel's order."""
    if stride != 1:
        ypos = ypos + np.float32(0.5)
    n, c, h_in, w_in = inp.shape
    out = np.zeros((n, c, h_in // stride, w_in), np.float32)
    one = np.float32(1)
    for ch in range(c):
        x, y = np.float32(xpos[ch]), np.float32(ypos[ch])
        x1, y1 = math.floor(x), math.floor(y)
        dx, dy = np.float32(x - np.float32(x1)), np.float32(y - np.float32(y1))
        for h in range(h_in // stride):
            def q(hh: int, dw: int, ch: int = ch) -> np.ndarray:
                row = np.zeros((n, w_in), np.float32)  # zero padding outside [0, H) x [0, W)
                if 0 <= hh < h_in:
                    lo, hi = max(0, -dw), min(w_in, w_in - dw)
                    row[:, lo:hi] = inp[:, ch, hh, lo + dw : hi + dw]
                return row
            hh = h * stride
            out[:, ch, h] = (q(hh + y1, x1) * (one - dx) * (one - dy) + q(hh + y1, x1 + 1) * dx * (one - dy)
                             + q(hh + y1 + 1, x1) * (one - dx) * dy + q(hh + y1 + 1, x1 + 1) * dx * dy)
    return out


# ---- official fixture ---------------------------------------------------------------------------
def test_fixture_logits_match_official():
    d = fixture()
    state = torch.load(d / "checkpoint.pt", map_location="cpu", weights_only=True)
    net = load_official(state, "ntu25")
    with torch.no_grad():
        logits = net(torch.from_numpy(np.load(d / "input.npy"))).numpy()
    np.testing.assert_allclose(logits, np.load(d / "logits.npy"), rtol=0, atol=1e-4)


def test_stored_spatial_permutations_are_the_official_formula():
    state = torch.load(fixture() / "checkpoint.pt", map_location="cpu", weights_only=True)
    for i, (c_in, c_out) in enumerate([(3, 64)] + [(64, 64)] * 3 + [(64, 128)] + [(128, 128)] * 2 + [(128, 256)]
                                      + [(256, 256)] * 2, start=1):
        assert torch.equal(state[f"l{i}.gcn1.shift_in"], spatial_shift_index(25, c_in, +1))
        assert torch.equal(state[f"l{i}.gcn1.shift_out"], spatial_shift_index(25, c_out, -1))


def test_param_count_is_the_official_one():
    """693,107 float parameters (the int64 permutations are buffers here, frozen params there)."""
    assert count_params(models.build("shiftgcn", 60, "ntu25", num_person=2)) == 693_107


# ---- the temporal shift -------------------------------------------------------------------------
@pytest.mark.parametrize("stride", [1, 2])
def test_temporal_shift_equals_the_official_kernel(stride):
    g = torch.Generator().manual_seed(3)
    ypos = torch.tensor([0.3, -1.7, 2.0, -3.0, 3.9, 0.0, -0.5, 4.49])  # fractional, integer, both signs
    xpos = torch.tensor([1e-10, -1e-10, 0.5, -0.7, 0.0, 0.2, -2e-9, 0.999])  # the trained ones are ~1e-10
    shift = Shift(8, stride, radius=6)
    with torch.no_grad():
        shift.ypos.copy_(ypos)
        shift.xpos.copy_(xpos)
    x = torch.randn(2, 8, 12, 7, generator=g)
    with torch.no_grad():
        got = shift(x).numpy()
    want = kernel_reference(x.numpy(), xpos.numpy(), ypos.numpy(), stride)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)


def test_stride2_odd_T_gives_ceil_rows_and_the_official_ones_first():
    shift = Shift(3, 2, radius=4)
    with torch.no_grad():
        shift.ypos.copy_(torch.tensor([0.2, -1.3, 2.6]))
    x = torch.randn(1, 3, 11, 5)
    with torch.no_grad():
        got = shift(x).numpy()
    assert got.shape[2] == 6  # ceil(11 / 2): matches the strided residual conv
    want = kernel_reference(x.numpy(), shift.xpos.detach().numpy(), shift.ypos.detach().numpy(), 2)
    np.testing.assert_allclose(got[:, :, :5], want, rtol=0, atol=1e-6)


def test_shift_offsets_are_trainable():
    shift = Shift(4, 1, radius=3)
    shift(torch.randn(2, 4, 10, 5)).square().sum().backward()
    assert shift.ypos.grad is not None and shift.ypos.grad.abs().sum() > 0


def test_radius_must_cover_the_offsets_or_import_says_so():
    state = {k: v.clone() for k, v in torch.load(fixture() / "checkpoint.pt", weights_only=True).items()}
    state["l3.tcn1.shift_in.xpos"][0] = 1.5
    with pytest.raises(CheckpointError, match="xpos"):
        infer_shiftgcn(from_official_keys(state), "f.pt")


# ---- generality ---------------------------------------------------------------------------------
def _calibrated(net: nn.Module, x: torch.Tensor, seed: int = 0) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.2)
        for m in net.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.reset_running_stats()
                m.momentum = None
        net.train()
        net(x)
    return net.eval()


def test_other_classes_joints_persons_widths_round_trip():
    """kinect20, 1 person, 7 classes, base 16, 6 layers (one stride-2), offsets up to |5|:
    the shapes alone give back the configuration and the same logits."""
    net = models.build("shiftgcn", 7, "kinect20", num_person=1, base_channels=16, num_stages=6, shift_radius=7)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, Shift):
                m.ypos.copy_((torch.rand(m.ypos.shape, generator=g) - 0.5) * 10)
    x = torch.randn(3, 3, 20, 20, 1, generator=g)
    net = _calibrated(net, x)
    state = to_official_keys(net.state_dict())  # as the official main.py saves it
    assert state["l2.gcn1.Linear_weight"].shape == (16, 16) and state["l1.gcn1.Linear_bias"].shape == (1, 1, 16)
    facts = infer_shiftgcn(from_official_keys(state), "test")
    assert (facts["num_classes"], facts["num_joints"], facts["in_channels"], facts["num_person"]) == (7, 20, 3, 1)
    assert facts["kwargs"]["base_channels"] == 16 and facts["kwargs"]["num_stages"] == 6
    assert max(facts["kwargs"]["shift_radius"]) <= 7
    again = load_official(state, "kinect20")
    with torch.no_grad():
        np.testing.assert_allclose(again(x).numpy(), net(x).numpy(), rtol=0, atol=1e-5)


@pytest.mark.parametrize("frames", [50, 47, 9])
def test_any_number_of_frames(frames):
    state = torch.load(fixture() / "checkpoint.pt", map_location="cpu", weights_only=True)
    net = load_official(state, "ntu25")
    with torch.no_grad():
        out = net(torch.randn(1, 3, frames, 25, 2))
    assert out.shape == (1, 60) and torch.isfinite(out).all()


# ---- export -------------------------------------------------------------------------------------
@pytest.mark.slow  # the fast suite exports every registered model at its tiny size (test_models_export.py)
def test_export_einsum_free_ort_openvino_parity(tmp_path):
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    net = models.build("shiftgcn", 6, "ntu25", num_person=2, width=0.125, num_stages=5, shift_radius=3)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, Shift):
                m.ypos.copy_((torch.rand(m.ypos.shape, generator=g) - 0.5) * 4)
    net = _calibrated(net, torch.randn(4, 3, 16, 25, 2, generator=g))
    path = tmp_path / "shiftgcn.onnx"
    torch.onnx.export(net, (torch.randn(2, 3, 16, 25, 2),), str(path), input_names=["x"], output_names=["logits"],
                      dynamic_shapes=({0: torch.export.Dim("batch")},), verbose=False)
    ops = {n.op_type for n in onnx.load(str(path)).graph.node}
    assert "Einsum" not in ops and not {"OneHot", "Loop", "If"} & ops, ops
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
def test_cli_import_without_flags_then_predict(tmp_path):
    """`edgeskel import CKPT --out FILE` detects Shift-GCN, NTU layout, sizes and shift radii;
    `edgeskel predict` on the fixture input reproduces the official logits."""
    from edgeskel.cli import main

    d = fixture()
    ckpt = tmp_path / "shift.ckpt"
    assert main(["import", str(d / "checkpoint.pt"), "--out", str(ckpt)]) == 0
    assert main(["predict", "--checkpoint", str(ckpt), "--input", str(d / "input.npy"), "--out", str(tmp_path / "y.npy")]) == 0
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), np.load(d / "logits.npy"), rtol=0, atol=1e-4)


def test_adapter_detects_and_imports_other_configurations(tmp_path):
    from edgeskel.importers import import_checkpoint

    net = models.build("shiftgcn", 9, "kinect20", num_person=1, base_channels=8, num_stages=5, shift_radius=4)
    net = _calibrated(net, torch.randn(2, 3, 12, 20, 1))
    torch.save(to_official_keys(net.state_dict()), tmp_path / "w.pt")
    got, spec, info = import_checkpoint(tmp_path / "w.pt")
    assert info["source"] == "shiftgcn" and spec.layout.name == "kinect20" and spec.num_classes == 9
    assert spec.preprocess.num_person == 1 and spec.kwargs["num_stages"] == 5
    x = torch.randn(2, 3, 12, 20, 1)
    with torch.no_grad():
        np.testing.assert_allclose(got(x).numpy(), net(x).numpy(), rtol=0, atol=1e-5)


def test_adapter_lists_unmatched_keys(tmp_path):
    from edgeskel.importers import import_checkpoint

    state = dict(torch.load(fixture() / "checkpoint.pt", weights_only=True))
    state.pop("l4.tcn1.bn2.running_var")
    state["l4.tcn1.extra"] = torch.zeros(3)
    torch.save(state, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match=r"missing keys \(1\).*l4.tcn1.bn2.running_var.*unexpected keys \(1\)"):
        import_checkpoint(tmp_path / "bad.pt")


def test_spatial_linear_is_factorized_by_generic_compression():
    """The official einsum weight is an nn.Linear here, so low-rank compression reaches it."""
    from edgeskel.compress import compress_model
    from edgeskel.compress.config import CompressionConfig

    net = models.build("shiftgcn", 5, "kinect20", num_person=1, base_channels=32, num_stages=5, shift_radius=3).eval()
    _, report = compress_model(net, CompressionConfig(policy="fixed", ratio=0.25, min_params=256, rank_multiple=4),
                               (1, 3, 16, 20, 1))
    done = {e["name"] for e in report["layers"] if e["status"] == "factorized"}
    assert "l2.gcn1.linear" in done and "l2.tcn1.temporal_linear" in done, sorted(done)
