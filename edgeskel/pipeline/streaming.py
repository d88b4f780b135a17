"""The `stream` stage of `make export`: a step graph (docs/STREAMING.md) beside each variant.

Asked for by the recipe's `streaming:` section or the device profile's `streaming:` gates.
Each chosen profile variant `<v>` gets `stream/<v>-stream/` (model.onnx or the backend's file,
streaming.json), exported from the deployed model by the same `export_streaming` as
`edgeskel export --form streaming`; the validate stage packs them into the run's one bundle,
where the device runner replays recorded test sequences frame by frame (streaming top-1 at each
sequence's last frame, per-call latency timed interleaved with the windowed variants, state
bytes). The recorded sequences are the test split's raw frames, as a pose source gives them.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgeskel.errors import ConfigError
from edgeskel.io import sha256_file
from edgeskel.recipe import StreamingSection

if TYPE_CHECKING:
    from edgeskel.devices import DeviceProfile, Variant
    from edgeskel.pipeline.rundir import RunDir
    from edgeskel.recipe import Recipe

STREAM_SUFFIX = "-stream"  # `<variant>-stream`: the step graph of a profile variant
STREAM_LOGIC_VERSION = 3  # 2 = OpenVINO INT8 step graphs with MINMAX activation ranges; 3 = max pools finite outside the stream (user modules stream); bump when the stage makes other artifacts from the same inputs
SEQUENCES = "sequences.npz"  # the recorded test sequences the bundle replays


def stream_name(variant_key: str) -> str:
    return variant_key + STREAM_SUFFIX


def settings(profile: DeviceProfile, rec: Recipe) -> StreamingSection | None:
    """The streaming settings of this run, None when neither the recipe nor the profile asks."""
    if rec.streaming is not None:
        return rec.streaming
    return StreamingSection() if profile.streaming is not None else None


def stream_variants(profile: DeviceProfile, rec: Recipe) -> list[Variant]:
    """The profile variants that get a step graph: the recipe's list, else every variant whose
    backend and precision have one (edgeskel/backends/ `streaming_precisions`)."""
    from edgeskel.backends import get_backend

    cfg = settings(profile, rec)
    if cfg is None:
        return []
    streamable = [v for v in profile.variants if v.precision in get_backend(v.backend).streaming_precisions]
    if cfg.variants is None:
        return streamable
    keys = {v.key: v for v in profile.variants}
    unknown = [k for k in cfg.variants if k not in keys]
    if unknown:
        raise ConfigError(f"recipe {rec.name!r}: streaming.variants {unknown} are not variants of profile "
                          f"{profile.name!r} (its variants: {list(keys)})")
    no_step = [k for k in cfg.variants if keys[k] not in streamable]
    if no_step:
        raise ConfigError(f"recipe {rec.name!r}: streaming.variants {no_step} have no step graph on their backend and "
                          f"precision (streamable here: {[v.key for v in streamable] or 'none'})")
    return [keys[k] for k in cfg.variants]


def recorded_sequences(sset: Any, persons: int, cap: int, seed: int = 0) -> tuple[list[np.ndarray], np.ndarray]:
    """Up to `cap` sequences of a split as a pose source gives them (raw frames, no resampling),
    a seeded subset in the split's order, and their labels."""
    from edgeskel.stream.evaluate import as_stream_frames

    n = len(sset)
    idx = np.arange(n) if n <= cap else np.sort(np.random.default_rng(seed).permutation(n)[:cap])
    seqs = [as_stream_frames(sset.samples[int(i)], persons) for i in idx]
    keep = [k for k, f in enumerate(seqs) if f.shape[1] > 0]
    return [seqs[k] for k in keep], np.asarray(sset.labels)[idx][keep].astype(np.int64)


def calibration_sequences(split: Any, persons: int, calib_samples: int) -> list[np.ndarray]:
    """The recorded training sequences an INT8 step graph calibrates on (`split`: the holdout
    split, its train part; at most 64, seeded): the same for `make export` and `tune`."""
    return recorded_sequences(split.train, persons, min(calib_samples, 64), seed=1)[0]


def load_sequences(path: Path) -> tuple[list[np.ndarray], np.ndarray]:
    with np.load(path) as z:
        frames, lengths, labels = z["frames"], z["lengths"], z["labels"]
    ends = np.cumsum(lengths)
    return [frames[:, e - n:e] for n, e in zip(lengths, ends, strict=True)], labels


def stream_model(checkpoint: str, deployed_spec: Any, dataset: Any) -> tuple[Any, Any]:
    """(model, spec) of `streaming.checkpoint`, refused unless it fits the run's data (classes,
    joints, channels) as the deployed model does."""
    from edgeskel.checkpoint import load_checkpoint
    from edgeskel.train.api import check_compatible

    model, spec, extra = load_checkpoint(checkpoint)
    check_compatible(spec, dataset, checkpoint, extra, fix="give streaming.checkpoint a model of this recipe's data")
    if list(spec.class_names) != list(deployed_spec.class_names):
        raise ConfigError(f"{checkpoint}: streaming.checkpoint has classes {list(spec.class_names)[:4]}..., the deployed "
                          f"model {list(deployed_spec.class_names)[:4]}...: a report cannot compare them")
    return model, spec


def stream_stage(run: RunDir, profile: DeviceProfile, rec: Recipe, dataset: Any, deploy_ckpt: Path,
                 model: Any, spec: Any, data_hash: str, log: Any = print) -> dict[str, Any] | None:
    """Export the step graphs (None when the run asks for no streaming). A model without a
    streaming form makes each streaming variant an ERROR row with the reason, not a crash."""
    cfg = settings(profile, rec)
    chosen = stream_variants(profile, rec)
    if cfg is None:
        return None
    if not chosen:
        raise ConfigError(f"streaming asked for (recipe {rec.name!r} or profile {profile.name!r}) but no variant of "
                          f"{profile.name!r} has a step graph on its backend and precision")
    if cfg.checkpoint is not None:  # the model fine-tuned for streams, streamed instead of the deployed one
        model, spec = stream_model(cfg.checkpoint, spec, dataset)
    inputs = {"streaming": cfg.model_dump(mode="json", exclude={"checkpoint"}),
              "variants": [v.model_dump(mode="json") for v in chosen],
              "model": sha256_file(cfg.checkpoint or deploy_ckpt), "data": data_hash, "logic": STREAM_LOGIC_VERSION,
              "calib_samples": rec.export.calib_samples}

    def export_streams(d: Path) -> dict[str, Any]:
        from edgeskel.data.splits import holdout
        from edgeskel.pipeline.stages import variant_export_options
        from edgeskel.pipeline.steps import safe_call
        from edgeskel.stream.export import export_streaming

        persons = spec.preprocess.num_person
        seqs, labels = recorded_sequences(dataset.test, persons, cfg.max_sequences)
        np.savez(d / SEQUENCES, frames=np.concatenate(seqs, axis=1), lengths=np.asarray([f.shape[1] for f in seqs]),
                 labels=labels)
        calib = holdout_seqs = None
        if any(v.precision == "int8" for v in chosen):  # calibrate on training, judge on validation sequences
            split = holdout(dataset)
            calib = calibration_sequences(split, persons, rec.export.calib_samples)
            holdout_seqs, _ = recorded_sequences(split.val, persons, 64, seed=2)
        results: dict[str, Any] = {}
        outputs = [SEQUENCES]
        for v in chosen:
            name = stream_name(v.key)
            log(f"[stream] {name}: step graph ({v.backend} {v.precision}, stride mode {cfg.stride_mode})")
            res, err = safe_call(export_streaming, model, spec, v.backend, v.precision, d / name,
                                 stride_mode=cfg.stride_mode, window=cfg.window, calib=calib, holdout=holdout_seqs,
                                 options=variant_export_options(profile, rec, v), batch=cfg.batch)
            if err is not None:
                results[name] = {"status": "error", "reason": err, "of": v.key}
                log(f"[stream] {name}: ERROR {err}")
                continue
            results[name] = {**res, "status": "passed", "of": v.key}
            outputs += [str(p.relative_to(d)) for p in sorted((d / name).rglob("*")) if p.is_file()]
        return {"variants": results, "outputs": outputs, "sequences": len(seqs),
                "model": Path(cfg.checkpoint).name if cfg.checkpoint else "the deployed model"}

    return run.run_stage("stream", inputs, export_streams, log)


def streaming_rows(profile: DeviceProfile, variants: list[dict[str, Any]], streams: dict[str, Any],
                   val_res: dict[str, Any]) -> list[dict[str, Any]]:
    """report.json `streaming`: one row per step graph with its streaming metrics (per step call;
    streams sustained at the profile's fps), its top-1 beside the same variant windowed, the
    speed-up per decision over recomputing the window (both timed in the same run, batch 1) and
    the profile's streaming gates. Host checks and emulators keep accuracy, not latency."""
    from edgeskel.validate.gates import streaming_checks, streams_sustained, verdict_of_checks

    fps = profile.streaming.fps if profile.streaming is not None else 30.0
    windowed = {v["name"]: v for v in variants}
    rows, measured = [], []  # measured: the rows judged below, once every row's top-1 is known
    for name, exp in (streams.get("variants") or {}).items():
        of = windowed.get(exp.get("of")) or {}
        plan = exp.get("plan") or {}
        row: dict[str, Any] = {"name": name, "of": exp.get("of"), "backend": of.get("backend"),
                               "precision": of.get("precision"), "measured_on": "none", "fps": fps,
                               "stride": plan.get("stride"), "window": plan.get("window"),
                               "stride_mode": plan.get("stride_mode"), "top1": None,
                               "model": streams.get("model", "the deployed model"),
                               "windowed_top1": (of.get("host_check") or {}).get("top1", of.get("top1")),
                               "latency_ms": {"p50": None, "p90": None, "p99": None}}
        meas = val_res["measured"].get(name)
        if exp.get("status") != "passed":
            row.update(status="error", reason=f"streaming export failed: {exp.get('reason') or 'unknown'}")
        elif meas is None:
            row.update(status="skipped", reason=val_res["not_measured"].get(name, f"not measured on {profile.name}"))
        elif meas.get("status", "ok") != "ok":
            row.update(status="error", reason=f"measurement failed: {meas.get('error')}")
        else:
            st, acc = meas.get("streaming") or {}, meas.get("accuracy") or {}
            row.update(measured_on=meas.get("measured_on", "local"), top1=acc.get("top1"), top5=acc.get("top5"),
                       nonfinite=acc.get("nonfinite"), sequences=st.get("sequences"), calls=st.get("calls"),
                       state_kb=round(st["state_bytes"] / 1024, 1) if st.get("state_bytes") is not None else None,
                       states=st.get("states"), valid_from=st.get("valid_from"), timing=meas.get("timing"))
            if meas.get("host_only"):
                row["host_check"] = True
            if meas.get("emulated"):
                row["emulated"] = True
            lats = meas.get("latency_ms") or {}
            lat = lats.get(str(st.get("batch", 1))) or lats.get("1")  # a step call serving `batch` streams
            batch = int(st.get("batch", 1))
            row["batch"] = batch
            if lat and not (row.get("host_check") or row.get("emulated")):
                stride = int(st.get("stride") or row["stride"] or 1)
                row["latency_ms"] = {k: lat.get(k) for k in ("p50", "p90", "p99")}
                row["mean_ms"] = lat.get("mean")
                row["decisions_per_s"] = round(batch * 1000.0 / lat["mean"], 1) if lat.get("mean") else None
                row["frames_per_s"] = round(batch * stride * 1000.0 / lat["mean"], 1) if lat.get("mean") else None
                row["streams_sustained"] = streams_sustained(lat.get("mean"), stride, fps, batch)
                win_p50 = (of.get("latency_ms") or {}).get("p50") if of.get("measured_on") == row["measured_on"] else None
                if win_p50 and lat.get("p50"):
                    row["speedup_per_decision"] = round(batch * float(win_p50) / float(lat["p50"]), 2)  # N decisions/call
                    win_mean = ((of.get("latency_by_batch") or {}).get("1") or {}).get("mean") or win_p50
                    # the windowed model recomputing its window at the same cadence (a decision every stride frames)
                    row["windowed_streams_sustained"] = streams_sustained(float(win_mean), stride, fps)
            measured.append(row)
        if row["top1"] is not None and row["windowed_top1"] is not None:
            row["top1_change"] = round(float(row["top1"]) - float(row["windowed_top1"]), 3)
        rows.append(row)
    # a reduced-precision stream answers to the fp32 stream of the same model, as a quantized
    # windowed variant answers to the reference (the profile's gates.max_top1_drop)
    fp32 = next((r["top1"] for r in rows if r.get("precision") == "fp32" and r.get("top1") is not None), None)
    for row in measured:
        if fp32 is not None and row.get("precision") != "fp32":
            row["fp32_stream_top1"] = fp32
        row["gates"] = streaming_checks(row, profile)
        status, reason = verdict_of_checks(row["gates"])
        if row.get("host_check") or row.get("emulated"):
            where = "this host" if row.get("host_check") else "an emulator"
            status = "fail" if status == "fail" else "skipped"
            reason = (f"accuracy checked on {where}, not on a {profile.name}; latency not the device's"
                      + (f": {reason}" if status == "fail" else ""))
        row.update(status=status, reason=reason)
    return rows
