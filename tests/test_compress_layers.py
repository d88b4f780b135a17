"""Layer-level tests of edgeskel.compress: exactness at full rank, error vs rank, whitening, config."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
from pydantic import ValidationError

from edgeskel.compress import CompressionConfig
from edgeskel.compress import decompose as D
from edgeskel.compress.datasvd import collect_input_stats, whitening_factor
from edgeskel.compress.policies import round_rank
from edgeskel.models.lowrank import LowRankConv1x1, LowRankConvK, LowRankLinear, Tucker2Conv, layer_kind

torch.manual_seed(0)


def _cases():
    """(module, method, full ranks, input) for every factorized kind."""
    g = torch.Generator().manual_seed(1)
    return {
        "linear": (nn.Linear(24, 16), "svd", {"rank": 16}, torch.randn(3, 7, 24, generator=g)),
        "conv1x1_stride_pad": (
            nn.Conv2d(16, 24, 1, stride=2, padding=1),
            "svd",
            {"rank": 16},
            torch.randn(2, 16, 9, 5, generator=g),
        ),
        "conv1x1_grouped": (nn.Conv2d(16, 32, 1, groups=4), "svd", {"rank": 4}, torch.randn(2, 16, 8, 5, generator=g)),
        "conv9x1_svd": (
            nn.Conv2d(8, 12, (9, 1), stride=(2, 1), padding=(4, 0)),
            "svd",
            {"rank": 12},
            torch.randn(2, 8, 16, 5, generator=g),
        ),
        "conv9x1_svd_dilated": (
            nn.Conv2d(8, 12, (3, 1), padding=(2, 0), dilation=(2, 1)),
            "svd",
            {"rank": 12},
            torch.randn(2, 8, 16, 5, generator=g),
        ),
        "conv9x1_tucker2": (
            nn.Conv2d(8, 12, (9, 1), stride=(2, 1), padding=(4, 0)),
            "tucker2",
            {"r_in": 8, "r_out": 12},
            torch.randn(2, 8, 16, 5, generator=g),
        ),
    }


@pytest.mark.parametrize("case", list(_cases()))
def test_full_rank_reproduces_original(case):
    module, method, ranks, x = _cases()[case]
    new, rec = D.factorize(module, method, ranks)
    assert isinstance(new, (LowRankLinear, LowRankConv1x1, LowRankConvK, Tucker2Conv))
    with torch.no_grad():
        ref, out = module(x), new(x)
    assert out.shape == ref.shape
    assert (out - ref).abs().max().item() < 1e-5
    assert torch.allclose(rec, module.weight.double(), atol=1e-10)
    # only standard layers inside
    assert all(type(m) in (nn.Linear, nn.Conv2d) for m in new.children())


def test_stable_state_dict_keys():
    new, _ = D.factorize(nn.Conv2d(8, 12, (9, 1), padding=(4, 0)), "tucker2", {"r_in": 4, "r_out": 4})
    assert sorted(new.state_dict()) == ["core.weight", "down.weight", "up.bias", "up.weight"]
    new, _ = D.factorize(nn.Linear(8, 8, bias=False), "svd", {"rank": 2})
    assert sorted(new.state_dict()) == ["down.weight", "up.weight"]


@pytest.mark.parametrize("case", ["linear", "conv1x1_grouped", "conv9x1_svd", "conv9x1_tucker2"])
def test_error_falls_monotonically_with_rank(case):
    module, method, full, x = _cases()[case]
    ref = module(x).detach()
    weight_errs, out_errs = [], []
    for r in range(1, max(full.values()) + 1):
        ranks = {"r_in": min(r, full["r_in"]), "r_out": min(r, full["r_out"])} if method == "tucker2" else {"rank": r}
        new, rec = D.factorize(module, method, ranks)
        weight_errs.append(D.errors(module, layer_kind(module), rec, None)[0])
        out_errs.append(float((new(x).detach() - ref).norm()))
    assert all(b <= a + 1e-9 for a, b in zip(weight_errs, weight_errs[1:], strict=False)), weight_errs
    assert weight_errs[0] > 0.1 and weight_errs[-1] < 1e-6
    assert out_errs[0] > out_errs[-1]


def test_round_rank_multiples_and_limits():
    assert round_rank(13.0, 8, 64) == 16
    assert round_rank(11.9, 8, 64) == 8
    assert round_rank(2.0, 8, 64) == 8  # at least one step
    assert round_rank(70.0, 8, 64) == 64  # never above full rank
    assert round_rank(3.0, 8, 3) == 3  # full rank smaller than one step
    assert round_rank(5.0, 1, 64) == 5


def _correlated(n: int, d: int, seed: int) -> torch.Tensor:
    """Inputs with a strongly anisotropic covariance (few dominant directions)."""
    g = torch.Generator().manual_seed(seed)
    mix = torch.randn(d, d, generator=g) * torch.logspace(0, -3, d)[:, None]
    return torch.randn(n, d, generator=g) @ mix


def test_whitened_svd_beats_plain_on_activation_error_linear():
    lin = nn.Linear(32, 24)
    x = _correlated(2048, 32, 3)
    cov = (x.double().T @ x.double()) / x.shape[0]
    chol = whitening_factor(cov)
    for r in (4, 8, 16):
        _, rec_plain = D.factorize(lin, "svd", {"rank": r})
        new_w, rec_white = D.factorize(lin, "svd", {"rank": r}, [chol])
        _, act_plain = D.errors(lin, "linear", rec_plain, cov)
        rel_w, act_white = D.errors(lin, "linear", rec_white, cov)
        assert act_white < 0.8 * act_plain, (r, act_white, act_plain)
        # the report's activation error is the real relative output error
        with torch.no_grad():
            y, yr = lin(x) - lin.bias, new_w(x) - lin.bias
        direct = float((y - yr).norm() / y.norm())
        assert abs(direct - act_white) < 1e-4


def test_im2col_stats_match_real_conv_output_error():
    """Covariance from hooks over unfolded patches gives exactly the conv output error (ordering check)."""
    conv = nn.Conv2d(6, 10, (5, 1), stride=(2, 1), padding=(2, 0))
    model = nn.Sequential(conv)
    g = torch.Generator().manual_seed(4)
    mix = torch.randn(6, 6, generator=g)
    calib = [torch.einsum("nctv,cd->ndtv", torch.randn(2, 6, 12, 4, generator=g), mix) for _ in range(2)]
    covs = collect_input_stats(model, ["0"], calib, max_rows=10**6)
    chol = whitening_factor(covs["0"])
    new, rec = D.factorize(conv, "svd", {"rank": 4}, [chol])
    _, act = D.errors(conv, "conv_k", rec, covs["0"])
    with torch.no_grad():
        num = sum(float(((conv(x) - new(x)) ** 2).sum()) for x in calib)
        den = sum(float(((conv(x) - conv.bias[:, None, None]) ** 2).sum()) for x in calib)
    assert abs((num / den) ** 0.5 - act) < 1e-4
    _, rec_plain = D.factorize(conv, "svd", {"rank": 4})
    assert act < D.errors(conv, "conv_k", rec_plain, covs["0"])[1]


def test_position_subsampling_bounds_rows_and_is_deterministic():
    conv = nn.Conv2d(4, 4, (3, 1), padding=(1, 0))
    calib = [torch.randn(2, 4, 16, 5)]
    a = collect_input_stats(nn.Sequential(conv), ["0"], calib, max_rows=32, seed=7)["0"]
    b = collect_input_stats(nn.Sequential(conv), ["0"], calib, max_rows=32, seed=7)["0"]
    full = collect_input_stats(nn.Sequential(conv), ["0"], calib, max_rows=10**6)["0"]
    assert torch.equal(a, b)
    assert not torch.allclose(a, full)  # really subsampled
    assert a.shape == (12, 12)


def test_whitening_survives_rank_deficient_inputs():
    x = torch.randn(100, 3).double() @ torch.randn(3, 16).double()  # rank 3 covariance
    chol = whitening_factor(x.T @ x / 100)
    assert torch.isfinite(chol).all()


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"policy": "fixed", "bogus": 1}, "bogus"),
        ({"ratio": 0.0}, "ratio"),
        ({"ratio": 1.5}, "ratio"),
        ({"energy": -0.1}, "energy"),
        ({"budget": 2}, "budget"),
        ({"rank_multiple": 0}, "rank_multiple"),
        ({"policy": "magic"}, "policy"),
        ({"temporal_method": "cp"}, "temporal_method"),
        ({"target": "latency"}, "target"),
        ({"min_saving": 1.0}, "min_saving"),
    ],
)
def test_bad_config_names_the_field(kwargs, field):
    with pytest.raises(ValidationError) as info:
        CompressionConfig(**kwargs)
    assert field in str(info.value)


def test_config_defaults_are_recorded():
    cfg = CompressionConfig()
    dump = cfg.model_dump()
    assert dump["policy"] == "fixed" and dump["rank_multiple"] == 8 and "fc" in dump["exclude"]
    assert CompressionConfig.model_validate(dump) == cfg


def test_same_padding_conv_statistics_match_output_error():
    conv = nn.Conv2d(4, 6, (4, 1), padding="same")  # even kernel: asymmetric padding
    calib = [torch.randn(2, 4, 10, 3)]
    cov = collect_input_stats(nn.Sequential(conv), ["0"], calib, max_rows=10**6)["0"]
    new, rec = D.factorize(conv, "svd", {"rank": 2})
    _, act = D.errors(conv, "conv_k", rec, cov)
    with torch.no_grad():
        y = conv(calib[0]) - conv.bias[:, None, None]
        direct = float((conv(calib[0]) - new(calib[0])).norm() / y.norm())
    assert abs(direct - act) < 1e-4
