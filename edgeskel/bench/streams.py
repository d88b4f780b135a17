"""Streaming rows of `edgeskel bench` (issue 30): the step graph (ONNX Runtime fp32, stride mode
keep, the model's own window) of the original and of the compressed model, beside the windowed
rows. A row's latency is one step call on recorded test frames (one decision per call; state
carried), timed in the benchmark's interleaved run at batch 1 only; its top-1 is the ended
stream's final decision on the same test sequences the windowed rows are scored on, fed raw.
Models without a streaming form get no row (the reason is logged and recorded).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edgeskel.errors import EdgeskelError

GROUP = "streaming"


def stream_rows(models: dict[str, tuple[Any, Any]], dataset: Any, n_test: int, roots: dict[str, Path], threads: int,
                log: Any) -> tuple[dict[str, dict[str, Any]], dict[str, Any], dict[str, str]]:
    """({key: row}, {key: timed callable}, {model: why not streamed}) for `models`
    ({"original" | "compressed": (module, spec)}); step graphs cached under `roots[model]`."""
    from edgeskel.data.types import SkeletonSet
    from edgeskel.models.profile import count_params
    from edgeskel.pipeline.streaming import recorded_sequences
    from edgeskel.remote.device_runner import StreamCaller, last_decisions
    from edgeskel.stream import build_step_model
    from edgeskel.stream.cost import step_flops
    from edgeskel.stream.export import export_streaming
    from edgeskel.stream.replay import session_for
    from edgeskel.train.metrics import accuracy_summary

    k = min(n_test, len(dataset.test))  # the windowed rows' test samples: the split's first n (bench/models.py)
    head = SkeletonSet(dataset.test.samples[:k], dataset.test.labels[:k], dataset.test.names[:k])
    rows: dict[str, dict[str, Any]] = {}
    infers: dict[str, Any] = {}
    skipped: dict[str, str] = {}
    for which, (model, spec) in models.items():
        out = roots[which]
        try:
            step = build_step_model(model, spec, "keep")
            if not (out / "streaming.json").is_file():
                export_streaming(model, spec, "ort", "fp32", out, stride_mode="keep")
        except EdgeskelError as exc:
            skipped[which] = str(exc).splitlines()[0]
            log(f"{spec.name} ({which}): no streaming row: {skipped[which]}")
            continue
        seqs, labels = recorded_sequences(head, spec.preprocess.num_person, k)
        session = session_for(out, "ort", threads)
        acc = accuracy_summary(last_decisions(session, seqs), labels)
        key = f"{GROUP}/ort-fp32-{which}"
        rows[key] = {"key": key, "label": f"edgeskel step graph, ORT fp32 ({which} model)", "group": GROUP,
                     "model": which, "backend": "ort", "precision": "fp32",
                     "how": f"step graph: {step.plan.stride} frame(s) + state per call, a decision per call, window "
                            f"{step.plan.window} (docs/STREAMING.md); top-1 = the ended stream's final decision",
                     "artifact": str(out / "model.onnx"), "size_bytes": (out / "model.onnx").stat().st_size,
                     "size_mb": (out / "model.onnx").stat().st_size / 1e6, "params": count_params(model),
                     "gflops": step_flops(step) / 1e9, "stride": step.plan.stride, "window": step.plan.window,
                     "top1": acc["top1"], "top5": acc.get("top5"), "nonfinite": 0, "num_samples": len(seqs),
                     "agreement": None}
        infers[key] = StreamCaller(session, np.concatenate(seqs, axis=1))
    return rows, infers, skipped
