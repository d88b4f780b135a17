"""Accuracy of a runner on a labelled validation set, and agreement with reference logits.

Units: `top1`, `top5` and `agreement` are PERCENT (0-100) so that a gate's
`max_top1_drop: 1.0` means one percentage point. The metric code lives in the standalone
device runner (`edgeskel/remote/device_runner.py`) so local and on-device numbers are
computed by the same lines.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edgeskel.errors import DataError
from edgeskel.remote.device_runner import evaluate
from edgeskel.runtime.base import Runner


def evaluate_runner(
    runner: Runner,
    x: np.ndarray,
    y: np.ndarray,
    batch_size: int = 16,
    ref_logits: np.ndarray | None = None,
    pad_to_batch: bool = False,
    return_logits: bool = False,
) -> dict[str, Any]:
    """Run `runner` over x (N, C, T, V, M) in batches; returns
    {top1, top5, num_samples, agreement, max_abs_vs_ref, nonfinite} (+ `logits` if asked).

    `agreement` (% of samples whose top-1 equals the reference's top-1) and `max_abs_vs_ref`
    are None without `ref_logits`; `nonfinite` counts samples with any NaN/Inf logit.
    `pad_to_batch` pads the last batch for fixed-batch artifacts.
    """
    x = np.asarray(x)
    y = np.asarray(y)
    if x.ndim != 5:
        raise DataError(None, f"validation inputs must be (N, C, T, V, M), got shape {x.shape}")
    if y.shape[0] != x.shape[0]:
        raise DataError(None, f"{x.shape[0]} validation samples but {y.shape[0]} labels")
    if ref_logits is not None and len(ref_logits) != len(x):
        raise DataError(None, f"{len(x)} validation samples but {len(ref_logits)} reference logits rows")
    stats, logits = evaluate(runner.infer, x, y, batch_size, ref_logits, pad_to_batch=pad_to_batch)
    if return_logits:
        stats["logits"] = logits
    return stats
