"""`edgeskel export --device D` / `make export DEVICE=D`: the whole pipeline into
`runs/<recipe>/<device>/`, resumable stage by stage (see `rundir.RunDir`)."""

from __future__ import annotations

import platform
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgeskel.checkpoint import load_checkpoint
from edgeskel.errors import DataError, EdgeskelError
from edgeskel.io import sha256_file, sha256_json
from edgeskel.pipeline import stages, steps
from edgeskel.pipeline.rundir import RunDir, kill_point, library_versions
from edgeskel.pipeline.validation import BASELINE_PREFIX
from edgeskel.recipe import load_recipe, with_overrides
from edgeskel.validate.parity import DEFAULT_TOLERANCES

if TYPE_CHECKING:
    from edgeskel.devices import DeviceProfile
    from edgeskel.recipe import Recipe

HOST_ARCH = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "aarch64", "arm64": "aarch64"}.get(platform.machine().lower(), platform.machine())


# Bump when a code change alters what the export stage produces from the same inputs (e.g. the
# INT8 fallback's search): finished runs then re-export instead of keeping stale artifacts.
EXPORT_LOGIC_VERSION = 6  # 6 = TensorRT 10.x DLA INT8 from calib.cache, torch.einsum exported (was refused), INT8 gated on unlabelled agreement too; 3 = TensorRT routes by version, one engine per batch, variant's own dla_core;
# 4 = Hyperformer MHSA export form (issue 20 item 4: fewer Transposes, same math)
# 5 = PYSKL unit_gcn exported aggregate-first (ST-GCN, ST-GCN++: no ReduceSum, BN folded)
# Bumped when how the validate stage measures changes, so finished runs are re-measured.
VALIDATE_LOGIC_VERSION = 4  # 4 = one backend stack: device runner sessions get the host runners' ORT log level and OpenVINO LATENCY hint; 2 = variants timed interleaved in blocks per round; 3 = openvino fp16 runs with the f32 hint export judged
# Bumped when what a report says changes (not its inputs), so `make export` rewrites it: 2 = INT8
# lines name the samples the parity rule tolerated; 3-4 = INT8 not faster than fp32 is noted (latency_note);
# 5 = verdict PASSED / FAILED / NOT MEASURED over every variant, host checks apart, decision and gate values.
REPORT_LOGIC_VERSION = 9  # 9 = a reduced-precision stream gated against the fp32 stream; 8 = validation warnings (saturated / too small to decide); 7 = decision vs the uncompressed baseline (ship_uncompressed), tie wording, peak precision, baseline notes/host-check flags


def export_stage_inputs(profile: DeviceProfile, rec: Recipe, deploy_ckpt: Path, data_hash: str) -> dict[str, Any]:
    """What the export stage's artifacts depend on (its skip key; the benchmark checks it too
    before reusing a run's artifacts)."""
    return {"variants": [v.model_dump(mode="json") for v in profile.variants],
            "input": profile.input.model_dump(mode="json"),
            "tensorrt": profile.tensorrt.model_dump(mode="json") if profile.tensorrt else None,
            "export": rec.export.model_dump(mode="json"),
            "model": sha256_file(deploy_ckpt), "data": data_hash, "export_logic": EXPORT_LOGIC_VERSION,
            "parity": DEFAULT_TOLERANCES}  # a changed parity rule re-judges the artifacts


def run_pipeline(
    device: str,
    recipe: str = "default",
    checkpoint: str | None = None,
    data: str | None = None,
    out_root: str | Path = "runs",
    quiet: bool = False,
    log: Any = print,
) -> dict[str, Any]:
    """Run load -> compress -> fine-tune -> export -> quantize -> validate -> report.
    Returns the report dict (report.json). Stages whose inputs did not change are skipped."""
    from edgeskel.devices import load_profile

    profile = load_profile(device)
    rec, rec_path = load_recipe(recipe)
    rec = with_overrides(rec, checkpoint, data, source=rec_path)

    run = RunDir(Path(out_root) / rec.name / profile.name, base=out_root)  # names are checked: never outside --out
    with run:
        ckpt_hash = steps.checkpoint_hash(rec)
        inputs = {
            "recipe": {"name": rec.name, "file": str(rec_path), "sha256": sha256_json(rec.model_dump(mode="json"))},
            "device": {"name": profile.name, "sha256": sha256_json(profile.model_dump(mode="json")),
                       # `edgeskel results import` re-gates with it; never the ssh block (host, user, paths)
                       "profile": profile.model_dump(mode="json", exclude={"ssh"})},
            "checkpoint": {"sha256": ckpt_hash} if ckpt_hash else None,
            "data": {"spec": rec.data.spec},
        }
        run.set_inputs(inputs)
        from edgeskel.pipeline.streaming import stream_variants

        stream_variants(profile, rec)  # a wrong streaming.variants list fails now, not after training
        try:
            dataset = steps.load_data(rec)
        except DataError as exc:  # say where the dataset spec came from, too
            raise type(exc)(exc.path, f"{exc.problem} (dataset of {rec_path}: data.spec {rec.data.spec!r})",
                            exc.sample) from None
        # The full layout definition (not just its name) is part of the run's inputs and of the
        # data fingerprint every later stage key builds on: an edited layout file re-runs them.
        from edgeskel.data.splits import holdout

        validation = holdout(dataset).info
        run.set_inputs({**inputs, "layout": {**dataset.layout.to_dict(), "sha256": dataset.layout.fingerprint()},
                        "validation": validation})

        # ---- data: preprocess validation + calibration arrays once, hash them -------------
        # val_*: the validation split (selection, INT8 gates); test_*: the report's accuracy only.
        data_res, arrays = stages.data_stage(run, rec, dataset, log)
        val_x, val_y, test_x, test_y, calib_x = (arrays[k] for k in stages.DATA_ARRAYS)

        # ---- fail fast: every backend route takes the model (before any training) ----------
        stages.check_stage(run, profile, rec, dataset, ckpt_hash, str(rec_path), log)

        # ---- reference model --------------------------------------------------------------
        # Built once per recipe in runs/<recipe>/_shared (pipeline/shared.py) that every device
        # and tune reuse; this run records the test logits and accuracy beside its copy.
        def with_test_accuracy(d: Path, res: dict[str, Any]) -> dict[str, Any]:
            from edgeskel.train.metrics import accuracy_summary, predict_logits

            model, spec, _ = load_checkpoint(d / "reference.ckpt")
            logits = predict_logits(model, test_x)
            stages.save_npy(d / "ref_logits.npy", logits)
            ens = steps.ensemble_accuracy(model, test_x, test_y)  # per-stream top-1 of an ensemble
            return res | {"outputs": ["reference.ckpt", "ref_logits.npy"], **accuracy_summary(logits, test_y),
                          **steps.model_stats(model, spec), **({"ensemble": ens} if ens else {})}

        ref_res = stages.reference_stage(run, rec, dataset, Path(out_root), ckpt_hash, quiet, log,
                                         finish=with_test_accuracy)

        # ---- compress + fine-tune ---------------------------------------------------------
        deploy_ckpt = run.root / "reference" / "reference.ckpt"
        comp_res: dict[str, Any] | None = None
        if rec.compress is not None:
            def comp_stage(d: Path) -> dict[str, Any]:
                from edgeskel.compress.device_latency import latency_table_for

                return steps.compress_and_finetune(deploy_ckpt, rec, dataset, val_x, val_y, calib_x, d,
                                                   rank_multiple=profile.rank_multiple, quiet=quiet,
                                                   test=(test_x, test_y), latency=latency_table_for(rec.compress, profile, log))

            from edgeskel.pipeline.reuse import compress_stage_inputs

            comp_res = run.run_stage("compress", compress_stage_inputs(rec, profile.rank_multiple, run.output_hash("reference")),
                                     comp_stage, log)
            import textwrap

            from edgeskel.validate.resolution import validation_warnings

            for w in validation_warnings(data_res.get("num_val"), comp_res.get("selection"), None):
                for line in textwrap.wrap(f"warning: {w}", 80, subsequent_indent="  "):
                    log(line)  # the report says it again, under the decision
            deploy_ckpt = run.root / "compress" / "compressed.ckpt"

        model, spec, _ = load_checkpoint(deploy_ckpt)
        spec = steps.apply_profile_input(spec, profile)
        from edgeskel.train.metrics import predict_logits

        # ---- export every variant -----------------------------------------------------------
        unlabelled = stages.UnlabelledClips(rec, dataset, profile.variants)

        def export_stage(d: Path, model: Any = model, spec: Any = spec, prefix: str = "",
                         stage: str = "export") -> dict[str, Any]:
            from edgeskel.export import export_variant

            results, outputs = {}, []
            for v in profile.variants:
                key = prefix + v.key
                res, err = steps.safe_call(export_variant, model, spec, v.backend, v.precision, d / key,
                                           calib=calib_x, val=(val_x, val_y),
                                           options=stages.variant_export_options(profile, rec, v),
                                           unlabelled=unlabelled(v.precision))
                kill_point(stage, f"after_{v.key}")
                if err is not None:
                    results[key] = {"status": "error", "reason": err}
                    continue
                results[key] = stages.jsonable(res)
                outputs += [str(Path(key) / f) for f in _artifact_files(d / key)]
            return {"variants": results, "outputs": outputs,
                    **({"unlabelled": unlabelled.info} if unlabelled.info else {})}

        exp_res = run.run_stage("export", export_stage_inputs(profile, rec, deploy_ckpt, run.output_hash("data")),
                                export_stage, log)

        # ---- baselines: the uncompressed reference, exported like every variant -----------------
        # Measured in the same bundle (so timed interleaved with the compressed variants) and shown
        # as reference rows with compressed/uncompressed ratios; never gated, never recommended.
        base_res: dict[str, Any] | None = None
        if rec.compress is not None:
            ref_ckpt = run.root / "reference" / "reference.ckpt"

            def baseline_stage(d: Path) -> dict[str, Any]:
                ref_model, ref_spec, _ = load_checkpoint(ref_ckpt)
                return export_stage(d, ref_model, steps.apply_profile_input(ref_spec, profile), BASELINE_PREFIX, "baseline")

            base_res = run.run_stage("baseline", export_stage_inputs(profile, rec, ref_ckpt, run.output_hash("data")),
                                     baseline_stage, log)

        # ---- streaming: each chosen variant's step graph (recipe/profile `streaming:`) -------------
        from edgeskel.pipeline import streaming

        stream_res = streaming.stream_stage(run, profile, rec, dataset, deploy_ckpt, model, spec, run.output_hash("data"), log)

        # ---- validate on the device (local, ssh, or not measured) -----------------------------
        def validate_stage(d: Path) -> dict[str, Any]:
            from edgeskel.pipeline.validation import validate_variants

            torch_logits = predict_logits(model, test_x)
            return validate_variants(profile, spec, run.root / "export", exp_res["variants"], test_x, test_y,
                                     torch_logits, d, host_arch=HOST_ARCH, quiet=quiet,
                                     baselines=(base_res or {}).get("variants"), baseline_root=run.root / "baseline",
                                     streams=stream_res, stream_root=run.root / "stream")

        val_res = run.run_stage("validate", {"export": run.output_hash("export"),
                                             "gates": profile.gates.model_dump(mode="json"),
                                             "batch_sizes": profile.batch_sizes, "threads": profile.threads,
                                             "measure": profile.measure.model_dump(mode="json"),
                                             "ssh": profile.ssh is not None,
                                             "baseline": run.output_hash("baseline") if base_res else None,
                                             "validate_logic": VALIDATE_LOGIC_VERSION,
                                             **({"stream": run.output_hash("stream")} if stream_res else {}),
                                             **({"streaming_gates": profile.streaming.model_dump(mode="json")}
                                                if profile.streaming is not None else {})},
                                    validate_stage, log)

        # ---- report ---------------------------------------------------------------------------
        run_report_stage(run, profile, rec.name, {"data": data_res, "reference": ref_res, "compress": comp_res,
                                                  "export": exp_res, "validate": val_res, "baseline": base_res,
                                                  "stream": stream_res},
                         deployed_stats(model, spec, test_x, test_y), log)
        import json

        # The hash-checked copies in report/ are the finished reports; the copies in the run
        # folder are for people, restored if they were deleted or edited.
        for name in ("report.json", "report.md", "report.html"):
            src, dst = run.root / "report" / name, run.root / name
            if not dst.is_file() or sha256_file(dst) != sha256_file(src):
                _copy(src, dst)
        report = json.loads((run.root / "report" / "report.json").read_text())
        if not quiet:
            from edgeskel.report import print_report

            print_report(report, run_dir=_as_typed(run.root))
        return report


def deployed_stats(model: Any, spec: Any, test_x: Any, test_y: Any) -> dict[str, Any]:
    """The deployed model's size and FLOPs (+ an ensemble's per-stream and fused test top-1)."""
    ens = steps.ensemble_accuracy(model, test_x, test_y)
    return {**steps.model_stats(model, spec), **({"ensemble": ens} if ens else {})}


def run_report_stage(run: RunDir, profile: DeviceProfile, recipe_name: str, res: dict[str, Any],
                     deployed_stats: dict[str, Any], log: Any = print) -> dict[str, Any]:
    """The report stage, from the finished stages recorded in the run's manifest. Shared by the
    pipeline and `edgeskel results import` (which updates the validate stage first), so an
    imported device run is gated and rendered by exactly the code an SSH run goes through.
    `res`: the results of the data, reference, compress (None without compression), export
    and validate stages."""

    def report_stage(d: Path) -> dict[str, Any]:
        from edgeskel.pipeline.validation import assemble_report
        from edgeskel.report import write_reports

        report = assemble_report(profile, recipe_name, res["data"], res["reference"], res["compress"], res["export"],
                                 res["validate"], deployed_stats, library_versions(), baseline=res.get("baseline"),
                                 run_root=run.root, streams=res.get("stream"))
        paths = write_reports(report, run.root)
        kill_point("report", "after_json")
        for name in ("report.json", "report.md", "report.html"):
            _copy(run.root / name, d / name)
        return {"outputs": ["report.json", "report.md", "report.html"], "passed": report["passed"],
                "verdict": report["verdict"], "paths": {k: str(v) for k, v in paths.items()}}

    return run.run_stage("report", {"validate": run.output_hash("validate"), "report_logic": REPORT_LOGIC_VERSION},
                         report_stage, log)


def _as_typed(path: Path) -> str:
    """`path` relative to the current folder when it is below it (what a person types), else absolute."""
    try:
        return str(path.absolute().relative_to(Path.cwd()))
    except ValueError:
        return str(path.absolute())


def _copy(src: Path, dst: Path) -> None:
    from edgeskel.io import atomic_write_bytes

    atomic_write_bytes(dst, src.read_bytes())


def _artifact_files(d: Path) -> list[str]:
    return sorted(str(p.relative_to(d)) for p in d.rglob("*") if p.is_file() and not p.name.startswith("."))


__all__ = ["EdgeskelError", "run_pipeline", "run_report_stage"]
