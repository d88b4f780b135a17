"""Run S parallel 1x1-convolution maps as ONE convolution per stage (an export form, issue 20).

Why: CTR-GCN applies the same small 1x1 convolutions once per graph subset (3 subsets x 4
convs per block); at batch 1 on CPU backends each kernel costs ~15 us of overhead whatever its
size, so 12 convolutions cost more than their arithmetic. Stacking the subsets' weights gives
one convolution per stage. It must also work after compression, where a conv may be replaced
by a factorized chain of 1x1 convs (`models.lowrank.LowRankConv1x1`, possibly of other ranks per
subset): intermediate channels are zero-padded to the largest rank and later stages become
grouped convolutions (one group per map), so the factorization's savings stay. Weights are
built from the parameters with Pad/Concat, which the exporter's constant folding turns into
plain initializers.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


def conv_chain(module: nn.Module) -> list[nn.Conv2d] | None:
    """The module as a chain of plain 1x1 convolutions (stride 1, no padding, no groups), or
    None for anything else (then callers keep their original form)."""
    convs = list(module) if isinstance(module, nn.Sequential) else [module]
    for c in convs:
        if not (type(c) is nn.Conv2d and c.kernel_size == (1, 1) and c.stride == (1, 1) and c.padding == (0, 0)
                and c.dilation == (1, 1) and c.groups == 1 and c.padding_mode == "zeros"):
            return None
    return convs or None


def stackable(modules: list[nn.Module]) -> bool:
    """True when `parallel_maps` runs these maps as one conv per stage: chains of plain 1x1
    convs of the same depth and the same final width."""
    return _stackable_chains([conv_chain(m) for m in modules])


def _stackable_chains(chains: list[list[nn.Conv2d] | None]) -> bool:
    if any(c is None for c in chains):
        return False
    return len({len(c) for c in chains}) == 1 and len({c[-1].out_channels for c in chains}) == 1


def parallel_maps(modules: list[nn.Module], x: torch.Tensor, grouped_input: bool) -> torch.Tensor:
    """Outputs of every map, concatenated along channels: one conv per stage when `stackable`,
    else each module on its own input (any module type; e.g. a compressed model where only some
    subsets' conv was factorized, so the chains differ in depth).

    grouped_input=False: every map reads all of `x`; True: map i reads the i-th of S equal
    channel groups of `x`."""
    chains = [conv_chain(m) for m in modules]
    if _stackable_chains(chains):
        return _stacked(chains, x, grouped_input)
    inputs = x.chunk(len(modules), dim=1) if grouped_input else [x] * len(modules)
    return torch.cat([m(xi) for m, xi in zip(modules, inputs, strict=True)], dim=1)


def _stacked(chains: list[list[nn.Conv2d]], x: torch.Tensor, grouped_input: bool) -> torch.Tensor:
    s = len(chains)
    y, groups = x, (s if grouped_input else 1)
    for j in range(len(chains[0])):
        convs = [c[j] for c in chains]
        width = max(c.out_channels for c in convs)  # intermediate ranks padded to the largest
        in_width = y.shape[1] // groups
        weights, biases = [], []
        for c in convs:
            w = _zero_pad(_zero_pad(c.weight, 1, in_width), 0, width)
            b = c.bias if c.bias is not None else c.weight.new_zeros(c.out_channels)
            weights.append(w)
            biases.append(_zero_pad(b, 0, width))
        y = F.conv2d(y, torch.cat(weights), torch.cat(biases), groups=groups)
        groups = s
    return y


def _zero_pad(t: torch.Tensor, dim: int, size: int) -> torch.Tensor:
    """`t` grown to `size` along `dim` with zeros. A Concat with a constant, not F.pad: the
    legacy ONNX exporter needs the conv kernel's shape, which it loses through a Pad."""
    missing = size - t.shape[dim]
    if missing == 0:
        return t
    shape = list(t.shape)
    shape[dim] = missing
    return torch.cat([t, t.new_zeros(shape)], dim=dim)
