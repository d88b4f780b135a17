"""Plain-dict summary of a Dataset (what `edgeskel data` prints)."""

from __future__ import annotations

from typing import Any

import numpy as np

from edgeskel.data.types import Dataset


def summarize(ds: Dataset) -> dict[str, Any]:
    splits = {}
    for name, s in (("train", ds.train), ("test", ds.test)):
        lengths, persons = s.lengths(), s.persons()
        counts = np.bincount(s.labels, minlength=ds.num_classes)
        splits[name] = {
            "samples": len(s),
            "frames_min": int(lengths.min()),
            "frames_median": float(np.median(lengths)),
            "frames_max": int(lengths.max()),
            "persons_max": int(persons.max()),
            "persons_hist": {str(k): int(v) for k, v in zip(*np.unique(persons, return_counts=True), strict=True)},
            "per_class": [int(c) for c in counts],
        }
    return {
        "spec": ds.spec,
        "layout": ds.layout.name,
        "joints": ds.layout.num_joints,
        "channels": ds.layout.channels,
        "classes": list(ds.class_names),
        "splits": splits,
        "skipped": [{"sample": s, "problem": p} for s, p in ds.skipped],
        "info": ds.info,
    }
