"""Parameter and FLOP counts for reports and rank budgets.

FLOPs come from `torch.utils.flop_counter.FlopCounterMode`, which counts matmul/conv-like
aten ops (mm, bmm, addmm, convolution, baddbmm, SDPA) as 2 * MACs. Element-wise ops (BN,
ReLU, softmax, tanh, pooling) are not counted, as in most published GFLOP figures.
"""

from __future__ import annotations

import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode


def count_params(model: nn.Module) -> int:
    """Number of parameters (buffers such as fixed graphs and BN statistics excluded)."""
    return sum(p.numel() for p in model.parameters())


def count_flops(model: nn.Module, input_shape: tuple[int, int, int, int, int]) -> int:
    """FLOPs (2 * MACs of matmuls/convs) of one forward pass on a zero input of shape
    (N, C, T, V, M), in eval mode; the model's train/eval mode is restored.

    Runs with autograd enabled: FlopCounterMode's module tracker registers grad hooks and
    fails on parameter views created under `no_grad`."""
    if len(input_shape) != 5:
        raise ValueError(f"input_shape must be (N, C, T, V, M), got {input_shape}")
    was_training = model.training
    model.eval()
    try:
        param = next(model.parameters(), None)
        device = param.device if param is not None else torch.device("cpu")
        x = torch.zeros(input_shape, dtype=torch.float32, device=device)
        counter = FlopCounterMode(display=False)
        with counter:
            model(x)
        return int(counter.get_total_flops())
    finally:
        model.train(was_training)


def gflops(model: nn.Module, input_shape: tuple[int, int, int, int, int]) -> float:
    """`count_flops` in units of 1e9."""
    return count_flops(model, input_shape) / 1e9
