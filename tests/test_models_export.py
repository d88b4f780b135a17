"""Every model exports with torch.onnx.export (dynamo, dynamic batch), contains no Einsum node,
and ONNX Runtime and OpenVINO (f32) reproduce PyTorch within 1e-4 at another batch size."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn

from edgeskel import models

onnx = pytest.importorskip("onnx", reason="onnx not installed")
ort = pytest.importorskip("onnxruntime", reason="onnxruntime not installed")

torch.set_num_threads(1)

# every registered model at its registered tiny size (T=16); the slow test exports all stages
TINY = {
    name: ((models.model_entry(name).tiny or {}).get("layout", "ntu25"),
           {k: v for k, v in (models.model_entry(name).tiny or {"width": 0.25}).items() if k != "layout"})
    for name in models.available_models()
}


def calibrated(name: str, layout: str, kwargs: dict, persons: int = 2) -> tuple[nn.Module, int]:
    m = models.build(name, 6, layout, num_person=persons, **kwargs)
    g = torch.Generator().manual_seed(0)
    v = m.num_joints
    with torch.no_grad():
        for p in m.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.2)
        for mod in m.modules():
            if isinstance(mod, nn.modules.batchnorm._BatchNorm):
                mod.reset_running_stats()
                mod.momentum = None
        m.train()
        m(torch.randn(4, 3, 16, v, persons, generator=g))
    return m.eval(), v


def export(model: nn.Module, v: int, path) -> None:
    x = torch.randn(2, 3, 16, v, 2)  # batch >= 2, else dynamo specialises the batch dim
    torch.onnx.export(model, (x,), str(path), input_names=["x"], output_names=["logits"],
                      dynamic_shapes=({0: torch.export.Dim("batch")},), verbose=False)


@pytest.mark.parametrize("name", sorted(TINY))
def test_onnx_export_ort_openvino_parity(name, tmp_path):
    layout, kw = TINY[name]
    model, v = calibrated(name, layout, kw)
    path = tmp_path / f"{name}.onnx"
    export(model, v, path)

    graph = onnx.load(str(path)).graph
    ops = {n.op_type for n in graph.node}
    assert "Einsum" not in ops, ops
    assert not {"OneHot", "Loop", "If"} & ops, ops

    x = np.random.default_rng(1).standard_normal((3, 3, 16, v, 2)).astype(np.float32)  # batch 3 != export batch
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    assert np.abs(ref).max() > 1e-3  # non-trivial logits

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = sess.run(None, {sess.get_inputs()[0].name: x})[0]
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-4)

    ov = pytest.importorskip("openvino", reason="openvino not installed")
    compiled = ov.Core().compile_model(str(path), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    np.testing.assert_allclose(compiled(x)[0], ref, rtol=0, atol=1e-4)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(TINY))
def test_full_depth_export_parity(name, tmp_path):
    layout, kw = TINY[name]
    kw = {k: v for k, v in kw.items() if k != "num_stages"}
    model, v = calibrated(name, layout, kw)
    path = tmp_path / f"{name}.onnx"
    export(model, v, path)
    x = np.random.default_rng(2).standard_normal((4, 3, 16, v, 2)).astype(np.float32)
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(sess.run(None, {"x": x})[0], ref, rtol=0, atol=1e-4)


@pytest.mark.parametrize("name", sorted(TINY))
def test_openvino_ir_is_not_larger_than_the_onnx(name, tmp_path):
    """OpenVINO's conversion folds constants: CTR-GCN written as `conv4(rel) * alpha + A` let
    it fold conv4's bias and A into a (C, V, V) constant per subset (IR 3x the ONNX size).
    The IR of every model must stay about the size of its weights."""
    ov = pytest.importorskip("openvino", reason="openvino not installed")
    from edgeskel.checkpoint import ModelSpec, Preprocess
    from edgeskel.export.onnx import export_onnx
    from edgeskel.layouts import get_layout

    layout, kw = TINY[name]
    model, v = calibrated(name, layout, kw)
    spec = ModelSpec(name=name, num_classes=6, layout=get_layout(layout), kwargs={**kw, "num_person": 2},
                     preprocess=Preprocess(num_frames=16, num_person=2))
    path = export_onnx(model, spec, tmp_path / f"{name}.onnx")  # edgeskel's exporter, as deployed
    ov.save_model(ov.convert_model(str(path)), str(tmp_path / "m.xml"), compress_to_fp16=False)
    weights = sum(p.numel() for p in model.parameters()) * 4
    assert (tmp_path / "m.bin").stat().st_size <= 1.3 * max(path.stat().st_size, weights)
