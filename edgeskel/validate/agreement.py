"""INT8 judged on more than a small labelled slice: agreement with the float model on
unlabelled clips.

A validation slice of 20-100 clips cannot resolve a 1-point gate (one clip is 1-5 points):
on SBU INT8 met its gate on validation and then lost 2-4 points on test in 2-3 folds of 5.
Whether INT8 changes a prediction needs no label, so it can be measured on many clips the
model was not calibrated on (training clips outside the calibration set, and training-time
augmented views of them). A flipped prediction is the most a clip can cost, so the share of
flipped predictions bounds the top-1 drop the same clips would show: the gate requires it to
be within the same `max_drop`.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def agreement_gate(int8_logits: np.ndarray, float_logits: np.ndarray, max_drop: float) -> dict[str, Any]:
    """{samples, agreement, flip_rate, max_abs, p95_abs, max_flip_rate, passed}: how far INT8
    moves the float model's predictions and logits on unlabelled clips (fractions, not points)."""
    a = np.asarray(int8_logits, np.float32)
    b = np.asarray(float_logits, np.float32)
    if a.shape != b.shape or a.ndim != 2 or len(a) == 0:
        raise ValueError(f"unlabelled logits must be two equal (N, K) arrays, got {a.shape} and {b.shape}")
    flips = a.argmax(1) != b.argmax(1)
    err = np.abs(a - b).max(1)
    finite = bool(np.isfinite(a).all())
    flip_rate = float(flips.mean())
    return {"samples": int(len(a)), "agreement": 1.0 - flip_rate, "flip_rate": flip_rate,
            "max_abs": float(err.max()), "p95_abs": float(np.quantile(err, 0.95)),
            "max_flip_rate": float(max_drop), "passed": finite and flip_rate <= max_drop + 1e-12}
