"""Model zoo: parameter counts, shapes on every layout, graph builders, export-first rewrites
(matmul instead of einsum) checked against the official einsum formulas, FLOP counting."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn

from edgeskel import models
from edgeskel.errors import ConfigError
from edgeskel.layouts import BUILTIN_LAYOUTS, get_layout
from edgeskel.models.graph import (
    NTU25_HANDS_TO_WRIST_EDGES,
    ctrgcn_spatial,
    edges_to_kwarg,
    hop_distances,
    part_matrices,
    stgcn_spatial,
)
from edgeskel.models.profile import count_flops, count_params, gflops

torch.set_num_threads(1)

# Official parameter counts (fixtures' meta.json: official code, NTU-60, 2 persons).
PUBLISHED = {"stgcn": 3_098_832, "ctrgcn": 1_446_672, "hyperformer": 2_729_194}
TINY = {
    "stgcn": {"width": 0.125},
    "ctrgcn": {"width": 0.125},
    "hyperformer": {"width": 0.2, "num_heads": 3},
}


def test_registry_lists_the_three_models():
    assert {"stgcn", "ctrgcn", "hyperformer"} <= set(models.available_models())
    assert models.model_entry("hyperformer").family == "transformer"
    assert models.model_entry("ctrgcn").family == "gcn"


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_param_count_ntu25_within_5_percent_of_published(name):
    n = count_params(models.build(name, 60, "ntu25", num_person=2))
    assert abs(n - PUBLISHED[name]) / PUBLISHED[name] < 0.05, n


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_param_count_exact_with_official_graph(name):
    kw = {} if name == "ctrgcn" else {"edges": edges_to_kwarg(NTU25_HANDS_TO_WRIST_EDGES)}
    assert count_params(models.build(name, 60, "ntu25", num_person=2, **kw)) == PUBLISHED[name]


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_param_count_kinect20_follows_the_structure(name):
    """Going from ntu25/60 classes/2 persons to kinect20/10 classes/1 person changes exactly
    the graph-sized, data_bn and classifier parameters."""
    big = count_params(models.build(name, 60, "ntu25", num_person=2))
    small = count_params(models.build(name, 10, "kinect20", num_person=1))
    dv2 = 25 * 25 - 20 * 20
    if name == "stgcn":  # PA (3, V, V) per block, data_bn over V*C, fc 256 -> K
        expected = big - 10 * 3 * dv2 - 2 * (75 - 60) - 50 * 257
    elif name == "ctrgcn":  # PA (3, V, V) per layer, data_bn over M*V*C
        expected = big - 10 * 3 * dv2 - 2 * (150 - 60) - 50 * 257
    else:  # outer (9, V, V) and rpe (max_hop + 1, 216) per layer
        hop_rows = hop_distances(get_layout("ntu25")).max() - hop_distances(get_layout("kinect20")).max()
        expected = big - 10 * 9 * dv2 - 10 * 216 * hop_rows - 2 * (150 - 60) - 50 * 217
    assert small == expected


@pytest.mark.parametrize("layout", sorted(BUILTIN_LAYOUTS))
@pytest.mark.parametrize("name", sorted(TINY))
def test_forward_shape_every_layout(name, layout):
    lay = get_layout(layout)
    m = models.build(name, 7, lay, num_person=2, **TINY[name]).eval()
    x = torch.randn(2, lay.channels, 16, lay.num_joints, 2)
    with torch.no_grad():
        y = m(x)
    assert y.shape == (2, 7)
    assert torch.isfinite(y).all()


@pytest.mark.parametrize("name", sorted(TINY))
def test_wrong_input_shape_is_a_clear_error(name):
    m = models.build(name, 3, "kinect20", num_person=1, **TINY[name]).eval()
    with pytest.raises(ValueError, match=r"expected input \(N, 3, T, 20"):
        m(torch.randn(1, 3, 8, 25, 1))


@pytest.mark.parametrize("name", sorted(TINY))
def test_unknown_kwarg_rejected(name):
    with pytest.raises(ConfigError, match="unknown model arguments"):
        models.build(name, 3, "ntu25", bogus=1)


@pytest.mark.parametrize("width", [0.05, 0.1, 0.3, 0.5, 0.77, 1.5])
@pytest.mark.parametrize("name", sorted(TINY))
def test_width_keeps_divisibility(name, width):
    m = models.build(name, 4, "openni15", num_person=1, width=width, num_stages=2)
    with torch.no_grad():
        assert m.eval()(torch.randn(1, 3, 8, 15, 1)).shape == (1, 4)


def test_width_and_depth_shrink_the_model():
    full = count_params(models.build("ctrgcn", 60, "ntu25"))
    tiny = count_params(models.build("ctrgcn", 60, "ntu25", width=0.25, num_stages=4))
    assert tiny < full / 10


def test_dropout_only_in_training():
    m = models.build("stgcn", 5, "ntu25", width=0.125, dropout=0.5, num_stages=2).eval()
    x = torch.randn(2, 3, 8, 25, 2)
    with torch.no_grad():
        assert torch.equal(m(x), m(x))


# ---- graphs ---------------------------------------------------------------------------------
def test_ctrgcn_spatial_matches_layout():
    for lay in BUILTIN_LAYOUTS.values():
        np.testing.assert_array_equal(ctrgcn_spatial(lay), lay.spatial_adjacency())


def test_stgcn_spatial_partitions_the_normalised_one_hop_graph():
    lay = get_layout("ntu25")
    a = stgcn_spatial(lay, NTU25_HANDS_TO_WRIST_EDGES)
    assert a.shape == (3, 25, 25)
    # the three subsets partition A_norm: every column sums to 1
    np.testing.assert_allclose(a.sum(0).sum(0), np.ones(25), atol=1e-6)
    assert np.all((a > 0).sum(0) <= 1)  # disjoint
    # subset 0 is the self-loop part
    np.testing.assert_array_equal(np.diag(a[0]) > 0, np.ones(25, bool))


def test_hop_distances_ntu_official_graph():
    lay = get_layout("ntu25")
    h = hop_distances(lay, NTU25_HANDS_TO_WRIST_EDGES)
    assert h.shape == (25, 25) and (h == h.T).all() and (np.diag(h) == 0).all()
    assert h.max() == 11  # Hyperformer fixture: rpe has 12 rows
    assert h[21, 7] == 1 and h[21, 22] == 2  # hand tip hangs off the hand


def test_edges_override_validated():
    with pytest.raises(ConfigError, match="invalid"):
        models.build("ctrgcn", 3, "kinect20", edges=[[0, 25]])


def test_part_matrices():
    avg, scatter = part_matrices([0, 0, 1, 2, 2, 2])
    np.testing.assert_allclose(avg.sum(0), 1.0)
    np.testing.assert_array_equal(scatter.sum(0), np.ones(6))
    with pytest.raises(ConfigError, match="no joints"):
        part_matrices([0, 2, 2])


# ---- export-first rewrites equal the official einsum formulas ------------------------------
def test_ctrgc_matmul_equals_official_einsum():
    from edgeskel.models.ctrgcn import CTRGC

    torch.manual_seed(0)
    mod = CTRGC(16, 32).eval()
    x, a, alpha = torch.randn(2, 16, 6, 25), torch.randn(25, 25), torch.tensor([0.7])
    x1, x2, x3 = mod.conv1(x).mean(-2), mod.conv2(x).mean(-2), mod.conv3(x)
    topo = mod.conv4(torch.tanh(x1.unsqueeze(-1) - x2.unsqueeze(-2))) * alpha + a[None, None]
    ref = torch.einsum("ncuv,nctv->nctu", topo, x3)
    torch.testing.assert_close(mod(x, a, alpha), ref, atol=1e-5, rtol=1e-5)


def test_stgcn_unit_gcn_equals_official_einsum():
    from edgeskel.models.stgcn import UnitGCN

    torch.manual_seed(0)
    a = torch.from_numpy(stgcn_spatial(get_layout("coco17")))
    mod = UnitGCN(4, 8, a).eval()
    with torch.no_grad():
        mod.PA.uniform_(0.5, 1.5)
    x = torch.randn(2, 4, 5, 17)
    y = mod.conv(x).view(2, 3, 8, 5, 17)
    ref = mod.act(mod.bn(torch.einsum("nkctv,kvw->nctw", y, mod.A * mod.PA)))
    torch.testing.assert_close(mod(x), ref, atol=1e-5, rtol=1e-5)


def test_mhsa_matmul_equals_official_einsum():
    from edgeskel.models.hyperformer import MHSA

    torch.manual_seed(0)
    hops = torch.from_numpy(hop_distances(get_layout("kinect20")))
    h, v = 3, 20
    mod = MHSA(12, 24, hops, num_heads=h).eval()  # dim 24: 3 heads of 8, proj groups 6
    d = mod.head_dim
    with torch.no_grad():
        for p in (mod.rpe, mod.w1, mod.alpha, mod.outer):
            p.add_(torch.randn_like(p) * 0.5)
    x, e = torch.randn(2, 12, 5, v), torch.randn(2, h * d, 5, v)
    # official MHSA.forward, verbatim einsum formulation
    n, _, t, _ = x.shape
    kv = mod.kv(x).reshape(n, 2, h, d, t, v).permute(1, 0, 4, 2, 5, 3)
    k, val = kv[0], kv[1]
    q = mod.q(x).reshape(n, h, d, t, v).permute(0, 3, 1, 4, 2)
    e_k = e.reshape(n, h, d, t, v).permute(0, 3, 1, 4, 2)
    k_r = mod.rpe[mod.hops].view(v, v, h, d)
    b = torch.einsum("bthnc, nmhc->bthnm", q, k_r)
    c = torch.einsum("bthnc, bthmc->bthnm", q, e_k)
    dd = torch.einsum("hc, bthmc->bthm", mod.w1, e_k).unsqueeze(-2)
    attn = ((q @ k.transpose(-2, -1) + b + c + dd) * mod.scale).softmax(dim=-1)
    out = ((mod.alpha * attn + mod.outer) @ val).transpose(3, 4).reshape(n, t, -1, v).transpose(1, 2)
    torch.testing.assert_close(mod(x, e), mod.proj(out), atol=1e-5, rtol=1e-5)


# ---- profile --------------------------------------------------------------------------------
def test_count_flops_is_two_macs():
    class OneConv(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 8, (3, 1), padding=(1, 0), bias=False)

        def forward(self, x):  # (N, C, T, V, M) -> use person 0
            return self.conv(x[..., 0])

    m = OneConv()
    flops = count_flops(m, (2, 3, 10, 5, 1))
    assert flops == 2 * (2 * 8 * 10 * 5) * (3 * 3)
    assert gflops(m, (2, 3, 10, 5, 1)) == pytest.approx(flops / 1e9)
    assert count_params(m) == 8 * 3 * 3
    assert m.training  # mode restored


def test_count_flops_scales_with_batch_and_frames():
    m = models.build("ctrgcn", 5, "kinect20", num_person=1, width=0.125, num_stages=3)
    f1 = count_flops(m, (1, 3, 8, 20, 1))
    assert count_flops(m, (2, 3, 8, 20, 1)) == 2 * f1
    assert count_flops(m, (1, 3, 16, 20, 1)) > 1.8 * f1
