"""What one step call costs in arithmetic (the benchmark's FLOPs-per-decision column)."""

from __future__ import annotations

import torch

from edgeskel.stream.step import StepModel


def step_flops(step: StepModel) -> int:
    """FLOPs (2 x MACs of convs/matmuls, FlopCounterMode) of one step call. The count does not
    depend on the state, so the initial one serves. Autograd on: FlopCounterMode's module tracker
    registers grad hooks (models/profile.count_flops says why)."""
    from torch.utils.flop_counter import FlopCounterMode

    frame = torch.randn(step.frame_shape())
    with torch.enable_grad(), FlopCounterMode(display=False) as counter:
        step(frame, step.full_valid(), *step.initial_states())
    return int(counter.get_total_flops())
