"""Plain progress lines for runs whose stdout is not a terminal (nohup, CI, `> log`).

Rich progress bars only draw on a terminal; in a log file they leave nothing until the end.
So long loops also print one short, flushed line per unit of work (an epoch, a stage) when
stdout is not a TTY, and nothing extra when it is (the bar shows it there)."""

from __future__ import annotations

import sys
from typing import Any


def plain_progress() -> bool:
    """True when progress must be written as lines (stdout is not an interactive terminal)."""
    try:
        return not sys.stdout.isatty()
    except (AttributeError, ValueError):  # closed or replaced stdout
        return True


def epoch_line(row: dict[str, Any], epochs: int, best_top1: float, best_epoch: int, label: str = "train") -> str:
    """`train epoch 3/30: loss 1.234, train top-1 45.0, val top-1 40.0 (best 41.2 at 2), 12.3 s`."""
    return (f"{label} epoch {row['epoch']}/{epochs}: loss {row['loss']:.4f}, train top-1 {row['train_top1']:.1f}, "
            f"val top-1 {row['val_top1']:.1f} (best {best_top1:.1f} at {best_epoch}), {row['time_s']:.1f} s")


def print_line(text: str) -> None:
    print(text, flush=True)
