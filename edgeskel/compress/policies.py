"""Rank policies: decide, per layer, the factorization method and ranks.

* fixed:  rank = ratio x full rank.
* energy: smallest rank keeping `energy` of sum(sigma^2) (whitened spectrum when data-aware;
          for Tucker-2 per mode unfolding).
* budget: the whole model must keep <= `budget` of its params or FLOPs. Greedy: starting
          dense, repeatedly take the cheapest move (smallest estimated error increase per unit
          of cost saved) to any lower rank of any layer until the budget is met; then add
          back single rank steps (largest error decrease per cost) while they still fit, so
          the result lands within one rank step under the budget. Error estimates are
          normalised tail energies of the spectra (activation-space when calibration
          statistics exist, since the whitened spectrum *is* the output error).
* latency: per layer, the fastest admissible form MEASURED on the target backend
          (compress/latency_table.py): admissible = dense, or a rank whose estimated error keeps
          at least `energy` (the accuracy constraint) and that saves parameters. A factorized
          form must measure at least `latency_min_gain` faster than dense, else the layer stays
          dense (one conv becoming two can be slower at batch 1 although it has fewer FLOPs).
All ranks are multiples of `rank_multiple` (at least one step, never above full rank).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch

from edgeskel.compress.config import CompressionConfig
from edgeskel.compress.costs import LayerInfo
from edgeskel.errors import ConfigError


@dataclass
class Spectra:
    """Singular values driving the policy for one layer."""

    svd: list[torch.Tensor]  # one per group
    modes: tuple[torch.Tensor, torch.Tensor] | None = None  # Tucker-2: (out-mode, in-mode)


@dataclass
class Decision:
    method: str
    ranks: dict[str, int]
    notes: dict = field(default_factory=dict)


def round_rank(x: float, multiple: int, full: int) -> int:
    """Nearest multiple of `multiple`, at least one step, never above `full`."""
    r = multiple * math.floor(x / multiple + 0.5)
    return int(min(full, max(multiple, r)))


def _tail(spectra: list[torch.Tensor], r: int) -> float:
    total = sum(float((s**2).sum()) for s in spectra)
    return sum(float((s[r:] ** 2).sum()) for s in spectra) / total if total > 0 else 0.0


def _energy_rank(spectra: list[torch.Tensor], energy: float, multiple: int, full: int) -> int:
    total = sum(float((s**2).sum()) for s in spectra)
    for r in range(1, full + 1):
        if total <= 0 or 1.0 - _tail(spectra, r) >= energy - 1e-12:
            return int(min(full, multiple * math.ceil(r / multiple)))
    return full


def estimated_error(info: LayerInfo, spec: Spectra, method: str, ranks: dict[str, int]) -> float:
    """Normalised squared error estimate (tail energy; HOSVD bound for Tucker-2)."""
    if method == "tucker2":
        assert spec.modes is not None
        return min(1.0, _tail([spec.modes[0]], ranks["r_out"]) + _tail([spec.modes[1]], ranks["r_in"]))
    return _tail(spec.svd, ranks["rank"])


def tied_tucker(info: LayerInfo, r_out: int, multiple: int) -> dict[str, int]:
    """Tucker-2 ranks from one output rank, the input rank scaled by in/out channels."""
    return {"r_in": round_rank(r_out * info.in_ch / info.out_ch, multiple, info.in_ch), "r_out": r_out}


def rank_grid(info: LayerInfo, method: str, multiple: int) -> list[dict[str, int]]:
    """Candidate ranks, highest first: multiples of `multiple` below full rank (or full if smaller)."""
    full = info.full_rank(method)
    rs = list(range(multiple * ((full - 1) // multiple), 0, -multiple)) or [full]
    if method == "tucker2":
        return [tied_tucker(info, r, multiple) for r in rs]
    return [{"rank": r} for r in rs]


def worth_it(info: LayerInfo, method: str, ranks: dict[str, int], min_saving: float) -> str | None:
    """None if factorizing saves params and at least `min_saving` of FLOPs, else the reason."""
    p0, f0 = info.dense_cost()
    p1, f1 = info.cost(method, ranks)
    if p1 >= p0 or f1 > (1.0 - min_saving) * f0:
        return (
            f"no saving at ranks {ranks}: params {p0} -> {p1}, FLOPs {f0} -> {f1} "
            f"(needs params down and >= {min_saving:.0%} fewer FLOPs)"
        )
    return None


def _base_ranks(info: LayerInfo, spec: Spectra, method: str, cfg: CompressionConfig) -> dict[str, int]:
    m = cfg.rank_multiple
    if method == "tucker2":
        if cfg.policy == "energy":
            assert spec.modes is not None
            return {
                "r_in": _energy_rank([spec.modes[1]], cfg.energy, m, info.in_ch),
                "r_out": _energy_rank([spec.modes[0]], cfg.energy, m, info.out_ch),
            }
        q = cfg.ratio if cfg.policy == "fixed" else cfg.budget
        return {"r_in": round_rank(q * info.in_ch, m, info.in_ch), "r_out": round_rank(q * info.out_ch, m, info.out_ch)}
    full = info.full_rank("svd")
    if cfg.policy == "energy":
        return {"rank": _energy_rank(spec.svd, cfg.energy, m, full)}
    q = cfg.ratio if cfg.policy == "fixed" else cfg.budget
    return {"rank": round_rank(q * full, m, full)}


Measure = Callable[[LayerInfo, str, dict[str, int]], float]


def choose_method(info: LayerInfo, spec: Spectra, cfg: CompressionConfig, measure: Measure) -> Decision:
    """Method + reference ranks. For 'auto' on k x 1 convs, decompose both ways at equal FLOPs
    (the largest Tucker-2 ranks not costing more than the SVD rank the policy would pick)
    and keep the one with the lower measured error."""
    if info.kind != "conv_k":
        return Decision("svd", _base_ranks(info, spec, "svd", cfg))
    if cfg.temporal_method != "auto":
        return Decision(cfg.temporal_method, _base_ranks(info, spec, cfg.temporal_method, cfg))
    svd_ranks = _base_ranks(info, spec, "svd", cfg)
    svd_flops = info.cost("svd", svd_ranks)[1]
    tucker = next(
        (t for t in rank_grid(info, "tucker2", cfg.rank_multiple) if info.cost("tucker2", t)[1] <= svd_flops), None
    )
    if tucker is None:
        return Decision("svd", svd_ranks, {"auto": "no Tucker-2 ranks fit the SVD cost"})
    e_svd, e_t = measure(info, "svd", svd_ranks), measure(info, "tucker2", tucker)
    notes = {"auto": {"svd": {"ranks": svd_ranks, "error": e_svd}, "tucker2": {"ranks": tucker, "error": e_t}}}
    return Decision("tucker2", tucker, notes) if e_t < e_svd else Decision("svd", svd_ranks, notes)


def allocate_budget(
    infos: list[LayerInfo],
    specs: dict[str, Spectra],
    methods: dict[str, Decision],
    cfg: CompressionConfig,
    total_before: int,
) -> tuple[dict[str, Decision | None], dict]:
    """Greedy sensitivity allocation of ranks under a whole-model params/FLOPs budget."""
    col = 0 if cfg.target == "params" else 1
    options: dict[str, list[tuple[dict[str, int] | None, int, float]]] = {}
    for info in infos:
        meth = methods[info.name].method
        opts: list[tuple[dict[str, int] | None, int, float]] = [(None, info.dense_cost()[col], 0.0)]
        for ranks in rank_grid(info, meth, cfg.rank_multiple):
            if worth_it(info, meth, ranks, cfg.min_saving) is None:
                opts.append((ranks, info.cost(meth, ranks)[col], estimated_error(info, specs[info.name], meth, ranks)))
        options[info.name] = opts
    target = cfg.budget * total_before
    cur = {info.name: 0 for info in infos}
    total = total_before

    while total > target:
        best = None
        for name, opts in options.items():
            c0, e0 = opts[cur[name]][1], opts[cur[name]][2]
            for j in range(cur[name] + 1, len(opts)):
                saved = c0 - opts[j][1]
                if saved > 0:
                    score = (opts[j][2] - e0) / saved
                    if best is None or score < best[0]:
                        best = (score, name, j)
        if best is None:
            minimum = total / total_before
            raise ConfigError(
                f"compression budget {cfg.budget} of {cfg.target} is infeasible: the smallest ranks keep "
                f"{minimum:.3f} (layers that cannot be factorized hold the rest); raise `budget` or widen `include`"
            )
        _, name, j = best
        total -= options[name][cur[name]][1] - options[name][j][1]
        cur[name] = j

    while True:  # add back single rank steps that still fit
        best = None
        for name, opts in options.items():
            i = cur[name]
            if i == 0:
                continue
            extra = opts[i - 1][1] - opts[i][1]
            if extra > 0 and total + extra <= target:
                score = (opts[i][2] - opts[i - 1][2]) / extra
                if best is None or score > best[0]:
                    best = (score, name, extra)
        if best is None:
            break
        _, name, extra = best
        cur[name] -= 1
        total += extra

    out: dict[str, Decision | None] = {}
    for info in infos:
        ranks = options[info.name][cur[info.name]][0]
        out[info.name] = (
            None if ranks is None else Decision(methods[info.name].method, ranks, dict(methods[info.name].notes))
        )
    summary = {
        "target": cfg.target,
        "budget": cfg.budget,
        "predicted_total": total,
        "total_before": total_before,
        "limit": target,
    }
    return out, summary


class LayerLatency(Protocol):
    """Measured latency of a layer's forms: {form key: ms}; see compress/latency_table.py."""

    def measure(self, info: LayerInfo, forms: list[tuple[str | None, dict[str, int] | None]]) -> dict[str, float]: ...

    def prefetch(self, requests: list[tuple[LayerInfo, list[tuple[str | None, dict[str, int] | None]]]]) -> None: ...

    def summary(self) -> dict[str, Any]: ...


def latency_candidates(info: LayerInfo, spec: Spectra, method: str, cfg: CompressionConfig) -> list[dict[str, int]]:
    """At most `latency_candidates` admissible ranks, spread from the largest to the smallest
    rank that still keeps `energy` (the smallest is always timed: it is usually the fastest)."""
    ok = [r for r in rank_grid(info, method, cfg.rank_multiple)
          if worth_it(info, method, r, cfg.min_saving) is None
          and estimated_error(info, spec, method, r) <= 1.0 - cfg.energy + 1e-12]
    k = cfg.latency_candidates
    if len(ok) <= k:
        return ok
    idx = sorted({round(i * (len(ok) - 1) / (k - 1)) for i in range(k)}) if k > 1 else [len(ok) - 1]
    return [ok[i] for i in idx]


def allocate_latency(infos: list[LayerInfo], specs: dict[str, Spectra], methods: dict[str, Decision],
                     cfg: CompressionConfig, table: LayerLatency) -> tuple[dict[str, Decision | None], dict]:
    """Per layer: dense unless an admissible factorized form measures >= latency_min_gain
    faster; among forms within 2% of the fastest, the largest rank (most accurate) wins."""
    from edgeskel.compress.latency_table import form_key

    out: dict[str, Decision | None] = {}
    dense_total = chosen_total = 0.0
    kept_dense = []
    cands_of = {i.name: latency_candidates(i, specs[i.name], methods[i.name].method, cfg) for i in infos}
    # every layer's forms in one go (on a device: one bundle, one SSH round trip), then read back
    table.prefetch([(i, [(methods[i.name].method, r) for r in cands_of[i.name]]) for i in infos])
    for info in infos:
        meth = methods[info.name].method
        cands = cands_of[info.name]
        ms = table.measure(info, [(meth, r) for r in cands])
        dense = ms["dense"]
        dense_total += dense
        timed = {form_key(meth, r): ms[form_key(meth, r)] for r in cands}
        note: dict[str, Any] = {"backend": getattr(table, "backend", None), "dense_ms": round(dense, 5),
                                "forms_ms": {k: round(v, 5) for k, v in timed.items()}}
        if not cands:
            note["reason"] = f"no rank keeps energy >= {cfg.energy} and saves parameters"
            out[info.name], _ = None, kept_dense.append(info.name)
            chosen_total += dense
            methods[info.name].notes["latency"] = note
            continue
        fastest = min(timed.values())
        best = next(r for r in cands if ms[form_key(meth, r)] <= fastest * 1.02)  # cands: largest rank first
        t_best = ms[form_key(meth, best)]
        if t_best > dense * (1.0 - cfg.latency_min_gain):
            note["reason"] = (f"factorized form measures slower than dense ({t_best:.4f} vs {dense:.4f} ms; needs "
                              f">= {cfg.latency_min_gain:.0%} faster)")
            out[info.name] = None
            kept_dense.append(info.name)
            chosen_total += dense
        else:
            note["reason"] = f"{form_key(meth, best)} measures {t_best:.4f} ms vs dense {dense:.4f} ms"
            out[info.name] = Decision(meth, best, {**methods[info.name].notes, "latency": note})
            chosen_total += t_best
        methods[info.name].notes["latency"] = note
    summary = {"policy": "latency", "energy": cfg.energy, "min_gain": cfg.latency_min_gain,
               "layers_dense_ms": round(dense_total, 5), "layers_chosen_ms": round(chosen_total, 5),
               "kept_dense": kept_dense, "table": table.summary()}
    return out, summary
