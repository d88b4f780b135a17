"""`edgeskel tune --device D (--recipe R | --checkpoint C --data S)`: search compression budget
(including none) x rank policy x precision x backend within the profile's gates.

Order of work, cheapest first (each step a resumable RunDir stage in `<out>/<recipe>/tune-<device>/`):
1. data + reference: the pipeline's own stages (same keys, so the shared reference is reused);
2. factorize every compression option WITHOUT fine-tuning ('budget-<b>': parameter budget,
   'latency-<backend>': ranks from the measured layer-latency table, timed where the candidates
   are: here, or on the SSH device (compress/device_latency.py)) and export every
   (option x profile variant), the uncompressed model included ('none');
3. time all exported candidates interleaved (latency does not change with fine-tuning: same graph),
   on this host or, for a profile with `ssh:`, on the device in one bundle (tune/device.py);
4. prune: an option can still win only if one of its variants is faster than the fastest
   uncompressed candidate that meets the gates, and its factorized top-1 is within the gate +
   `max_recovery` points (what fine-tuning may win back); one that already meets the gates
   needs no fine-tuning. Survivors are fine-tuned (recipe's `finetune`), fastest first, while
   the time budget lasts, and re-exported;
5. time the uncompressed and the final compressed candidates again in ONE interleaved run,
   and pick (front.py). Accuracy is validation top-1 (the split every selection uses); the
   chosen candidate's test top-1 is reported too.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgeskel.backends import backend_names
from edgeskel.checkpoint import load_checkpoint, save_checkpoint
from edgeskel.compress.config import CompressionConfig
from edgeskel.compress.device_latency import latency_table_for
from edgeskel.errors import ConfigError, DataError, EdgeskelError
from edgeskel.io import atomic_write_bytes, atomic_write_json, atomic_write_text, sha256_file, sha256_json
from edgeskel.pipeline import export_stage_inputs, stages, steps
from edgeskel.pipeline.rundir import RunDir, library_versions
from edgeskel.progress_log import plain_progress
from edgeskel.recipe import load_recipe, with_overrides
from edgeskel.tune import front

if TYPE_CHECKING:
    from edgeskel.devices import DeviceProfile
    from edgeskel.recipe import Recipe

MEASURABLE = tuple(backend_names(runs_here=True))  # timed on this host (edgeskel/backends/; TensorRT: on the device)
TUNE_LOGIC_VERSION = 2  # 2 = INT8 candidates gated on unlabelled agreement too (as the pipeline)
# (infers {id: fn}, batches {b: x}) -> {id: {str(b): latency stats}}; tests inject a fake.
Measure = Callable[[dict[str, Callable[[np.ndarray], Any]], dict[int, np.ndarray]], dict[str, dict[str, dict[str, Any]]]]


def compression_options(rec: Recipe, profile: DeviceProfile, budgets: list[float], energies: list[float],
                        latency_backends: list[str], cache_dir: Path,
                        on_device: bool = False) -> dict[str, CompressionConfig | None]:
    """{option key: config}: 'none', one 'budget-<b>' per budget (params), one 'latency-<backend>[-e<E>]'
    per measured backend and energy (its layer table timed on the SSH device when `on_device`).
    Other settings (data_aware, include, ...) from the recipe."""
    base = rec.compress or CompressionConfig(policy="budget", data_aware=True)
    base = base.model_copy(update={"rank_multiple": profile.rank_multiple})
    opts: dict[str, CompressionConfig | None] = {"none": None}
    for b in budgets:
        opts[f"budget-{b:g}"] = base.model_copy(update={"policy": "budget", "target": "params", "budget": b})
    for bk in latency_backends:
        for e in energies:
            key = f"latency-{bk}" + (f"-e{e:g}" if len(energies) > 1 else "")
            opts[key] = base.model_copy(update={
                "policy": "latency", "energy": e, "latency_backend": bk, "latency_threads": profile.threads,
                "latency_batch_sizes": list(profile.batch_sizes), "latency_profile": profile.name,
                "latency_on": "device" if on_device else "host",
                "latency_cache": str((cache_dir / f"{profile.name}-{bk}.json").resolve())})
    return opts


def _interleaved(rounds: int, runs: int, warmup: int, progress: bool, log: Callable[[str], None]) -> Measure:
    """bench/measure.py's interleaved timing, one batch size at a time so a log gets a line per step."""
    from edgeskel.validate.latency import interleaved_latency

    def measure(infers: dict[str, Any], batches: dict[int, np.ndarray]) -> dict[str, dict[str, dict[str, Any]]]:
        out: dict[str, dict[str, dict[str, Any]]] = {cid: {} for cid in infers}
        for b, x in batches.items():
            t0 = time.monotonic()
            res = interleaved_latency(infers, {b: x}, rounds=rounds, runs=runs, warmup=warmup, max_seconds=None,
                                      progress=progress, label=f"tune latency b={b}")
            for cid, st in res.items():
                out[cid].update(st)
            log(f"[tune] batch {b}: {len(infers)} candidates x {rounds} rounds x {runs} runs timed in "
                f"{time.monotonic() - t0:.0f} s")
        return out

    return measure


@dataclass
class _Search:
    """What every step of one tune run reads: the run folder, recipe, profile, variants searched,
    the data arrays, the reference and how candidates are timed. Steps add to `cands`,
    `option_info`, `options` and `models`."""

    run: RunDir
    rec: Recipe
    profile: DeviceProfile
    wanted: list[Any]
    dataset: Any
    arrays: dict[str, np.ndarray]
    ref_ckpt: Path
    spec: Any
    ref_top1: float
    measure: Measure | None
    measure_tag: dict[str, Any]
    runs: int
    quiet: bool
    log: Callable[[str], None]
    over_budget: Callable[[], bool]
    cands: dict[str, dict[str, Any]] = field(default_factory=dict)
    option_info: dict[str, dict[str, Any]] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)
    models: dict[str, Path] = field(default_factory=dict)
    unlabelled: stages.UnlabelledClips | None = None

    def export(self, key: str) -> None:
        """Export option `key`'s model for every searched variant; add the candidates."""
        a = self.arrays
        if self.unlabelled is None:
            self.unlabelled = stages.UnlabelledClips(self.rec, self.dataset, self.wanted)
        self.cands.update(_export_option(self.run, key, self.models[key], self.profile, self.rec, self.wanted,
                                         a["calib_x"], a["val_x"], a["val_y"], self.log, self.unlabelled))

    def time(self, name: str, cands: dict[str, dict[str, Any]]) -> dict[str, Any]:
        """Time `cands` in one interleaved run (stage `name`) and record the timings on them."""
        return _apply_timing(self.cands, _latency_stage(self.run, name, cands, self.profile, self.measure,
                                                        self.measure_tag, self.arrays["val_x"], self.arrays["val_y"],
                                                        self.runs, self.log))


def searched_variants(profile: DeviceProfile, variants: list[str] | None, timed_on_device: bool) -> tuple[list[Any], list[str]]:
    """(variants tune times, profile variants it skips): backends that run on this host, and
    TensorRT when candidates are timed on the device (its engines exist only there)."""
    from edgeskel.pipeline import HOST_ARCH

    # Latency is timed on THIS host, or on the device over SSH when the profile names one.
    if profile.ssh is None and profile.arch != HOST_ARCH:
        raise ConfigError(f"device profile {profile.name!r} is for {profile.arch}, this host is {HOST_ARCH}: tune times "
                          "candidates here, which would not be that device's latency; add an `ssh:` block to the "
                          "profile so tune times them on the device (see README, Devices)")
    timeable = MEASURABLE + (("tensorrt",) if timed_on_device else ())
    wanted = [v for v in profile.variants if v.backend in timeable and (not variants or v.key in variants)]
    if variants:
        unknown = sorted(set(variants) - {v.key for v in profile.variants})
        if unknown:
            raise ConfigError(f"--variants {','.join(unknown)}: not in device profile {profile.name!r} "
                              f"(it has {[v.key for v in profile.variants]})")
    if not wanted:
        raise ConfigError(f"device profile {profile.name!r}: no variant tune can time here (backends {list(timeable)}; "
                          "TensorRT variants need the device: add an `ssh:` block to the profile)")
    return wanted, [v.key for v in profile.variants if v.backend not in timeable]


def timing_setup(profile: DeviceProfile, measure: Measure | None, rounds: int, runs: int, progress: bool,
                 log: Callable[[str], None]) -> tuple[Measure | None, dict[str, Any], bool]:
    """(measure, its tag for the latency stages' keys, timed on the device?). An injected
    measure wins (tests) and is never reused as a real timing; None = the device runner times."""
    remote = measure is None and profile.ssh is not None
    if measure is not None:
        tag = {"kind": "injected", "name": getattr(measure, "__name__", type(measure).__name__)}
    elif remote:
        tag = {"kind": "device", "profile": profile.name, "runs": runs, "warmup": profile.measure.warmup}
    else:
        tag = {"kind": "interleaved", "rounds": rounds, "runs": runs}
    if not remote:
        measure = measure or _interleaved(rounds, runs, profile.measure.warmup, progress, log)
    return measure, tag, remote


def run_tune(device: str, recipe: str = "default", checkpoint: str | None = None, data: str | None = None,
             out_root: str | Path = "runs", budgets: tuple[float, ...] = (0.75, 0.5), energies: tuple[float, ...] = (0.9,),
             variants: list[str] | None = None, time_budget_s: float | None = None, max_recovery: float = 10.0,
             rounds: int = 3, runs: int | None = None, quiet: bool = False, log: Callable[[str], None] = print,
             measure: Measure | None = None) -> dict[str, Any]:
    """Run the search (module docstring); returns tune.json's content. Stages already done with
    the same inputs are skipped, so an interrupted tune resumes."""
    from edgeskel.devices import load_profile

    t_start = time.monotonic()
    profile = load_profile(device)
    rec, rec_path = load_recipe(recipe)
    rec = with_overrides(rec, checkpoint, data, source=rec_path)
    wanted, skipped_variants = searched_variants(profile, variants, profile.ssh is not None and measure is None)
    out_root = Path(out_root)
    runs = runs or profile.measure.runs
    measure, measure_tag, remote = timing_setup(profile, measure, rounds, runs, not quiet and not plain_progress(), log)

    def over_budget() -> bool:
        return time_budget_s is not None and time.monotonic() - t_start > time_budget_s

    run = RunDir(out_root / rec.name / f"tune-{profile.name}", base=out_root)
    with run:
        ckpt_hash = steps.checkpoint_hash(rec)
        run.set_inputs({"recipe": {"name": rec.name, "file": str(rec_path), "sha256": sha256_json(rec.model_dump(mode="json"))},
                        "device": {"name": profile.name, "sha256": sha256_json(profile.model_dump(mode="json"))},
                        "checkpoint": {"sha256": ckpt_hash} if ckpt_hash else None, "data": {"spec": rec.data.spec},
                        "search": {"budgets": list(budgets), "energies": list(energies), "variants": [v.key for v in wanted],
                                   "max_recovery": max_recovery, "time_budget_s": time_budget_s}})
        try:
            dataset = steps.load_data(rec)
        except DataError as exc:
            raise type(exc)(exc.path, f"{exc.problem} (dataset of {rec_path}: data.spec {rec.data.spec!r})",
                            exc.sample) from None
        # ---- 1. the pipeline's own data, check and reference stages (same keys: the shared reference is reused)
        _, arrays = stages.data_stage(run, rec, dataset, log)
        stages.check_stage(run, profile, rec, dataset, ckpt_hash, str(rec_path), log)
        stages.reference_stage(run, rec, dataset, out_root, ckpt_hash, quiet, log)
        ref_ckpt = run.root / "reference" / "reference.ckpt"
        teacher, spec, _ = load_checkpoint(ref_ckpt)
        spec = steps.apply_profile_input(spec, profile)
        from edgeskel.train.metrics import accuracy_summary, predict_logits

        ref_top1 = accuracy_summary(predict_logits(teacher, arrays["val_x"]), arrays["val_y"])["top1"]
        search = _Search(run, rec, profile, wanted, dataset, arrays, ref_ckpt, spec, ref_top1, measure, measure_tag,
                         runs, quiet, log, over_budget, models={"none": ref_ckpt})
        # ---- 2. factorize (no fine-tuning) + export every option x variant
        _factorize_options(search, list(budgets), list(energies), out_root / "_latency", remote)
        # ---- 3. time every exported candidate, interleaved
        search.time("latency", search.cands)
        # ---- 4. prune, then fine-tune only what can still win
        fine_tuned = _finetune_promising(search, max_recovery)
        # ---- 5. one interleaved run: uncompressed vs final compressed candidates
        if fine_tuned:
            _final_round(search, fine_tuned)
        # ---- 6. a stream workload: step graphs of the finals, timed with them (tune/streams.py)
        from edgeskel.tune.streams import search_streams

        search_streams(search, TUNE_LOGIC_VERSION)
        test_x, test_y = arrays["test_x"], arrays["test_y"]
        ref_test_top1 = accuracy_summary(predict_logits(teacher, test_x), test_y)["top1"]  # reported, never chosen on
        result = _finish(run, device, rec, profile, spec, list(search.cands.values()), search.options,
                         search.option_info, search.models, ref_top1, test_x, test_y, skipped_variants,
                         time.monotonic() - t_start, ref_test_top1, len(arrays["val_y"]), dataset)
    if not quiet:
        import textwrap

        print(result["table"])
        print(textwrap.fill(f"chosen: {result['decision']['why']}", width=80, subsequent_indent="  "))
        if result["decision"].get("caution"):
            print(textwrap.fill(f"caution: {result['decision']['caution']}", width=80, subsequent_indent="  "))
    return result


def _factorize_options(search: _Search, budgets: list[float], energies: list[float], cache_dir: Path,
                       remote: bool) -> None:
    """Factorize every compression option (no fine-tuning) and export each for every variant.
    The layer latency table times ORT/OpenVINO layers where the candidates are timed: on this
    host, or on the SSH device by the device runner (compress/device_latency.py)."""
    s, a = search, search.arrays
    table_backends = sorted({v.backend for v in s.wanted} & set(backend_names(layer_timing=True)))
    s.options.update(compression_options(s.rec, s.profile, budgets, energies, table_backends, cache_dir,
                                         on_device=remote))
    if not table_backends:
        s.option_info["latency"] = {"status": "skipped", "policy": None, "reason": (
            "the layer latency table times ONNX Runtime/OpenVINO layers; this search has only "
            f"{sorted({v.backend for v in s.wanted})} variants")}
    for key, cfg in s.options.items():
        if cfg is None:
            s.option_info[key] = {"status": "ok", "policy": None, "top1_factorized": s.ref_top1}
            s.export(key)
            continue
        if s.over_budget():
            s.option_info[key] = {"status": "skipped", "reason": "time budget spent"}
            continue
        try:
            res = s.run.run_stage(f"factorize-{key}", {"cfg": cfg.model_dump(mode="json"),
                                                       "reference": s.run.output_hash("reference"),
                                                       "logic": TUNE_LOGIC_VERSION},
                                  lambda d, cfg=cfg: _factorize(s.ref_ckpt, cfg, s.spec, a["calib_x"], a["val_x"],
                                                                a["val_y"], d, latency_table_for(cfg, s.profile, s.log)),
                                  s.log)
        except ConfigError as exc:  # e.g. an infeasible budget for this model: that option only
            s.option_info[key] = {"status": "error", "policy": cfg.policy, "reason": str(exc)}
            s.log(f"[tune] {key}: {exc}")
            continue
        s.option_info[key] = {"status": "ok", "policy": cfg.policy, "top1_factorized": res["top1"],
                              "totals": res["totals"], "latency_policy": res.get("latency")}
        if res.get("factorized_layers") == 0:  # every layer kept dense: it IS the uncompressed model
            s.option_info[key].update(status="same as none", reason="every layer stayed dense (nothing to time twice)")
            s.log(f"[tune] {key}: every layer stayed dense, same model as 'none'")
            continue
        s.models[key] = s.run.root / f"factorize-{key}" / "model.ckpt"
        s.export(key)


def _finetune_promising(search: _Search, max_recovery: float) -> set[str]:
    """Judge every candidate, prune what cannot win, fine-tune the rest (fastest first) and export
    the fine-tuned models; returns the options fine-tuned."""
    s, a = search, search.arrays
    max_drop, p99_budget = s.profile.gates.max_top1_drop, s.profile.gates.p99_latency_ms
    for c in s.cands.values():
        c["judged"] = front.judge(c, s.ref_top1, max_drop, p99_budget)
    base_ok = [c for c in s.cands.values() if c["compression"] == "none" and c["judged"]["passed"]]
    to_beat = min((front.p50(c) for c in base_ok), default=None)
    plan = _prune(s.cands, s.option_info, to_beat, s.ref_top1, max_drop, max_recovery, s.rec.finetune is not None)
    for key in sorted(plan, key=lambda k: plan[k]):  # fastest first
        if s.over_budget():
            s.option_info[key].update(finetune="skipped", finetune_reason="time budget spent")
            continue
        cfg = s.options[key]
        rec_k = s.rec.model_copy(update={"compress": cfg})
        res = s.run.run_stage(f"finetune-{key}", {"cfg": cfg.model_dump(mode="json"),
                                                  "finetune": s.rec.finetune.model_dump(mode="json"),
                                                  "reference": s.run.output_hash("reference"),
                                                  "data": s.run.output_hash("data")},
                              lambda d, rec_k=rec_k: _finetune(s.run, s.rec, rec_k, s.profile, s.ref_ckpt, s.dataset,
                                                               a["val_x"], a["val_y"], a["calib_x"],
                                                               (a["test_x"], a["test_y"]), d, s.quiet, s.log), s.log)
        s.option_info[key].update(finetune="done", selection=res["selection"], finetune_info=res["finetune"])
        ft_key = f"{key}-ft"
        s.option_info[ft_key] = {"status": "ok", "policy": cfg.policy, "fine_tuned_from": key}
        s.options[ft_key] = cfg
        s.models[ft_key] = s.run.root / f"finetune-{key}" / "compressed.ckpt"
        s.export(ft_key)
    return {k for k in plan if s.option_info[k].get("finetune") == "done"}


def _final_round(search: _Search, fine_tuned: set[str]) -> None:
    """Time the uncompressed candidates against the final compressed ones in one interleaved
    run; candidates left out are marked pruned, with the reason."""
    s = search

    def final(c: dict[str, Any]) -> bool:
        comp = c["compression"]
        if c["status"] != "ok":
            return False
        if comp == "none" or comp.endswith("-ft"):
            return True
        return comp not in fine_tuned and s.option_info[comp].get("finetune") == "not needed"

    second = s.time("final-latency", {cid: c for cid, c in s.cands.items() if final(c)})
    for c in s.cands.values():
        if c["status"] == "ok" and c["id"] not in second:
            why = ("superseded by its fine-tuned version" if c["compression"] in fine_tuned
                   else s.option_info[c["compression"]].get("finetune_reason", "not in the final run"))
            c.update(status="pruned", reason=why)


# ----------------------------------------------------------------------------------- stages
def _finetune(run: RunDir, rec: Recipe, rec_k: Recipe, profile: DeviceProfile, ref_ckpt: Path, dataset: Any, val_x: np.ndarray,
              val_y: np.ndarray, calib_x: np.ndarray, test: tuple[np.ndarray, np.ndarray], d: Path, quiet: bool,
              log: Callable[[str], None]) -> dict[str, Any]:
    """Compress + fine-tune one option (`rec_k`: the recipe with that option's `compress`), or copy
    the model a finished `make export` run of recipe `rec` on this device made the same way
    (pipeline/reuse.py): the recipe's own budget is usually a tune option, and its fine-tune is
    the most expensive step of both commands."""
    from edgeskel.pipeline.reuse import DEFAULT_ROOT, finished_compress

    rank_multiple = rec_k.compress.rank_multiple
    found = None
    if rec.compress is not None and rec_k.compress == rec.compress.model_copy(update={"rank_multiple": rank_multiple}):
        ref_sha, data_outputs = sha256_file(ref_ckpt), run.manifest["stages"]["data"].get("outputs") or {}
        for root in dict.fromkeys([run.root.parent.parent, DEFAULT_ROOT]):  # this tune's --out, then runs/
            found = found or finished_compress(rec, profile.name, ref_sha, rank_multiple, data_outputs, root=root)
    if found is None:
        return steps.compress_and_finetune(ref_ckpt, rec_k, dataset, val_x, val_y, calib_x, d, quiet=quiet, test=test,
                                           latency=latency_table_for(rec_k.compress, profile, log))
    other, comp = found
    for name in ("compressed.ckpt", "compression.json"):
        atomic_write_bytes(d / name, (other.root / "compress" / name).read_bytes())
    log(f"[tune] {d.name}: fine-tuned model reused from the finished pipeline run {other.root} "
        "(same reference, settings and data)")
    return {k: comp[k] for k in ("top1", "totals", "finetune", "selection")} | {
        "outputs": ["compressed.ckpt", "compression.json"], "reused_from": str(other.root)}


def _factorize(ref_ckpt: Path, cfg: CompressionConfig, spec: Any, calib_x: np.ndarray, val_x: np.ndarray,
               val_y: np.ndarray, d: Path, latency: Any = None) -> dict[str, Any]:
    """Compress without fine-tuning: structure (hence latency) and the accuracy before fine-tuning.
    `latency`: the layer table of policy 'latency' when it is timed on the device."""
    from dataclasses import replace

    import torch

    from edgeskel.compress import compress_model
    from edgeskel.train.metrics import accuracy_summary, predict_logits

    teacher, ref_spec, extra = load_checkpoint(ref_ckpt)
    calib = [torch.from_numpy(calib_x[i : i + 16]) for i in range(0, min(len(calib_x), 16 * cfg.calib_batches), 16)]
    student, rep = compress_model(copy.deepcopy(teacher), cfg, (1, *ref_spec.input_shape), calib, latency=latency)
    cspec = replace(ref_spec, compression={"plan": rep["plan"], "policy": rep["policy"]})
    save_checkpoint(d / "model.ckpt", student, cspec, extra={"stage": "factorized (tune)"})
    atomic_write_json(d / "compression.json", {k: rep[k] for k in ("policy", "totals", "layers", "budget", "latency")})
    top1 = accuracy_summary(predict_logits(student, val_x), val_y)["top1"]
    return {"outputs": ["model.ckpt", "compression.json"], "top1": top1, "totals": rep["totals"],
            "latency": rep.get("latency"), "factorized_layers": len(rep["plan"]["layers"])}


def _export_option(run: RunDir, key: str, ckpt: Path, profile: DeviceProfile, rec: Recipe, wanted: list[Any], calib_x: np.ndarray,
                   val_x: np.ndarray, val_y: np.ndarray, log: Callable[[str], None],
                   unlabelled: stages.UnlabelledClips | None = None) -> dict[str, dict[str, Any]]:
    """Export one model for every wanted variant (parity + INT8 gates, unlabelled agreement
    included, as in the pipeline: `stages.variant_export_options`), with validation top-1 and
    artifact size. A failed variant is a candidate with status 'error'."""
    prof = profile.model_copy(update={"variants": wanted})

    def stage(d: Path) -> dict[str, Any]:
        from edgeskel.export import export_variant
        from edgeskel.runtime import get_runner
        from edgeskel.train.metrics import accuracy_summary

        model, spec, _ = load_checkpoint(ckpt)
        spec = steps.apply_profile_input(spec, profile)
        out, outputs = {}, []
        for v in wanted:
            res, err = steps.safe_call(export_variant, model, spec, v.backend, v.precision, d / v.key,
                                       calib=calib_x, val=(val_x, val_y),
                                       options=stages.variant_export_options(profile, rec, v),
                                       unlabelled=unlabelled(v.precision) if unlabelled else None)
            if err is not None:
                out[v.key] = {"status": "error", "reason": err.splitlines()[0][:300]}
                log(f"[tune] {key}/{v.key}: export failed: {err.splitlines()[0][:120]}")
                continue
            art = Path(res["artifact_path"])
            with get_runner(res["runtime"]["backend"], art, precision=res["runtime"]["precision"],
                            threads=profile.threads, **v.options) as r:
                logits = np.concatenate([r.infer(val_x[i : i + 64]) for i in range(0, len(val_x), 64)])
            size = sum(f["bytes"] for f in res["files"] if Path(f["path"]).name in (art.name, art.with_suffix(".bin").name))
            out[v.key] = {"status": "ok", "artifact": str(art.relative_to(d)), "runtime": res["runtime"],
                          "top1": accuracy_summary(logits, val_y)["top1"], "size_bytes": int(size)}
            outputs += [str(p.relative_to(d)) for p in sorted((d / v.key).rglob("*")) if p.is_file()]
            log(f"[tune] {key}/{v.key}: exported, validation top-1 {out[v.key]['top1']:.2f}")
        return {"variants": out, "outputs": outputs}

    inputs = export_stage_inputs(prof, rec, ckpt, run.output_hash("data")) | {"threads": profile.threads,
                                                                             "logic": TUNE_LOGIC_VERSION}
    res = run.run_stage(f"export-{key}", inputs, stage, log)
    cands = {}
    for v in wanted:
        r = res["variants"][v.key]
        cid = f"{key}/{v.key}"
        cands[cid] = {"id": cid, "compression": key, "variant": v.key, "backend": v.backend, "precision": v.precision,
                      "options": v.options, **r}
        if r["status"] == "ok":
            cands[cid]["artifact_path"] = str(run.root / f"export-{key}" / r["artifact"])
    return cands


def _latency_stage(run: RunDir, name: str, cands: dict[str, dict[str, Any]], profile: DeviceProfile, measure: Measure | None,
                   measure_tag: dict[str, Any], val_x: np.ndarray, val_y: np.ndarray, runs: int,
                   log: Callable[[str], None]) -> dict[str, Any]:
    """Latency of every measured candidate at the profile's batch sizes, interleaved: here with
    `measure`, or (measure None) on the device over SSH, which also returns the device's top-1."""
    from edgeskel.runtime import get_runner
    from edgeskel.validate.latency import batch_from

    ok = {cid: c for cid, c in cands.items() if c["status"] == "ok"}

    def stage(d: Path) -> dict[str, Any]:
        if measure is None:
            from edgeskel.tune.device import measure_on_device

            res = measure_on_device(ok, profile, val_x, val_y, runs, d, log)
            atomic_write_json(d / "latency.json", res["latency"])
            return {"outputs": ["latency.json", "results.json"], **res}
        runners = {}
        try:
            for cid, c in ok.items():
                runners[cid] = get_runner(c["runtime"]["backend"], c["artifact_path"], precision=c["runtime"]["precision"],
                                          threads=profile.threads, **c["options"]).load()
            batches = {int(b): batch_from(val_x, int(b)) for b in profile.batch_sizes}
            log(f"[tune] timing {len(runners)} candidates interleaved at batch {sorted(batches)}")
            lat = measure({cid: r.infer for cid, r in runners.items()}, batches)
        finally:
            for r in runners.values():
                r.close()
        atomic_write_json(d / "latency.json", lat)
        return {"outputs": ["latency.json"], "latency": lat, "measured_on": "local"}

    inputs = {"artifacts": {cid: sha256_file(c["artifact_path"]) for cid, c in sorted(ok.items())},
              "batch_sizes": profile.batch_sizes, "threads": profile.threads, "measure": profile.measure.model_dump(mode="json"),
              "logic": TUNE_LOGIC_VERSION, "measure_by": measure_tag}
    if measure is None:  # what is timed where is part of the key (and the device's accuracy is on val)
        inputs["device"] = {"ssh": profile.ssh.model_dump(mode="json"), "arch": profile.arch,
                            "tensorrt": profile.tensorrt.model_dump(mode="json") if profile.tensorrt else None,
                            "data": run.output_hash("data")}
    return run.run_stage(name, inputs, stage, log)


def _apply_timing(cands: dict[str, dict[str, Any]], res: dict[str, Any]) -> dict[str, Any]:
    """Put a latency stage's numbers on the candidates; a device run's top-1 replaces the
    host's (the gate judges what runs on the device; the host's value is kept as top1_host),
    and a candidate the device could not run becomes an error. Returns the latencies."""
    for cid, lat in res["latency"].items():
        cands[cid]["latency_ms"] = lat
        cands[cid]["measured_on"] = res.get("measured_on", "local")
        cands[cid].update(res.get("emulation") or {})  # qemu-user or the TensorRT double: labelled, see _finish
    for cid, top1 in (res.get("top1") or {}).items():
        if top1 is not None:
            cands[cid].setdefault("top1_host", cands[cid].get("top1"))
            cands[cid]["top1"] = top1
    for cid, why in (res.get("errors") or {}).items():
        cands[cid].update(status="error", reason=f"on the device: {why}")
    return res["latency"]


def _prune(cands: dict[str, dict[str, Any]], option_info: dict[str, dict[str, Any]], to_beat: float | None,
           ref_top1: float, max_drop: float, max_recovery: float, can_finetune: bool) -> dict[str, float]:
    """{option: its fastest p50} of the options worth fine-tuning; the reason for every other."""
    plan: dict[str, float] = {}
    for key, info in option_info.items():
        if info.get("policy") is None or info.get("status") != "ok":
            continue
        mine = [c for c in cands.values() if c["compression"] == key and c["status"] == "ok" and front.p50(c) is not None]
        if not mine:
            info.update(finetune="pruned", finetune_reason="no variant exported")
            continue
        fastest = min(front.p50(c) for c in mine)
        if to_beat is not None and fastest >= to_beat:
            info.update(finetune="pruned", finetune_reason=f"its fastest variant ({fastest:.3f} ms) is not faster than the "
                        f"fastest uncompressed candidate meeting the gates ({to_beat:.3f} ms)")
        elif any(c["judged"]["passed"] for c in mine):
            info.update(finetune="not needed", finetune_reason="meets the gates without fine-tuning")
        elif info["top1_factorized"] < ref_top1 - max_drop - max_recovery:
            info.update(finetune="pruned", finetune_reason=f"top-1 {info['top1_factorized']:.2f} before fine-tuning is more "
                        f"than {max_drop + max_recovery:g} points below the reference ({ref_top1:.2f})")
        elif not can_finetune:
            info.update(finetune="pruned", finetune_reason="the recipe has no finetune section")
        else:
            plan[key] = fastest
    return plan


def _caution(chosen: dict[str, Any], ref_top1: float, ref_test_top1: float, test_top1: float, n_val: int,
             max_drop: float) -> dict[str, Any]:
    """How much the validation gate can be trusted: one validation sample is 100/n points, so a
    choice passing the gate by less than that passed by a single clip; and the test split, read
    once after the choice (never used to choose), says whether validation predicted it."""
    one = 100.0 / max(n_val, 1)
    margin = max_drop - (ref_top1 - chosen["top1"])
    out: dict[str, Any] = {"validation_samples": n_val, "one_validation_sample_points": round(one, 3),
                           "gate_margin_points": round(margin, 3), "reference_test_top1": ref_test_top1,
                           "test_drop": round(ref_test_top1 - test_top1, 3)}
    notes = []
    if margin < one:
        notes.append(f"it passes the {max_drop:g}-point gate by {margin:.2f} points on {n_val} validation samples "
                     f"(one sample = {one:.2f} points): within sampling noise")
    if out["test_drop"] > max_drop:
        notes.append(f"on the test split (read once, after choosing) it drops {out['test_drop']:.2f} points "
                     f"({test_top1:.2f} vs the reference's {ref_test_top1:.2f}): validation did not predict test")
    if notes:
        out["caution"] = ("; ".join(notes) + ". Check with `make export` on the recipe; choose on data from "
                          "where the model will run (a validation split in the data, or the recipe's "
                          "data.validation: test with data.validation_fraction), or search milder ranks "
                          "(--energies 0.95,0.98; --budgets).")
    return out


def _finish(run: RunDir, device: str, rec: Recipe, profile: DeviceProfile, spec: Any, cands: list[dict[str, Any]], options: dict[str, Any],
            option_info: dict[str, dict[str, Any]], models: dict[str, Path], ref_top1: float, test_x: np.ndarray,
            test_y: np.ndarray, skipped_variants: list[str], wall_s: float, ref_test_top1: float,
            n_val: int, dataset: Any = None) -> dict[str, Any]:
    """Front, choice, test top-1 of the choice, and the outputs: tune.json, tune.md, tune.png, recipe.yaml."""
    scored = [c for c in cands if c["status"] == "ok"]
    decision = front.choose(scored, ref_top1, profile.gates.max_top1_drop, profile.gates.p99_latency_ms)
    fr = front.pareto(scored)
    chosen = next((c for c in cands if c["id"] == decision["chosen"]), None)
    recipe_path = None
    if chosen is not None:
        from edgeskel.runtime import get_runner
        from edgeskel.train.metrics import accuracy_summary

        if chosen.get("form") == "streaming":  # its decision at each test sequence's last frame
            from edgeskel.pipeline.streaming import settings
            from edgeskel.tune.streams import streaming_test_top1

            decision["test_top1"] = streaming_test_top1(chosen, dataset, spec.preprocess.num_person,
                                                        settings(profile, rec).max_sequences, profile.threads)
            decision["test_top1_by"] = "streaming: the ended stream's final decision on each recorded test sequence"
        else:
            with get_runner(chosen["runtime"]["backend"], chosen["artifact_path"], precision=chosen["runtime"]["precision"],
                            threads=profile.threads, **chosen["options"]) as r:
                logits = np.concatenate([r.infer(test_x[i : i + 64]) for i in range(0, len(test_x), 64)])
            decision["test_top1"] = accuracy_summary(logits, test_y)["top1"]
        if chosen.get("form") != "streaming" and chosen["backend"] != chosen["runtime"]["backend"]:  # e.g. TensorRT: its ONNX on this host's ORT
            decision["test_top1_by"] = (f"{chosen['runtime']['backend']} on this host, on the ONNX the {chosen['backend']} "
                                        "engine is built from (the engine itself runs on the device only)")
        decision.update(_caution(chosen, ref_top1, ref_test_top1, decision["test_top1"], n_val, profile.gates.max_top1_drop))
    emulated = sorted({c["emulated"] for c in cands if c.get("emulated")})
    if emulated:  # never let an emulator's or a contract double's timing pass for the device's
        note = (f"timed under emulation ({'; '.join(emulated)}): NOT {profile.name} latency, so this choice is not a "
                f"measurement of {profile.name}; rerun tune with the profile's ssh block on a real {profile.name}")
        decision["emulated"] = emulated
        decision["caution"] = note + (f"; {decision['caution']}" if decision.get("caution") else "")
    if chosen is not None:
        recipe_path = _write_recipe(run.root / "recipe.yaml", device, run.root / "reference" / "reference.ckpt", rec,
                                    profile, chosen, options, decision)
    from edgeskel.tune import opcompare
    from edgeskel.validate.latency import batch_from

    base = next((c for c in cands if c["id"] == decision.get("best_uncompressed")), None)
    # per-op kernel times come from this host's profilers: shown only when the timing was local
    on_device = any(c.get("measured_on", "local") != "local" for c in cands)
    windowed_choice = chosen if chosen is None or chosen.get("form") != "streaming" else None  # op profiles: windowed graphs
    profiles = [] if on_device else opcompare.compare(windowed_choice, base, batch_from(test_x, 1), profile.threads)
    text = front.table(cands, fr, decision["chosen"], ref_top1)
    # the search's cost: every stage's own time, so a resumed run still reports what the search took
    stage_recs = run.manifest.get("stages") or {}
    stage_s = sum(float((stage_recs.get(n) or {}).get("wall_time_s") or 0.0) for n in run.used_stages)
    stage_s = max(stage_s, wall_s)
    timed_on = sorted({c["measured_on"] for c in cands if c.get("measured_on")}) or ["local"]
    header = (f"tune {rec.name} on {profile.name} (timed: {', '.join(timed_on)}): reference top-1 {ref_top1:.2f} "
              "(validation" + (", candidates' top-1 from the device)" if on_device else ")"))
    cost = (f"{len(cands)} candidates; search time {stage_s:.0f} s (sum of stages"
            + (f"; {wall_s:.0f} s in this run)" if wall_s < 0.9 * stage_s else ")"))
    result = {"format": "edgeskel-tune/1", "recipe": rec.name, "device": profile.name, "reference_top1": ref_top1,
              "accuracy_split": "validation", "gates": profile.gates.model_dump(mode="json"),
              "batch_sizes": profile.batch_sizes, "threads": profile.threads, "timed_on": timed_on,
              "variants_not_timed_here": skipped_variants, "options": option_info,
              "candidates": [{k: v for k, v in c.items() if k not in ("artifact_path", "step_dir")} for c in cands],
              "pareto_front": fr, "decision": decision, "op_profiles": profiles,
              "recipe_file": str(recipe_path) if recipe_path else None,
              "wall_time_s": round(wall_s, 1), "stages_wall_time_s": round(stage_s, 1), "libraries": library_versions(), "table": header + "\n" + cost + "\n" + text}
    result = stages.jsonable(result)
    atomic_write_json(run.root / "tune.json", result)
    md = [f"# {header}", "", cost, "", "```", text, "```", "", f"**Chosen:** {decision['why']}", ""]
    if decision.get("test_top1") is not None:
        md += [f"Test split (read once after choosing; never used to choose): the choice {decision['test_top1']:.2f}, "
               f"the reference {ref_test_top1:.2f}.", ""]
    if decision.get("caution"):
        md += [f"**Caution:** {decision['caution']}", ""]
    md += ["Compression options:", ""]
    for key, info in option_info.items():
        status = info.get("finetune") or info.get("status")
        why = info.get("finetune_reason") or info.get("reason") or ""
        md.append(f"- `{key}`: {status}" + (f" ({why})" if why else ""))
    md.append("")
    if profiles:
        md += ["Where the time goes at batch 1 (per op type, kernel time; the bench's profilers):", "", "```",
               opcompare.table(profiles), "```", ""]
    if recipe_path:
        md += [f"Reproduce: `make export DEVICE={device} RECIPE={recipe_path}` and ship variant "
               f"`{chosen['variant']}`.", ""]
    atomic_write_text(run.root / "tune.md", "\n".join(md))
    front.plot(cands, fr, decision["chosen"], f"{rec.name} on {profile.name}: latency vs top-1", run.root / "tune.png")
    return result


def _write_recipe(path: Path, device: str, ref_ckpt: Path, rec: Recipe, profile: DeviceProfile, chosen: dict[str, Any],
                  options: dict[str, Any], decision: dict[str, Any]) -> Path:
    """The recipe that reproduces the choice with `make export`: the reference tune measured (its
    checkpoint in the tune folder), the same data, the chosen compression (none: no compress
    section) and fine-tuning only if the choice was fine-tuned."""
    import yaml

    comp = chosen["compression"]
    cfg = options.get(comp)
    body = rec.model_dump(mode="json")
    body["name"] = f"{rec.name[:58]}-tuned"
    body["description"] = f"edgeskel tune's choice for {profile.name}: {chosen['id']}"
    if not rec.model.entrypoint:  # the reference tune measured, so `make export` does not train it again
        body["model"].update(checkpoint=str(ref_ckpt.resolve()), import_from=None)
    body["compress"] = cfg.model_dump(mode="json") if cfg is not None else None
    if not comp.endswith("-ft"):
        body["finetune"] = None
    if chosen.get("form") == "streaming":  # ship the step graph: the pipeline exports and measures it
        body["streaming"] = {**(body.get("streaming") or {}), "variants": [chosen["variant"]]}
    if body["compress"] is None:
        body.pop("compress")
    if body.get("finetune") is None:
        body.pop("finetune", None)
    head = [f"# Written by `edgeskel tune --device {device}` ({time.strftime('%Y-%m-%d %H:%M')}).",
            f"# Chosen: {chosen['id']} -- ship the `{chosen['variant']}` variant of the report.",
            f"# Why: {decision['why']}",
            f"# Reproduce: make export DEVICE={device} RECIPE={path}"]
    text = "\n".join(head) + "\n"
    text += yaml.safe_dump(body, sort_keys=False)
    atomic_write_text(path, text)
    from edgeskel.recipe import load_recipe

    try:
        load_recipe(path)  # what we write must load
    except EdgeskelError as exc:
        raise EdgeskelError(f"{path}: tune wrote a recipe that does not load ({exc}); please report this") from None
    return path
