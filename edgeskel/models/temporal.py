"""Temporal strides of a network: read them, or set them all to 1.

Setting every temporal stride to 1 (CoST-GCN's second option) gives a network that decides
every frame in a stream; it computes another function than the trained one, so it is
fine-tuned that way (`edgeskel train --init C --remove-strides`) and its checkpoint says so
(`ModelSpec.strides_removed`), so every later load rebuilds the same network.
"""

from __future__ import annotations

import copy

import torch.nn as nn


def temporal_stride(module: nn.Module) -> int:
    if getattr(module, "temporal_stride_attr", None):  # a module striding T in its own forward (Shift-GCN's shift)
        return int(getattr(module, module.temporal_stride_attr))
    if isinstance(module, nn.Conv2d):
        return int(module.stride[0])
    if isinstance(module, nn.MaxPool2d):
        st = module.stride if module.stride is not None else module.kernel_size
        return int(st[0] if isinstance(st, (tuple, list)) else st)
    return 1


def remove_strides(model: nn.Module) -> nn.Module:
    """CoST-GCN's second option: every temporal stride set to 1 (a deep copy). Padding stays:
    in a stream it only matters at frame 0, where it is the zeros before the first frame.
    The network then computes a different function and needs fine-tuning (docs/STREAMING.md)."""
    model = copy.deepcopy(model)
    for m in model.modules():
        if isinstance(m, nn.Conv2d) and m.stride[0] != 1:
            m.stride = (1, m.stride[1])
        elif getattr(m, "temporal_stride_attr", None):
            setattr(m, m.temporal_stride_attr, 1)
        elif isinstance(m, nn.MaxPool2d) and temporal_stride(m) != 1:
            st = m.stride if isinstance(m.stride, (tuple, list)) else (m.stride, m.stride)
            m.stride = (1, st[1])
    return model
