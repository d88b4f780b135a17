"""CTR-GCN's "stacked" export form (issue 20 item 4; measured, not the default: see
docs/BENCHMARKS.md): same function as the official per-subset loop on plain and partly
factorized models (ORT and OpenVINO), fewer nodes, and `parallel_maps` equals the modules run
one by one for every chain structure it accepts or falls back on."""

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
from edgeskel.models.ctrgcn import UnitGCN
from edgeskel.models.lowrank import LowRankConv1x1
from edgeskel.models.parallel_1x1 import conv_chain, parallel_maps, stackable

torch.set_num_threads(1)
ENTRY = models.model_entry("ctrgcn")
LAYOUT = ENTRY.tiny["layout"]
KW = {k: v for k, v in ENTRY.tiny.items() if k != "layout"}
T = 12


def _model() -> tuple[nn.Module, ModelSpec]:
    m = models.build("ctrgcn", 5, LAYOUT, num_person=1, **KW)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in m.parameters():  # alpha, PA, biases: all non-trivial
            p.add_(torch.randn(p.shape, generator=g) * 0.2)
        for mod in m.modules():
            if isinstance(mod, nn.BatchNorm2d):
                mod.running_mean.uniform_(-0.5, 0.5)
                mod.running_var.uniform_(0.5, 1.5)
    spec = ModelSpec(name="ctrgcn", num_classes=5, layout=get_layout(LAYOUT), kwargs=dict(KW),
                     preprocess=Preprocess(num_frames=T, num_person=1))
    return m.eval(), spec


def _set_form(model: nn.Module, form: str) -> None:
    for mod in model.modules():
        if isinstance(mod, UnitGCN):
            mod.export_form = form


def _nodes(path) -> Counter:
    return Counter(n.op_type for n in onnx.load(str(path)).graph.node)


@pytest.mark.parametrize("compressed", [False, True])
def test_stacked_form_parity_and_fewer_nodes(compressed, tmp_path):
    from edgeskel.runtime import get_runner

    model, spec = _model()
    if compressed:  # factorize only some subsets' conv3: chains of mixed depth take the fallback path
        cfg = CompressionConfig(policy="budget", target="params", budget=0.97, data_aware=False, rank_multiple=1,
                                include=["*.convs.0.conv3", "*.convs.1.conv3", "*.convs.*.conv4"], min_params=0)
        model, rep = compress_model(model, cfg, (1, *spec.input_shape), [])
        assert any(isinstance(m, LowRankConv1x1) for m in model.modules()), rep["plan"]
        model.eval()
    x = np.random.default_rng(1).standard_normal((2, *spec.input_shape)).astype(np.float32)
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    subsets = export_onnx(model, spec, tmp_path / "subsets.onnx")
    _set_form(model, "stacked")
    stacked = export_onnx(model, spec, tmp_path / "stacked.onnx")
    with torch.no_grad():  # eager evaluation never takes the export form
        assert np.array_equal(model(torch.from_numpy(x)).numpy(), ref)
    units = sum(isinstance(m, UnitGCN) for m in model.modules())
    assert sum(_nodes(stacked).values()) < sum(_nodes(subsets).values()) - 10 * units
    assert _nodes(stacked)["Tanh"] == units and _nodes(subsets)["Tanh"] == 3 * units
    scale = float(np.abs(ref).max())
    for backend in ("ort", "openvino"):
        with get_runner(backend, stacked, precision="fp32", threads=1) as r:
            assert np.abs(r.infer(x) - ref).max() <= 1e-4 * scale, backend


def _chain(cin: int, cout: int, rank: int | None, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    if rank is None:
        return nn.Conv2d(cin, cout, 1)
    return LowRankConv1x1(cin, cout, rank)


@pytest.mark.parametrize("ranks", [(None, None, None), (2, 5, 3), (None, 4, None)])
@pytest.mark.parametrize("grouped", [False, True])
def test_parallel_maps_equals_each_module(ranks, grouped):
    mods = [_chain(4, 6, r, i) for i, r in enumerate(ranks)]
    for m in mods:
        for p in m.parameters():
            nn.init.normal_(p)
    x = torch.randn(2, 4 * (len(mods) if grouped else 1), 5, 3)
    inputs = x.chunk(len(mods), 1) if grouped else [x] * len(mods)
    want = torch.cat([m(xi) for m, xi in zip(mods, inputs, strict=True)], 1)
    assert stackable(mods) == (len({r is None for r in ranks}) == 1)
    assert torch.allclose(parallel_maps(mods, x, grouped), want, atol=1e-5)


def test_conv_chain_refuses_what_is_not_a_plain_1x1_chain():
    assert conv_chain(nn.Conv2d(4, 4, (3, 1))) is None
    assert conv_chain(nn.Conv2d(4, 4, 1, groups=2)) is None
    assert conv_chain(nn.Sequential(nn.Conv2d(4, 4, 1), nn.ReLU())) is None
    assert len(conv_chain(LowRankConv1x1(4, 6, 2))) == 2
