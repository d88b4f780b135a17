"""Plain-dict summary of a Dataset (what `edgeskel data` prints): what was read, from where,
in which layout, how well the layout fits, and what was skipped."""

from __future__ import annotations

from typing import Any

import numpy as np

from edgeskel.data.types import Dataset, SkeletonSet


def _split_summary(s: SkeletonSet, num_classes: int) -> dict[str, Any]:
    if not len(s):
        return {"samples": 0, "per_class": [0] * num_classes}
    lengths, persons = s.lengths(), s.persons()
    counts = np.bincount(s.labels, minlength=num_classes)
    return {
        "samples": len(s),
        "frames_min": int(lengths.min()),
        "frames_median": float(np.median(lengths)),
        "frames_max": int(lengths.max()),
        "persons_max": int(persons.max()),
        "persons_hist": {str(k): int(v) for k, v in zip(*np.unique(persons, return_counts=True), strict=True)},
        "per_class": [int(c) for c in counts],
    }


def summarize(ds: Dataset) -> dict[str, Any]:
    parts = [("train", ds.train)] + ([("val", ds.val)] if ds.val is not None else []) + [("test", ds.test)]
    return {
        "spec": ds.spec,
        "layout": ds.layout.name,
        "layout_definition": ds.layout.to_dict(),
        "joints": ds.layout.num_joints,
        "channels": ds.layout.channels,
        "classes": list(ds.class_names),
        "splits": {name: _split_summary(s, ds.num_classes) for name, s in parts},
        "skipped": [{"sample": s, "problem": p} for s, p in ds.skipped],
        "warnings": list(ds.warnings),
        "info": ds.info,
    }
