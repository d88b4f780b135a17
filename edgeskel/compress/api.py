"""Public API: compress a model with low-rank factorization, and rebuild a compressed structure.

`compress_model` works on a deep copy: find Linear / Conv2d layers (include/exclude globs,
size filter), profile them with one forward of zeros (sizes for FLOPs), optionally gather
calibration input statistics (activation error; whitening when data-aware), let the rank
policy pick methods and ranks, factorize, and swap the modules in. The returned report
holds the policy, a JSON-serialisable plan and per-layer numbers; `apply_plan(model, plan)`
rebuilds the same structure on a fresh model so a compressed checkpoint reloads strictly.
"""

from __future__ import annotations

import copy
import fnmatch
from typing import Any

import torch
import torch.nn as nn

from edgeskel.compress import decompose as D
from edgeskel.compress.config import CompressionConfig
from edgeskel.compress.costs import LayerInfo, count_flops, count_params, profile_layers
from edgeskel.compress.datasvd import collect_input_stats, whitening_factor
from edgeskel.compress.policies import (
    Decision,
    LayerLatency,
    Spectra,
    allocate_budget,
    allocate_latency,
    choose_method,
    worth_it,
)
from edgeskel.errors import ConfigError
from edgeskel.models.lowrank import (
    PLAN_FORMAT,
    layer_kind,
    layer_shape,
    replace_module,
    unsupported_reason,
)


def compress_model(
    model: nn.Module,
    cfg: CompressionConfig,
    input_shape: tuple[int, ...],
    calib: list[torch.Tensor] | None = None,
    latency: LayerLatency | None = None,
) -> tuple[nn.Module, dict[str, Any]]:
    """Factorize a deep copy of `model`; returns (compressed model, report). See module docstring.
    `latency`: the measured layer-latency table policy 'latency' uses (default: one built from
    the config's latency_* fields, cached in `latency_cache`)."""
    if cfg.data_aware and not calib:
        raise ConfigError("compression: data_aware=true needs calibration batches (calib), none were given")
    work = copy.deepcopy(model)
    calib = list(calib[: cfg.calib_batches]) if calib else None
    infos, entries = _select_layers(work, cfg)
    params_before = count_params(work)
    flops_before = profile_layers(work, infos, tuple(input_shape))
    for info in list(infos):
        if info.calls == 0:
            entries[info.name].update(
                status="skipped", reason="not called in forward (weights used directly or dead code)"
            )
            infos.remove(info)
    covs = collect_input_stats(work, [i.name for i in infos], calib, cfg.max_positions, cfg.seed) if calib else {}

    fact = _Factorizer(cfg, covs)
    specs = {i.name: fact.spectra(i) for i in infos}
    decisions: dict[str, Decision | None] = {i.name: choose_method(i, specs[i.name], cfg, fact.measure) for i in infos}
    budget_summary = None
    if cfg.policy == "budget":
        total_before = params_before if cfg.target == "params" else flops_before
        decisions, budget_summary = allocate_budget(infos, specs, decisions, cfg, total_before)
    latency_summary = None
    if cfg.policy == "latency":
        table = latency if latency is not None else _default_latency_table(cfg)
        table.record_inputs(work, [i.name for i in infos], tuple(input_shape))
        methods = {n: d for n, d in decisions.items() if d is not None}
        decisions, latency_summary = allocate_latency(infos, specs, methods, cfg, table)

    plan_layers = []
    for info in infos:
        e = entries[info.name]
        e["params_before"], e["flops_before"] = info.dense_cost()
        e["full_rank"] = info.full_rank()
        d = decisions[info.name]
        if d is None:
            why = "budget allocation kept this layer dense (cheapest error per saving elsewhere)"
            if latency_summary is not None:
                lat = methods[info.name].notes.get("latency", {})
                why = f"latency policy kept this layer dense: {lat.get('reason', '')}"
                e["notes"] = {"latency": lat}
            e.update(status="skipped", reason=why)
            e["params_after"], e["flops_after"] = e["params_before"], e["flops_before"]
            continue
        reason = worth_it(info, d.method, d.ranks, cfg.min_saving)
        if reason is not None:
            e.update(status="skipped", reason=reason, method=d.method, **_rank_fields(d.ranks))
            e["params_after"], e["flops_after"] = e["params_before"], e["flops_before"]
            continue
        new, rec = fact.build(info, d.method, d.ranks)
        new.train(info.module.training)
        replace_module(work, info.name, new)
        rel, act = D.errors(info.module, info.kind, rec, covs.get(info.name))
        e["params_after"], e["flops_after"] = info.cost(d.method, d.ranks)
        e.update(status="factorized", reason="", method=d.method, **_rank_fields(d.ranks), rel_error=rel)
        if d.method == "tucker2":
            e["full_rank"] = {"r_in": info.in_ch, "r_out": info.out_ch}
        e["data_aware"] = bool(cfg.data_aware and d.method == "svd")
        if act is not None:
            e["act_error"] = act
        if d.notes:
            e["notes"] = d.notes
        plan_layers.append(
            {"name": info.name, "kind": info.kind, "method": d.method, "ranks": dict(d.ranks), "shape": e["shape"]}
        )

    params_after, flops_after = count_params(work), count_flops(work, tuple(input_shape))
    totals = {
        "params_before": params_before,
        "params_after": params_after,
        "param_ratio": params_after / params_before if params_before else 1.0,
        "flops_before": flops_before,
        "flops_after": flops_after,
        "flop_ratio": flops_after / flops_before if flops_before else 1.0,
        "flops_convention": "2 x MACs of conv/linear/matmul ops for one forward of input_shape (FlopCounterMode)",
        "input_shape": list(input_shape),
    }
    if budget_summary is not None:
        achieved = params_after if cfg.target == "params" else flops_after
        budget_summary.update(achieved=achieved, met=bool(achieved <= budget_summary["limit"]))
    report = {
        "policy": cfg.model_dump(),
        "plan": {"format": PLAN_FORMAT, "layers": plan_layers},
        "layers": list(entries.values()),
        "totals": totals,
        "budget": budget_summary,
        "latency": latency_summary,
        "calibration": {"batches": len(calib) if calib else 0, "data_aware": cfg.data_aware},
    }
    return work, report


def _default_latency_table(cfg: CompressionConfig) -> LayerLatency:
    from edgeskel.compress.latency_table import LatencyTable

    if cfg.latency_on == "device":
        raise ConfigError(f"compression: latency_on 'device' times layers on device {cfg.latency_profile!r} over SSH; "
                          "run it with that device profile (make export DEVICE=..., edgeskel tune --device ...)")
    return LatencyTable.from_config(cfg)


# --------------------------------------------------------------------------------------------


class _Factorizer:
    """Holds calibration statistics and caches decompositions (auto compares, then reuses)."""

    def __init__(self, cfg: CompressionConfig, covs: dict[str, torch.Tensor]):
        self.cfg, self.covs = cfg, covs
        self._chols: dict[str, list] = {}
        self._cache: dict[tuple, tuple[nn.Sequential, torch.Tensor]] = {}

    def chols(self, info: LayerInfo) -> list:
        if info.name not in self._chols:
            cov = self.covs.get(info.name) if self.cfg.data_aware else None
            fn = lambda c: whitening_factor(c, self.cfg.damping)  # noqa: E731
            self._chols[info.name] = D.group_chols(cov, fn, info.module, info.kind)
        return self._chols[info.name]

    def spectra(self, info: LayerInfo) -> Spectra:
        svd = D.svd_spectra(D.group_matrices(info.module, info.kind), self.chols(info))
        return Spectra(svd, D.mode_spectra(info.module) if info.kind == "conv_k" else None)

    def build(self, info: LayerInfo, method: str, ranks: dict[str, int]) -> tuple[nn.Sequential, torch.Tensor]:
        key = (info.name, method, tuple(sorted(ranks.items())))
        if key not in self._cache:
            chols = self.chols(info) if method == "svd" else None
            new, rec = D.factorize(info.module, method, ranks, chols, self.cfg.seed)
            self._cache[key] = (new, rec)
        return self._cache[key]

    def measure(self, info: LayerInfo, method: str, ranks: dict[str, int]) -> float:
        """Relative error used to compare methods: activation-space if calibrated, else weight-space."""
        _, rec = self.build(info, method, ranks)
        rel, act = D.errors(info.module, info.kind, rec, self.covs.get(info.name))
        return act if act is not None else rel


def _select_layers(model: nn.Module, cfg: CompressionConfig) -> tuple[list[LayerInfo], dict[str, dict]]:
    """Candidate layers plus a report entry for every Linear/Conv2d (skipped ones with a reason)."""
    counts: dict[int, int] = {}
    for _, m in model.named_modules(remove_duplicate=False):
        counts[id(m)] = counts.get(id(m), 0) + 1
    infos, entries = [], {}
    for name, m in model.named_modules():
        kind = layer_kind(m)
        if kind is None or not name:
            continue
        e = {"name": name, "kind": kind, "shape": layer_shape(m), "status": "skipped", "reason": ""}
        entries[name] = e
        nparams = m.weight.numel()
        if not any(fnmatch.fnmatchcase(name, p) for p in cfg.include):
            e["reason"] = f"not matched by include {cfg.include}"
        elif any(fnmatch.fnmatchcase(name, p) for p in cfg.exclude):
            e["reason"] = f"matched by exclude {[p for p in cfg.exclude if fnmatch.fnmatchcase(name, p)]}"
        elif nparams < cfg.min_params:
            e["reason"] = f"{nparams} weights < min_params {cfg.min_params}"
        elif counts[id(m)] > 1:
            e["reason"] = "module is shared under several names"
        elif (why := unsupported_reason(m)) is not None:
            e["reason"] = why
        else:
            e["reason"] = None
            if kind == "linear":
                io = (m.in_features, m.out_features, 1, 1)
            else:
                io = (m.in_channels, m.out_channels, m.groups, m.kernel_size[0] * m.kernel_size[1])
            infos.append(LayerInfo(name, m, kind, io[0], io[1], io[2], io[3], m.bias is not None))
    for e in entries.values():
        if e["reason"] is None:
            e["reason"] = ""
    return infos, entries


def _rank_fields(ranks: dict[str, int]) -> dict[str, Any]:
    return {"rank": ranks["rank"]} if "rank" in ranks else {"ranks": dict(ranks)}


