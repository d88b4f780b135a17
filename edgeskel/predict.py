"""Run an edgeskel checkpoint on a raw canonical tensor (no preprocessing).

Used by `edgeskel predict` and as the PyTorch reference in parity checks.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from edgeskel.checkpoint import ModelSpec, load_checkpoint
from edgeskel.errors import DataError
from edgeskel.io import atomic_write_bytes


def check_input_shape(shape: tuple[int, ...], spec: ModelSpec, source: str) -> None:
    """(N, C, T, V, M) must match the spec's C, V and M; T is free (the models pool over time)
    unless the registry marks the architecture as needing the T it was built for."""
    from edgeskel.models import model_entry

    c, t, v, m = spec.input_shape
    fixed = model_entry(spec.name).fixed_frames
    ok = len(shape) == 5 and shape[1] == c and shape[3] == v and shape[4] == m and shape[2] >= 1
    if ok and (not fixed or shape[2] == t):
        return
    frames = f"{t} frames (architecture {spec.name!r} needs exactly the T it was built for)" if fixed else "any T"
    want = f"(N, {c}, {t if fixed else 'T'}, {v}, {m})"
    raise DataError(
        source,
        f"input shape {tuple(shape)} does not fit checkpoint model {spec.name!r}: expected {want} "
        f"= (N, C, T, V, M) for layout {spec.layout.name!r}, {frames}, {m} person(s)",
    )


@torch.no_grad()
def predict_array(model: nn.Module, x: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """(N, C, T, V, M) float32 -> (N, K) float32 logits, in eval mode, in batches."""
    model.eval()
    outs = []
    for i in range(0, x.shape[0], max(1, batch_size)):
        chunk = torch.from_numpy(np.ascontiguousarray(x[i : i + batch_size], dtype=np.float32))
        outs.append(model(chunk).float().numpy())
    return np.concatenate(outs, 0) if outs else np.zeros((0, 0), np.float32)


def load_input(path: str | Path) -> np.ndarray:
    """A .npy array (no pickles); a single (C, T, V, M) sample gets a batch axis."""
    path = Path(path)
    try:
        x = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise DataError(path, "input file not found") from None
    except (ValueError, OSError, EOFError) as exc:  # EOFError: an empty file
        raise DataError(path, f"not a readable .npy array: {exc}") from None
    if not isinstance(x, np.ndarray):  # an .npz archive
        raise DataError(path, f"expected one .npy array, got a {type(x).__name__} archive")
    if not np.issubdtype(x.dtype, np.floating) and not np.issubdtype(x.dtype, np.integer):
        raise DataError(path, f"expected a numeric array, got dtype {x.dtype}")
    if x.ndim == 4:
        x = x[None]
    if not np.isfinite(x).all():
        raise DataError(path, "input contains NaN or inf")
    return x.astype(np.float32, copy=False)


def predict_file(checkpoint: str | Path, input_path: str | Path, out_path: str | Path, batch_size: int = 64) -> dict[str, Any]:
    """Load checkpoint + .npy input, validate the shape, write logits .npy atomically."""
    model, spec, _ = load_checkpoint(checkpoint)
    x = load_input(input_path)
    check_input_shape(x.shape, spec, str(input_path))
    logits = predict_array(model, x, batch_size)
    buf = io.BytesIO()
    np.save(buf, logits)
    atomic_write_bytes(out_path, buf.getvalue())
    top1 = logits.argmax(1) if logits.size else np.zeros(0, dtype=np.int64)
    names = spec.class_names
    return {
        "model": spec.name,
        "samples": int(x.shape[0]),
        "num_classes": spec.num_classes,
        "out": str(out_path),
        "top1": [names[i] if names else int(i) for i in top1.tolist()],
    }
