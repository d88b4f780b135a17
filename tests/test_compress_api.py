"""Model-level tests of edgeskel.compress: policies, budgets, data-aware, plans, determinism, export."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn as nn

from edgeskel.compress import CompressionConfig, apply_plan, compress_model
from edgeskel.compress.costs import count_flops
from edgeskel.errors import CheckpointError, ConfigError

SHAPE = (1, 3, 16, 5, 2)  # (N, C, T, V, M)


class Aggregate(nn.Module):
    """Graph aggregation taking learnable parameters as forward arguments (as CTR-GCN does;
    this once broke FlopCounterMode under no_grad)."""

    def forward(self, x: torch.Tensor, a: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
        return x @ (a * alpha)


class TinyGCN(nn.Module):
    """GCN-like (N,C,T,V,M) -> logits: 1x1 convs, a grouped 1x1, a 9x1 temporal conv (stride 2, pad 4), Linears."""

    def __init__(self, c_in: int = 3, width: int = 32, v: int = 5, classes: int = 4):
        super().__init__()
        self.data_bn = nn.BatchNorm1d(c_in * v)
        self.embed = nn.Conv2d(c_in, width, 1)
        self.gcn = nn.Conv2d(width, 2 * width, 1)
        self.grouped = nn.Conv2d(2 * width, 2 * width, 1, groups=2)
        self.tcn = nn.Conv2d(2 * width, 2 * width, (9, 1), stride=(2, 1), padding=(4, 0))
        self.bn = nn.BatchNorm2d(2 * width)
        self.mlp = nn.Sequential(nn.Linear(2 * width, 48), nn.ReLU(), nn.Linear(48, 40))
        self.fc = nn.Linear(40, classes)
        self.A = nn.Parameter(torch.stack([torch.eye(v), torch.full((v, v), 1.0 / v)]))
        self.alpha = nn.Parameter(torch.full((1,), 0.5))
        self.aggregate = nn.ModuleList([Aggregate(), Aggregate()])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, t, v, m = x.shape
        x = x.permute(0, 4, 3, 1, 2).reshape(n * m, v * c, t)
        x = self.data_bn(x).reshape(n * m, v, c, t).permute(0, 2, 3, 1)
        x = torch.relu(self.embed(x))
        x = self.gcn(x)
        x = sum(agg(x, self.A[i], self.alpha) for i, agg in enumerate(self.aggregate))  # model totals only
        x = torch.relu(self.grouped(x))
        x = torch.relu(self.bn(self.tcn(x)))
        x = x.mean((2, 3)).reshape(n, m, -1).mean(1)
        return self.fc(self.mlp(x))


def _model(seed: int = 0) -> TinyGCN:
    torch.manual_seed(seed)
    m = TinyGCN()
    with torch.no_grad():  # non-trivial BN statistics
        m.bn.running_mean.uniform_(-0.1, 0.1)
        m.bn.running_var.uniform_(0.5, 1.5)
    return m.eval()


def _calib(n: int = 3, seed: int = 5) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    mix = torch.tensor([[1.0, 0.9, 0.8], [0.0, 0.3, 0.2], [0.0, 0.0, 0.05]])  # correlated channels
    return [torch.einsum("nctvm,cd->ndtvm", torch.randn(4, 3, 16, 5, 2, generator=g), mix) for _ in range(n)]


def _layers(report: dict) -> dict[str, dict]:
    return {e["name"]: e for e in report["layers"]}


def test_fixed_policy_ranks_skips_and_totals():
    model = _model()
    cfg = CompressionConfig(policy="fixed", ratio=0.3, min_params=0, temporal_method="svd")
    cm, rep = compress_model(model, cfg, SHAPE)
    L = _layers(rep)
    assert L["gcn"]["status"] == "factorized" and L["gcn"]["rank"] == 8  # 0.3*32 -> 9.6 -> 8
    assert L["tcn"]["rank"] == 16 and L["tcn"]["method"] == "svd"  # 0.3*64 -> 19.2 -> 16
    assert L["mlp.0"]["rank"] == 16  # 0.3*48 = 14.4 -> 16
    # embed (3 -> 32) has full rank 3: a factorization can never save anything
    assert L["embed"]["status"] == "skipped" and "no saving" in L["embed"]["reason"]
    assert L["fc"]["status"] == "skipped" and "exclude" in L["fc"]["reason"]
    for e in rep["layers"]:
        if e["status"] == "factorized":
            assert e["rank"] % 8 == 0 and e["rank"] <= e["full_rank"]
            assert e["params_after"] < e["params_before"] and e["flops_after"] < e["flops_before"]
            assert 0 < e["rel_error"] < 1
    # analytic per-layer FLOPs agree with FlopCounterMode on the whole model
    t = rep["totals"]
    saved_f = sum(e["flops_before"] - e["flops_after"] for e in rep["layers"] if e["status"] == "factorized")
    saved_p = sum(e["params_before"] - e["params_after"] for e in rep["layers"] if e["status"] == "factorized")
    assert t["flops_before"] - t["flops_after"] == saved_f > 0
    assert t["params_before"] - t["params_after"] == saved_p > 0
    assert t["flops_after"] == count_flops(cm, SHAPE)
    assert json.loads(json.dumps(rep)) == rep  # report is JSON-serialisable as is
    # the original model is untouched
    assert type(model.tcn) is nn.Conv2d


def test_skip_when_no_saving_with_reason():
    cfg = CompressionConfig(policy="fixed", ratio=0.5, min_params=0, include=["grouped"])
    _, rep = compress_model(_model(), cfg, SHAPE)
    e = _layers(rep)["grouped"]  # 2 groups of 32x32 at rank 16: 16*(64+64) == 64*32 -> no saving
    assert e["status"] == "skipped" and "no saving" in e["reason"] and e["rank"] == 16
    assert rep["plan"]["layers"] == [] and rep["totals"]["param_ratio"] == 1.0
    assert "not matched by include" in _layers(rep)["gcn"]["reason"]


def test_min_saving_and_min_params_filters():
    cfg = CompressionConfig(policy="fixed", ratio=0.5, min_params=5000, min_saving=0.3, temporal_method="svd")
    _, rep = compress_model(_model(), cfg, SHAPE)
    L = _layers(rep)
    assert "min_params" in L["gcn"]["reason"]  # 2048 weights
    assert L["tcn"]["status"] == "factorized"  # rank 32: 32*(576+64) vs 64*576 saves 44%
    cfg = CompressionConfig(policy="fixed", ratio=0.5, min_params=5000, min_saving=0.5, temporal_method="svd")
    _, rep = compress_model(_model(), cfg, SHAPE)
    assert _layers(rep)["tcn"]["status"] == "skipped" and "50%" in _layers(rep)["tcn"]["reason"]


def _step_up_cost(e: dict, col: str, multiple: int, min_saving: float) -> int:
    """Cost of giving a factorized SVD layer one more rank step (or of making it dense again)."""
    r = e["rank"]
    bias = e["shape"][0]
    per_p = (e["params_after"] - bias) // r
    per_f = e["flops_after"] // r
    nxt_p, nxt_f = e["params_after"] + multiple * per_p, e["flops_after"] + multiple * per_f
    worth = (
        r + multiple < e["full_rank"] and nxt_p < e["params_before"] and nxt_f <= (1 - min_saving) * e["flops_before"]
    )
    if worth:
        return multiple * (per_p if col == "params" else per_f)
    return e[f"{col}_before"] - e[f"{col}_after"]


@pytest.mark.parametrize("target", ["params", "flops"])
@pytest.mark.parametrize("budget", [0.35, 0.6, 0.9])
def test_budget_met_within_one_rank_step(target, budget):
    cfg = CompressionConfig(
        policy="budget", target=target, budget=budget, min_params=0, temporal_method="svd", rank_multiple=8
    )
    cm, rep = compress_model(_model(), cfg, SHAPE)
    t = rep["totals"]
    before, after = t[f"{target}_before"], t[f"{target}_after"]
    limit = budget * before
    assert after <= limit
    fact = [e for e in rep["layers"] if e["status"] == "factorized"]
    assert fact
    step = min(_step_up_cost(e, target, 8, cfg.min_saving) for e in fact)
    assert limit - after < step, (limit - after, step)
    assert rep["budget"]["met"] and rep["budget"]["achieved"] == after
    for e in fact:
        assert e["rank"] % 8 == 0


def test_budget_with_tucker2_and_auto_is_met():
    for method in ("tucker2", "auto"):
        cfg = CompressionConfig(policy="budget", target="flops", budget=0.5, min_params=0, temporal_method=method)
        _, rep = compress_model(_model(), cfg, SHAPE)
        assert rep["totals"]["flops_after"] <= 0.5 * rep["totals"]["flops_before"]
        assert _layers(rep)["tcn"]["status"] == "factorized"


def test_infeasible_budget_raises_config_error():
    cfg = CompressionConfig(policy="budget", target="params", budget=0.05, min_params=0)
    with pytest.raises(ConfigError, match="infeasible"):
        compress_model(_model(), cfg, SHAPE)


def test_energy_policy_keeps_more_rank_for_more_energy():
    ranks = []
    for energy in (0.5, 0.8, 0.95):
        cfg = CompressionConfig(
            policy="energy", energy=energy, min_params=0, min_saving=0.0, temporal_method="svd", rank_multiple=4
        )
        _, rep = compress_model(_model(), cfg, SHAPE)
        ranks.append(_layers(rep)["tcn"].get("rank"))
    assert ranks[0] < ranks[1] < ranks[2]


def test_data_aware_beats_plain_svd_on_activation_error():
    calib = _calib()
    base = dict(policy="fixed", ratio=0.25, min_params=0, temporal_method="svd")
    _, plain = compress_model(_model(), CompressionConfig(**base), SHAPE, calib)
    cm, aware = compress_model(_model(), CompressionConfig(**base, data_aware=True), SHAPE, calib)
    P, A = _layers(plain), _layers(aware)
    compared = 0
    for name, e in A.items():
        if e["status"] == "factorized":
            assert e["rank"] == P[name]["rank"] and e["data_aware"]
            assert e["act_error"] < P[name]["act_error"], name
            compared += 1
    assert compared >= 2
    assert aware["calibration"] == {"batches": 3, "data_aware": True}


def test_data_aware_without_calibration_is_a_config_error():
    with pytest.raises(ConfigError, match="calib"):
        compress_model(_model(), CompressionConfig(data_aware=True), SHAPE)


def test_auto_temporal_method_records_the_comparison():
    cfg = CompressionConfig(policy="fixed", ratio=0.5, min_params=0, temporal_method="auto")
    _, rep = compress_model(_model(), cfg, SHAPE)
    e = _layers(rep)["tcn"]
    auto = e["notes"]["auto"]
    errs = {m: auto[m]["error"] for m in ("svd", "tucker2")}
    assert e["method"] == min(errs, key=errs.get)
    assert auto["tucker2"]["ranks"]["r_out"] % 8 == 0


@pytest.mark.parametrize("method", ["svd", "tucker2"])
def test_apply_plan_round_trip_reproduces_outputs_exactly(method):
    cfg = CompressionConfig(policy="fixed", ratio=0.5, min_params=0, temporal_method=method)
    cm, rep = compress_model(_model(), cfg, SHAPE, _calib(1))
    plan = json.loads(json.dumps(rep["plan"]))  # what a checkpoint stores
    fresh = apply_plan(_model(seed=123), plan)
    fresh.load_state_dict(cm.state_dict(), strict=True)
    fresh.eval()
    x = torch.randn(2, 3, 16, 5, 2)
    with torch.no_grad():
        assert torch.equal(fresh(x), cm(x))
    assert _layers(rep)["tcn"]["method"] == method
    # the other accepted plan forms
    apply_plan(_model(), plan["layers"]).load_state_dict(cm.state_dict(), strict=True)
    apply_plan(_model(), {"plan": plan}).load_state_dict(cm.state_dict(), strict=True)


def test_apply_plan_rejects_plans_that_do_not_fit():
    cfg = CompressionConfig(policy="fixed", ratio=0.5, min_params=0)
    _, rep = compress_model(_model(), cfg, SHAPE)
    bad = json.loads(json.dumps(rep["plan"]))
    bad["layers"][0]["name"] = "nope"
    with pytest.raises(CheckpointError, match="nope"):
        apply_plan(_model(), bad)
    wrong = TinyGCN(width=16)
    with pytest.raises(CheckpointError, match="shape"):
        apply_plan(wrong, rep["plan"])


def test_determinism_same_inputs_same_ranks_and_weights():
    cfg = CompressionConfig(
        policy="budget", target="flops", budget=0.5, min_params=0, data_aware=True, temporal_method="auto"
    )
    runs = [compress_model(_model(), cfg, SHAPE, _calib()) for _ in range(2)]
    (m1, r1), (m2, r2) = runs
    assert json.dumps(r1, sort_keys=True) == json.dumps(r2, sort_keys=True)
    s1, s2 = m1.state_dict(), m2.state_dict()
    assert s1.keys() == s2.keys() and all(torch.equal(s1[k], s2[k]) for k in s1)


def test_tensorly_backend_is_left_alone():
    import tensorly as tl

    before = tl.get_backend()
    compress_model(_model(), CompressionConfig(min_params=0, temporal_method="tucker2"), SHAPE)
    assert tl.get_backend() == before


def test_compressed_model_exports_to_onnx_with_standard_ops(tmp_path):
    onnx = pytest.importorskip("onnx")
    cfg = CompressionConfig(policy="fixed", ratio=0.5, min_params=0, temporal_method="tucker2")
    cm, rep = compress_model(_model(), cfg, SHAPE)
    assert _layers(rep)["tcn"]["status"] == "factorized"
    path = tmp_path / "m.onnx"
    batch = torch.export.Dim("batch")
    torch.onnx.export(cm, (torch.randn(2, 3, 16, 5, 2),), str(path), dynamic_shapes=({0: batch},))
    graph = onnx.load(str(path)).graph
    ops = [n.op_type for n in graph.node]
    assert "Einsum" not in ops
    conv_like = {"Conv", "Gemm", "MatMul"}
    plumbing = {"Add", "Mul", "Relu", "Reshape", "Transpose", "ReduceMean", "BatchNormalization", "Constant", "Shape"}
    allowed = conv_like | plumbing
    assert set(ops) <= allowed, set(ops) - allowed
    # tucker2 tcn = 3 convs, gcn = 2, grouped stays dense (no saving), embed dense: 1 + 2 + 1 + 3
    assert ops.count("Conv") == 7
