"""Switch for edgeskel's ONNX export-form rewrites (issue 20 item 4).

Some modules export a different but mathematically equal graph that runs faster on the
backends (e.g. PYSKL `unit_gcn` aggregating before its channel mix, `pyskl_units.UnitGCN`).
The benchmark's baselines stand for what a user gets from one plain `torch.onnx.export` of
the original code, so they export inside `original_forms()`; every edgeskel export uses the
rewrites. Training and eager evaluation never see them (they apply only during ONNX export).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

_REWRITES = [True]


def rewrites_enabled() -> bool:
    """True unless inside `original_forms()`."""
    return _REWRITES[-1]


@contextmanager
def original_forms() -> Iterator[None]:
    """Export the modules' original (reference-code) forms inside this block."""
    _REWRITES.append(False)
    try:
        yield
    finally:
        _REWRITES.pop()
