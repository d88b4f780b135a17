"""Windowed vs streaming as a search dimension of `edgeskel tune` (issue 30).

A stream workload (the recipe's or the profile's `streaming:`, as for `make export`) wants a
decision every `stride` frames of a live stream. Each final compression option (or, with
`streaming.checkpoint`, the model fine-tuned for streams) then also gets a step graph per
searched variant whose backend and precision have one: candidate `<option>/<variant>-stream`.
Its accuracy is streaming top-1 on the validation split's recorded sequences (the decision at
each sequence's last frame); its latency is one step call. The windowed candidates and the step
graphs are timed again in ONE interleaved run at batch 1, so the choice compares the cost of a
decision either way on the same clock: a windowed candidate recomputes its window per decision.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgeskel.backends import get_backend
from edgeskel.checkpoint import load_checkpoint
from edgeskel.io import atomic_write_json, sha256_file
from edgeskel.pipeline import stages, steps
from edgeskel.pipeline.streaming import calibration_sequences, recorded_sequences, settings
from edgeskel.remote.device_runner import last_decisions

if TYPE_CHECKING:
    from edgeskel.tune.search import _Search

STREAM_FORM = "streaming"
STREAM_SOURCE = "streaming-checkpoint"  # option key of the model fine-tuned for streams (streaming.checkpoint)


def search_streams(search: _Search, logic: int) -> bool:
    """Add the streaming candidates and time them with the windowed finals (batch 1, one
    interleaved run). False when the run is no stream workload (nothing done)."""
    s = search
    cfg = settings(s.profile, s.rec)
    if cfg is None:
        return False
    variants = [v for v in s.wanted if v.precision in get_backend(v.backend).streaming_precisions]
    if not variants:
        s.log("[tune] streaming: no searched variant has a step graph on its backend and precision")
        return False
    from edgeskel.data.splits import holdout

    split = holdout(s.dataset)
    persons = s.spec.preprocess.num_person
    val_seqs, val_labels = recorded_sequences(split.val, persons, cfg.max_sequences)
    calib = holdout_seqs = None
    if any(v.precision == "int8" for v in variants):
        calib, holdout_seqs = calibration_sequences(split, persons, s.rec.export.calib_samples), val_seqs[:64]
    finals = [c for c in s.cands.values() if c["status"] == "ok"]
    sources = ({STREAM_SOURCE: Path(cfg.checkpoint)} if cfg.checkpoint
               else {k: s.models[k] for k in sorted({c["compression"] for c in finals})})
    for key, ckpt in sources.items():
        s.cands.update(_stream_option(s, key, ckpt, variants, cfg, val_seqs, val_labels, calib, holdout_seqs, logic))
    streams = {cid: c for cid, c in s.cands.items() if c.get("form") == STREAM_FORM and c["status"] == "ok"}
    windowed = {c["id"]: c for c in finals}
    if streams:
        _time_side_by_side(s, windowed, streams, val_seqs, val_labels, logic)
    return True


def _stream_option(s: _Search, key: str, ckpt: Path, variants: list[Any], cfg: Any, val_seqs: list[np.ndarray],
                   val_labels: np.ndarray, calib: list[np.ndarray] | None, holdout_seqs: list[np.ndarray] | None,
                   logic: int) -> dict[str, dict[str, Any]]:
    """Step graphs of one model for every streamable variant, with streaming validation top-1."""

    def stage(d: Path) -> dict[str, Any]:
        from edgeskel.stream.export import export_streaming
        from edgeskel.stream.replay import session_for
        from edgeskel.train.metrics import accuracy_summary

        model, spec, _ = load_checkpoint(ckpt)
        out, outputs = {}, []
        for v in variants:
            res, err = steps.safe_call(export_streaming, model, spec, v.backend, v.precision, d / v.key,
                                       stride_mode=cfg.stride_mode, window=cfg.window, calib=calib, holdout=holdout_seqs,
                                       options=stages.variant_export_options(s.profile, s.rec, v))  # batch 1: p50 = a decision
            if err is not None:
                out[v.key] = {"status": "error", "reason": err.splitlines()[0][:300]}
                s.log(f"[tune] {key}/{v.key}-stream: {err.splitlines()[0][:120]}")
                continue
            here = get_backend(v.backend)  # a TensorRT step engine exists on the device only: its ONNX on ORT here
            session = (session_for(d / v.key, v.backend, s.profile.threads, v.precision) if here.runs_here
                       else session_for(d / v.key, "ort", s.profile.threads, v.precision, onnx_dir=d / v.key / "tensorrt"))
            last = last_decisions(session, val_seqs)
            files = [Path(p) for p in res["files"] if Path(p).suffix in (".onnx", ".xml", ".bin")]
            out[v.key] = {"status": "ok", "top1": accuracy_summary(last, val_labels)["top1"],
                          "size_bytes": int(sum(p.stat().st_size for p in files if p.is_file())),
                          "stride": res["plan"]["stride"], "window": res["plan"]["window"]}
            outputs += [str(p.relative_to(d)) for p in sorted((d / v.key).rglob("*")) if p.is_file()]
            s.log(f"[tune] {key}/{v.key}-stream: step graph, validation streaming top-1 {out[v.key]['top1']:.2f}")
        return {"variants": out, "outputs": outputs}

    inputs = {"model": sha256_file(ckpt), "streaming": cfg.model_dump(mode="json", exclude={"checkpoint"}),
              "variants": [v.model_dump(mode="json") for v in variants], "data": s.run.output_hash("data"),
              "threads": s.profile.threads, "logic": logic}
    res = s.run.run_stage(f"stream-{key}", inputs, stage, s.log)
    cands = {}
    for v in variants:
        r = res["variants"][v.key]
        cid = f"{key}/{v.key}-stream"
        cands[cid] = {"id": cid, "compression": "none" if key == STREAM_SOURCE else key, "source": key,
                      "variant": v.key, "backend": v.backend, "precision": v.precision, "options": v.options,
                      "form": STREAM_FORM, **r}
        if r["status"] == "ok":
            cands[cid]["step_dir"] = str(s.run.root / f"stream-{key}" / v.key)
    return cands


def _time_side_by_side(s: _Search, windowed: dict[str, dict[str, Any]], streams: dict[str, dict[str, Any]],
                       val_seqs: list[np.ndarray], val_labels: np.ndarray, logic: int) -> None:
    """One interleaved run at batch 1: every windowed final (one window per decision) and every
    step graph (one call per decision on recorded frames, state carried); here, or on the SSH
    device in one bundle (its top-1 then replaces the host's)."""
    from edgeskel.remote.device_runner import StreamCaller
    from edgeskel.runtime import get_runner
    from edgeskel.stream.replay import session_for
    from edgeskel.validate.latency import batch_from

    frames = np.concatenate(val_seqs, axis=1)

    def stage(d: Path) -> dict[str, Any]:
        if s.measure is None:  # on the SSH device: windowed finals and step graphs in one bundle
            from edgeskel.tune.device import measure_on_device

            res = measure_on_device({**windowed, **streams}, s.profile, s.arrays["val_x"], s.arrays["val_y"], s.runs, d,
                                    s.log, stream_data=(val_seqs, val_labels))
            atomic_write_json(d / "latency.json", res["latency"])
            return {"outputs": ["latency.json", "results.json"], **res}
        runners, infers = [], {}
        try:
            for cid, c in windowed.items():
                r = get_runner(c["runtime"]["backend"], c["artifact_path"], precision=c["runtime"]["precision"],
                               threads=s.profile.threads, **c["options"]).load()
                runners.append(r)
                infers[cid] = r.infer
            for cid, c in streams.items():
                infers[cid] = StreamCaller(session_for(c["step_dir"], c["backend"], s.profile.threads, c["precision"]),
                                           frames)
            s.log(f"[tune] timing {len(windowed)} windowed and {len(streams)} streaming candidates interleaved, batch 1")
            lat = s.measure(infers, {1: batch_from(s.arrays["val_x"], 1)})
        finally:
            for r in runners:
                r.close()
        atomic_write_json(d / "latency.json", lat)
        return {"outputs": ["latency.json"], "latency": lat, "measured_on": "local"}

    files = {cid: sha256_file(c["artifact_path"]) for cid, c in windowed.items()}
    files.update({cid: sha256_file(Path(c["step_dir"]) / "streaming.json") for cid, c in streams.items()})
    inputs = {"artifacts": dict(sorted(files.items())), "threads": s.profile.threads, "logic": logic,
              "measure_by": s.measure_tag, "sequences": int(frames.shape[1])}
    if s.measure is None:
        inputs["device"] = {"ssh": s.profile.ssh.model_dump(mode="json"), "arch": s.profile.arch,
                            "tensorrt": s.profile.tensorrt.model_dump(mode="json") if s.profile.tensorrt else None}
    res = s.run.run_stage("stream-latency", inputs, stage, s.log)
    lat = res["latency"]
    for cid, c in {**windowed, **streams}.items():
        if cid in lat and "1" in lat[cid]:
            c["latency_ms"] = {**(c.get("latency_ms") or {}), "1": lat[cid]["1"]}
            c["timing"] = "windowed and streaming interleaved (batch 1)"
            c["measured_on"] = res.get("measured_on", "local")
            c.update(res.get("emulation") or {})
    for cid, top1 in (res.get("top1") or {}).items():  # the device's own streaming / windowed top-1
        if cid in streams and top1 is not None:
            streams[cid].setdefault("top1_host", streams[cid].get("top1"))
            streams[cid]["top1"] = top1
    for cid, why in (res.get("errors") or {}).items():
        if cid in streams:
            streams[cid].update(status="error", reason=f"on the device: {why}")


def streaming_test_top1(chosen: dict[str, Any], dataset: Any, persons: int, cap: int, threads: int | None) -> float:
    """Streaming top-1 of the chosen step graph on the test split's recorded sequences."""
    from edgeskel.stream.replay import session_for
    from edgeskel.train.metrics import accuracy_summary

    seqs, labels = recorded_sequences(dataset.test, persons, cap)
    session = session_for(chosen["step_dir"], chosen["backend"], threads, chosen["precision"])
    last = last_decisions(session, seqs)
    return float(accuracy_summary(last, labels)["top1"])
