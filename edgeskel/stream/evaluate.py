"""Accuracy of a step model on recorded sequences fed as streams (raw frames, then the end).

Each test sequence is replayed exactly as a pose source would give it (camera-space joints,
all-zero frames included, persons in the file's order, no resampling), the stream is ended
after its last frame, and the final decision -- the one that covers the sequence to its last
frame -- is compared with the label. The windowed top-1 of the same model on the same
sequences (resampled to `num_frames`, the pipeline's evaluation) is computed beside it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from edgeskel.data.types import SkeletonSet
from edgeskel.stream.step import StepModel, run_stream


def as_stream_frames(sample: np.ndarray, persons: int) -> np.ndarray:
    """A raw sample (C, T, V, M_i) as stream frames (C, T, V, persons): extra persons dropped,
    missing ones zero (the source's order; no 'most active' selection, which needs the clip)."""
    x = np.asarray(sample, dtype=np.float32)
    if x.shape[3] < persons:
        x = np.concatenate([x, np.zeros((*x.shape[:3], persons - x.shape[3]), np.float32)], axis=3)
    return np.ascontiguousarray(x[..., :persons])


def stream_predictions(step: StepModel, sset: SkeletonSet,
                       progress: Callable[[int, int], None] | None = None) -> np.ndarray:
    """(N,) the class of each sequence's final decision after the stream is ended."""
    preds = np.empty(len(sset), np.int64)
    for i, sample in enumerate(sset.samples):
        frames = torch.from_numpy(as_stream_frames(sample, step.plan.persons))
        preds[i] = int(run_stream(step, frames, end=True)[-1].argmax())
        if progress is not None:
            progress(i + 1, len(sset))
    return preds


def windowed_predictions(model: torch.nn.Module, spec, sset: SkeletonSet, batch: int = 32) -> np.ndarray:
    from edgeskel.data.preprocess import preprocess_set

    x = preprocess_set(sset, spec.layout, spec.preprocess)
    out = []
    with torch.no_grad():
        for i in range(0, len(x), batch):
            out.append(model(torch.from_numpy(x[i:i + batch])).argmax(1).numpy())
    return np.concatenate(out) if out else np.zeros(0, np.int64)


def compare(model: torch.nn.Module, spec, step: StepModel, sset: SkeletonSet,
            progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Windowed top-1 of `model` (its own preprocessing: resampled clips) vs streaming top-1 of
    `step` (which may come from another checkpoint, e.g. `model` fine-tuned for streams) (%) on
    one split, and how often the two agree."""
    model = model.eval()
    win = windowed_predictions(model, spec, sset)
    st = stream_predictions(step, sset, progress)
    labels = sset.labels
    return {"samples": int(len(sset)), "windowed_top1": round(float((win == labels).mean() * 100), 2),
            "streaming_top1": round(float((st == labels).mean() * 100), 2),
            "agreement": round(float((win == st).mean() * 100), 2), "plan": step.plan.to_dict()}
