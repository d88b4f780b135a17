"""PYSKL `unit_gcn` export form (issue 20 item 4): edgeskel exports the aggregation first and
the channel mix after (no ReduceSum, BN folded into a dilated conv); the function is the
same as PYSKL's order, plain and factorized, on ORT and OpenVINO; benchmark baselines keep
PYSKL's order (`original_forms`)."""

from __future__ import annotations

from collections import Counter

import numpy as np
import onnx
import pytest
import torch
import torch.nn as nn

from edgeskel import models
from edgeskel.checkpoint import ModelSpec, Preprocess
from edgeskel.compress import compress_model
from edgeskel.compress.config import CompressionConfig
from edgeskel.export.onnx import export_onnx
from edgeskel.layouts import get_layout
from edgeskel.models.export_form import original_forms
from edgeskel.models.lowrank import LowRankConv1x1
from edgeskel.models.pyskl_units import UnitGCN

torch.set_num_threads(1)
T = 12


def _randomize(m: nn.Module, seed: int) -> nn.Module:
    """Non-trivial weights and BN statistics (the folded BN must matter)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in m.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.2)
        for bn in (mod for mod in m.modules() if isinstance(mod, nn.BatchNorm2d)):
            bn.running_mean.copy_(torch.randn(bn.num_features, generator=g) * 0.3)
            bn.running_var.copy_(torch.rand(bn.num_features, generator=g) + 0.5)
    return m.eval()


def _model(name: str, seed: int = 0, **kw) -> tuple[nn.Module, ModelSpec]:
    entry = models.model_entry(name)
    layout = entry.tiny["layout"]
    kwargs = {**{k: v for k, v in entry.tiny.items() if k != "layout"}, **kw}
    m = _randomize(models.build(name, 5, layout, num_person=1, **kwargs), seed)
    spec = ModelSpec(name=name, num_classes=5, layout=get_layout(layout), kwargs=kwargs,
                     class_names=[str(i) for i in range(5)], preprocess=Preprocess(num_frames=T, num_person=1))
    return m, spec


def _ops(path) -> Counter:
    return Counter(n.op_type for n in onnx.load(str(path)).graph.node)


@pytest.mark.parametrize("adaptive", ["importance", "offset", "init"])
@pytest.mark.parametrize("with_res", [False, True])
@pytest.mark.parametrize("factorized", [False, True])
def test_post_form_is_the_same_function(adaptive, with_res, factorized):
    A = torch.rand(3, 7, 7)
    u = UnitGCN(6, 10, A, adaptive=adaptive, with_res=with_res)
    if factorized:
        u.conv = LowRankConv1x1(6, 30, 4)
    u = _randomize(u, 1)
    x = torch.randn(2, 6, 5, 7)
    with torch.no_grad():
        want = u(x)
        for form in ("post", "concat"):
            u.export_form = form
            got = u.act(u._forward_post(x, *u._split_conv()) + (u.down(x) if u.down is not None else 0))
            torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_other_conv_structures_keep_pyskl_order():
    u = UnitGCN(6, 10, torch.rand(3, 7, 7))
    u.conv = nn.Conv2d(6, 30, (1, 3), padding=(0, 1))  # not a 1x1 conv: no post form
    assert u._split_conv() is None


@pytest.mark.parametrize("name", ["stgcn", "stgcnpp"])
@pytest.mark.parametrize("compressed", [False, True])
def test_exported_graph_and_parity(name, compressed, tmp_path):
    from edgeskel.bench.variants import plain_onnx_export
    from edgeskel.runtime import get_runner

    model, spec = _model(name)
    if compressed:
        cfg = CompressionConfig(policy="budget", target="params", budget=0.97, data_aware=False, rank_multiple=1,
                                include=["*.gcn.conv"], min_params=0)
        model, rep = compress_model(model, cfg, (1, *spec.input_shape), [])
        assert any(isinstance(m, LowRankConv1x1) for m in model.modules()), rep["plan"]
        model.eval()
    x = np.random.default_rng(2).standard_normal((3, *spec.input_shape)).astype(np.float32)
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    new = export_onnx(model, spec, tmp_path / "new.onnx")
    units = sum(isinstance(m, UnitGCN) for m in model.modules())
    ops = _ops(new)
    plain = _ops(plain_onnx_export(model, spec, tmp_path / "plain.onnx"))
    assert plain["ReduceSum"] == units, plain  # baselines: PYSKL's order, one ReduceSum per unit_gcn
    # edgeskel's form: no ReduceSum, and each unit_gcn's BN folded into its conv (onnxslim folds
    # the BNs that follow a conv directly in both forms)
    assert ops["ReduceSum"] == 0 and ops["BatchNormalization"] <= plain["BatchNormalization"] - units, (ops, plain)
    with original_forms():
        assert _ops(export_onnx(model, spec, tmp_path / "orig.onnx"))["ReduceSum"] == units
    scale = float(np.abs(ref).max())
    for backend in ("ort", "openvino"):
        with get_runner(backend, new, precision="fp32", threads=1) as r:
            got = r.infer(x)
        assert np.abs(got - ref).max() <= 1e-4 * scale, backend
    assert model.gcn[0].gcn.export_form == "post" and not torch.onnx.is_in_onnx_export()
