"""Top-k accuracy in percent (the unit every edgeskel report uses)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn


def topk_accuracy(logits: np.ndarray, labels: np.ndarray, k: int = 1) -> float:
    """Percentage of samples whose label is among the k highest logits."""
    if len(labels) == 0:
        return float("nan")
    k = min(k, logits.shape[1])
    top = np.argsort(-logits, axis=1)[:, :k]
    return float((top == labels[:, None]).any(axis=1).mean() * 100.0)


@torch.no_grad()
def predict_logits(model: nn.Module, x: np.ndarray, batch_size: int = 64,
                   device: torch.device | str | None = None) -> np.ndarray:
    """Run a model over a (N, C, T, V, M) array in eval mode, returning float32 logits. `x` may
    also be a list (or object array) of (C, T_i, V, M) clips of their own lengths: clips of equal
    length are batched together, so each is computed exactly at its length.

    `device`: where the model lives (its batches are moved there); None = the model's device."""
    model.eval()
    if device is None:
        p = next(model.parameters(), None)
        device = p.device if p is not None else torch.device("cpu")
    device = torch.device(device)
    if not isinstance(x, np.ndarray) or x.dtype == object:
        return _predict_ragged(model, list(x), batch_size, device)
    outs = []
    for i in range(0, len(x), batch_size):
        xb = torch.from_numpy(np.ascontiguousarray(x[i : i + batch_size], dtype=np.float32))
        if device.type != "cpu":
            xb = xb.pin_memory().to(device, non_blocking=True)
        outs.append(model(xb).float().cpu().numpy())
    if not outs:
        return np.zeros((0, 0), np.float32)
    return np.concatenate(outs).astype(np.float32)


def accuracy_summary(logits: np.ndarray, labels: np.ndarray) -> dict[str, float | int]:
    return {
        "top1": topk_accuracy(logits, labels, 1),
        "top5": topk_accuracy(logits, labels, 5),
        "num_samples": int(len(labels)),
    }


def _predict_ragged(model: nn.Module, clips: list[np.ndarray], batch_size: int, device: torch.device) -> np.ndarray:
    by_length: dict[int, list[int]] = {}
    for i, c in enumerate(clips):
        by_length.setdefault(int(c.shape[1]), []).append(i)
    out: np.ndarray | None = None
    for idx in by_length.values():
        logits = predict_logits(model, np.stack([clips[i] for i in idx]), batch_size, device)
        if out is None:
            out = np.zeros((len(clips), logits.shape[1]), np.float32)
        out[idx] = logits
    return out if out is not None else np.zeros((0, 0), np.float32)
