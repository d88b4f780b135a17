"""CTR-GCN's causal topology (models/ctrgcn.py CTRGC._causal): the V-first contraction it uses
when it has fewer relation channels than joints equals the per-frame topology product of its
definition, values and gradients, and any other conv4 (e.g. factorized) takes the plain path."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from edgeskel.models.ctrgcn import CTRGC


def _definition(m: CTRGC, x: torch.Tensor, a: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """x3[t] @ (conv4(tanh(m1[t] - m2[t])) * alpha)^T + x3[t] @ a^T, written out per frame."""
    r = m.rel_channels
    mm = m.trailing(torch.cat([m.conv1(x), m.conv2(x)], 1))
    rel = torch.tanh(mm[:, :r].unsqueeze(-1) - mm[:, r:].unsqueeze(-2))  # (N, R, T, U, V)
    w4, b4 = m.conv4.weight.reshape(-1, r), m.conv4.bias
    refined = (torch.einsum("cr,nrtuv->nctuv", w4, rel) + b4.reshape(1, -1, 1, 1, 1)) * alpha
    return torch.einsum("nctuv,nctv->nctu", refined, m.conv3(x)) + torch.einsum("nctv,uv->nctu", m.conv3(x), a)


@pytest.mark.parametrize("cin, joints", [(3, 20), (64, 25), (256, 20)])  # R = 8, 8, 32
def test_causal_topology_equals_its_definition(cin, joints):
    torch.manual_seed(0)
    m = CTRGC(cin, 16, causal_window=5)
    x = torch.randn(2, cin, 9, joints, requires_grad=True)
    a, alpha = torch.randn(joints, joints), torch.tensor(0.7)
    got = m._causal(x, a, alpha)
    ref = _definition(m, x, a, alpha)
    assert torch.allclose(got, ref, atol=1e-5 * ref.abs().max().item())
    g_got = torch.autograd.grad(got.square().sum(), [x, m.conv4.weight, m.conv1.weight])
    g_ref = torch.autograd.grad(ref.square().sum(), [x, m.conv4.weight, m.conv1.weight])
    for g1, g2 in zip(g_got, g_ref, strict=True):
        assert torch.allclose(g1, g2, rtol=1e-4, atol=1e-4 * g2.abs().max().item())


def test_a_factorized_conv4_takes_the_plain_path():
    torch.manual_seed(0)
    m = CTRGC(64, 16, causal_window=5)
    x, a, alpha = torch.randn(1, 64, 6, 20), torch.randn(20, 20), torch.tensor(0.5)
    ref = _definition(m, x, a, alpha)
    w = m.conv4.weight.detach()
    first = nn.Conv2d(m.rel_channels, m.rel_channels, 1, bias=False)
    second = nn.Conv2d(m.rel_channels, 16, 1)
    with torch.no_grad():
        first.weight.copy_(torch.eye(m.rel_channels).reshape(m.rel_channels, m.rel_channels, 1, 1))
        second.weight.copy_(w)
        second.bias.copy_(m.conv4.bias)
    m.conv4 = nn.Sequential(first, second)  # what a rank split of conv4 looks like
    assert torch.allclose(m._causal(x, a, alpha), ref, atol=1e-5 * ref.abs().max().item())


@pytest.mark.parametrize("factorized_conv3", [False, True])
def test_static_topology_subsets_in_one_product_equal_the_official_sum(factorized_conv3):
    """UnitGCN's static form runs its subsets as one stacked product; it must equal the official
    per-subset sum x3_s @ (conv4(tanh(conv1(s) - conv2(s))) * alpha + A_s)^T, with s the learned
    input, values and gradients (also when conv3 is factorized and cannot be stacked)."""
    from edgeskel.models.ctrgcn import UnitGCN
    from edgeskel.models.lowrank import LowRankConv1x1

    torch.manual_seed(0)
    unit = UnitGCN(16, 24, torch.rand(3, 20, 20), static_topology=True)
    unit.alpha.data.fill_(0.7)
    if factorized_conv3:
        unit.convs[1].conv3 = LowRankConv1x1(16, 24, 4)
    x = torch.randn(2, 16, 7, 20, requires_grad=True)

    def official(x: torch.Tensor) -> torch.Tensor:
        y = 0
        for i, c in enumerate(unit.convs):
            src = c.static_input[None, :, None, :]
            rel = torch.tanh(c.conv1(src).mean(-2).unsqueeze(-1) - c.conv2(src).mean(-2).unsqueeze(-2))
            y = y + torch.einsum("ncuv,nctv->nctu", c.conv4(rel) * unit.alpha + unit.PA[i], c.conv3(x))
        return unit.relu(unit.bn(y) + unit.down(x))

    got, ref = unit(x), official(x)
    assert torch.allclose(got, ref, atol=1e-5 * ref.abs().max().item())
    params = [x, unit.convs[0].static_input, unit.convs[2].conv1.weight, unit.alpha]
    for g1, g2 in zip(torch.autograd.grad(got.square().sum(), params), torch.autograd.grad(ref.square().sum(), params),
                      strict=True):
        assert torch.allclose(g1, g2, rtol=1e-4, atol=1e-4 * g2.abs().max().item())
