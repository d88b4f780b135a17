"""Per-layer parameter and FLOP costs, dense and factorized, from one profiling forward.

FLOPs convention: 2 x multiply-accumulates of the Conv/Linear products (bias adds ignored),
for the whole `input_shape` batch; this is what `torch.utils.flop_counter.FlopCounterMode`
counts, which is used for whole-model totals (it also sees matmuls outside modules, e.g.
graph aggregation), so per-layer and total numbers are on the same scale.
Per-layer FLOPs are analytic: one forward of zeros with hooks records each target layer's
input/output spatial sizes; a layer called several times has its positions summed.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode


@dataclass
class LayerInfo:
    """A factorizable layer and the sizes it sees in the profiling forward."""

    name: str
    module: nn.Module
    kind: str  # linear | conv1x1 | conv_k
    in_ch: int
    out_ch: int
    groups: int
    ksize: int  # kh * kw
    bias: bool
    pos_in: int = 0  # input positions (tokens or N*H*W), summed over calls
    pos_out: int = 0
    calls: int = 0

    def full_rank(self, method: str = "svd") -> int:
        """Largest useful SVD rank (per group); for Tucker-2 the output-mode rank."""
        if method == "tucker2":
            return self.out_ch
        if self.kind == "conv_k":
            return min(self.out_ch, self.in_ch * self.ksize)
        return min(self.in_ch // self.groups, self.out_ch // self.groups)

    def dense_cost(self) -> tuple[int, int]:
        """(params, flops) of the layer as it is."""
        macs_per_pos = self.out_ch * (self.in_ch // self.groups) * self.ksize
        return macs_per_pos + (self.out_ch if self.bias else 0), 2 * self.pos_out * macs_per_pos

    def cost(self, method: str, ranks: dict[str, int]) -> tuple[int, int]:
        """(params, flops) of the factorized layer with these ranks."""
        b = self.out_ch if self.bias else 0
        if method == "tucker2":
            ri, ro = ranks["r_in"], ranks["r_out"]
            params = self.in_ch * ri + ro * ri * self.ksize + self.out_ch * ro
            flops = 2 * (self.pos_in * self.in_ch * ri + self.pos_out * (ro * ri * self.ksize + self.out_ch * ro))
            return params + b, flops
        r = ranks["rank"]
        per_rank = (self.in_ch * self.ksize + self.out_ch) if self.kind == "conv_k" else (self.in_ch + self.out_ch)
        return r * per_rank + b, 2 * self.pos_out * r * per_rank


def profile_layers(model: nn.Module, infos: list[LayerInfo], input_shape: tuple[int, ...]) -> int:
    """Fill pos_in/pos_out/calls of each layer from one forward of zeros; returns total FLOPs."""
    handles = []

    def make_hook(info: LayerInfo):
        def hook(_mod, inp, out) -> None:
            x = inp[0]
            if info.kind == "linear":
                info.pos_in += x.numel() // x.shape[-1]
                info.pos_out += out.numel() // out.shape[-1]
            else:
                info.pos_in += x.shape[0] * x.shape[-2] * x.shape[-1] if x.dim() == 4 else x.shape[-2] * x.shape[-1]
                info.pos_out += out.numel() // out.shape[-3]
            info.calls += 1

        return hook

    for info in infos:
        handles.append(info.module.register_forward_hook(make_hook(info)))
    try:
        return count_flops(model, input_shape)
    finally:
        for h in handles:
            h.remove()


def count_flops(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """Whole-model FLOPs (FlopCounterMode) for one forward of zeros in eval mode.

    Runs with grad enabled on purpose: FlopCounterMode's module tracker registers grad hooks
    on module arguments, which fails under no_grad when a Parameter is passed to a
    submodule's forward (CTR-GCN passes its learnable adjacency this way)."""
    was_training = model.training
    model.eval()
    p = next(model.parameters(), None)
    x = torch.zeros(
        *input_shape, device=p.device if p is not None else "cpu", dtype=p.dtype if p is not None else torch.float32
    )
    try:
        with torch.enable_grad(), FlopCounterMode(display=False) as counter:
            model(x)
    finally:
        model.train(was_training)
    return int(counter.get_total_flops())


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
