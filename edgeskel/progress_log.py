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
    """`train epoch 3/30: loss 1.234, train 45.0 val 40.0 best 41.2@2, 12 s` (top-1 in percent):
    within 80 columns for any label edgeskel uses, so a log file reads without wrapping."""
    return (f"{label} epoch {row['epoch']}/{epochs}: loss {row['loss']:.4g}, train {row['train_top1']:.1f} "
            f"val {row['val_top1']:.1f} best {best_top1:.1f}@{best_epoch}, {row['time_s']:.0f} s")


def print_line(text: str) -> None:
    print(text, flush=True)
