"""Factorized (low-rank) layers and the plan that rebuilds them: model layers, not a stage.

Why here: loading a compressed checkpoint only needs to rebuild its structure (`apply_plan`),
which must not pull in the compression stage (its policies, latency tables, exporters and
runtimes); `checkpoint.build_from_spec` uses this module, `compress/` fills in the factors.

Factorized replacements are built only from standard layers (Linear, Conv2d).

Why only standard layers: every backend (ORT, OpenVINO, TensorRT, INT8 quantizers) runs
Conv/Gemm fast, while einsum or custom ops fall off the fast path. Each class is an
`nn.Sequential` with named children, so state_dict keys are stable
(`<name>.down.weight`, `<name>.core.weight`, `<name>.up.weight`, `<name>.up.bias`) and a
checkpoint reloads after `apply_plan` rebuilds the same structure.

The classes only build structure (weights are default-initialised); `decompose.py` and
`datasvd.py` fill in the factors.
"""

from __future__ import annotations

from collections import OrderedDict

import torch.nn as nn

from edgeskel.errors import CheckpointError

PLAN_FORMAT = "edgeskel-lowrank-plan/1"
KINDS = ("linear", "conv1x1", "conv_k")
METHODS = ("svd", "tucker2")


class LowRankLinear(nn.Sequential):
    """Linear(in,out) ~= Linear(in,r,no bias) -> Linear(r,out,bias)."""

    def __init__(self, in_features: int, out_features: int, rank: int, bias: bool = True):
        super().__init__(
            OrderedDict(
                down=nn.Linear(in_features, rank, bias=False),
                up=nn.Linear(rank, out_features, bias=bias),
            )
        )
        self.in_features, self.out_features, self.rank = in_features, out_features, rank


class LowRankConv1x1(nn.Sequential):
    """1x1 Conv2d (any groups) ~= per-group SVD: Conv1x1(in->g*r, groups=g) -> Conv1x1(g*r->out, groups=g).

    Stride and padding go on the first conv: padded zeros stay zero through the bias-free
    first conv, so the second conv's bias reproduces the original output at padded positions.
    """

    def __init__(
        self, in_channels: int, out_channels: int, rank: int, groups: int = 1, stride=1, padding=0, bias: bool = True
    ):
        super().__init__(
            OrderedDict(
                down=nn.Conv2d(
                    in_channels, groups * rank, 1, stride=stride, padding=padding, groups=groups, bias=False
                ),
                up=nn.Conv2d(groups * rank, out_channels, 1, groups=groups, bias=bias),
            )
        )
        self.in_channels, self.out_channels, self.rank, self.groups = in_channels, out_channels, rank, groups


class LowRankConvK(nn.Sequential):
    """k x 1 Conv2d ~= SVD of the flattened kernel (out x in*k): Conv(kx1, in->r) -> Conv1x1(r->out)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size,
        rank: int,
        stride=1,
        padding=0,
        dilation=1,
        bias: bool = True,
    ):
        super().__init__(
            OrderedDict(
                down=nn.Conv2d(
                    in_channels, rank, kernel_size, stride=stride, padding=padding, dilation=dilation, bias=False
                ),
                up=nn.Conv2d(rank, out_channels, 1, bias=bias),
            )
        )
        self.in_channels, self.out_channels, self.rank = in_channels, out_channels, rank


class Tucker2Conv(nn.Sequential):
    """k x 1 Conv2d ~= Tucker-2 on the channel modes: Conv1x1(in->r_in) -> Conv(kx1, r_in->r_out) -> Conv1x1(r_out->out)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size,
        r_in: int,
        r_out: int,
        stride=1,
        padding=0,
        dilation=1,
        bias: bool = True,
    ):
        super().__init__(
            OrderedDict(
                down=nn.Conv2d(in_channels, r_in, 1, bias=False),
                core=nn.Conv2d(r_in, r_out, kernel_size, stride=stride, padding=padding, dilation=dilation, bias=False),
                up=nn.Conv2d(r_out, out_channels, 1, bias=bias),
            )
        )
        self.in_channels, self.out_channels, self.r_in, self.r_out = in_channels, out_channels, r_in, r_out


def layer_kind(module: nn.Module) -> str | None:
    """Kind of a factorizable layer, or None. Exact types only: subclasses (e.g. the Linear
    inside nn.MultiheadAttention) are often used through their weights, not their forward."""
    if type(module) is nn.Linear:
        return "linear"
    if type(module) is nn.Conv2d:
        return "conv1x1" if tuple(module.kernel_size) == (1, 1) else "conv_k"
    return None


def layer_shape(module: nn.Module) -> list[int]:
    """Weight shape, stored in the plan so apply_plan can check it targets the same layer."""
    return [int(s) for s in module.weight.shape]


def unsupported_reason(module: nn.Module) -> str | None:
    """Why a Linear/Conv2d cannot be factorized by this package (None if it can)."""
    if isinstance(module, nn.Conv2d):
        if module.padding_mode != "zeros":
            return f"padding_mode={module.padding_mode!r} (only 'zeros' is supported)"
        if tuple(module.kernel_size) != (1, 1) and module.groups != 1:
            return f"grouped k×1 conv (groups={module.groups}) is not supported"
    return None


def build_factorized(module: nn.Module, kind: str, method: str, ranks: dict[str, int]) -> nn.Sequential:
    """Structure (default-initialised weights) that replaces `module` for the given plan entry."""
    has_bias = module.bias is not None
    if kind == "linear":
        new: nn.Sequential = LowRankLinear(module.in_features, module.out_features, ranks["rank"], has_bias)
    elif kind == "conv1x1":
        new = LowRankConv1x1(
            module.in_channels,
            module.out_channels,
            ranks["rank"],
            module.groups,
            module.stride,
            module.padding,
            has_bias,
        )
    elif kind == "conv_k" and method == "svd":
        new = LowRankConvK(
            module.in_channels,
            module.out_channels,
            module.kernel_size,
            ranks["rank"],
            module.stride,
            module.padding,
            module.dilation,
            has_bias,
        )
    elif kind == "conv_k" and method == "tucker2":
        new = Tucker2Conv(
            module.in_channels,
            module.out_channels,
            module.kernel_size,
            ranks["r_in"],
            ranks["r_out"],
            module.stride,
            module.padding,
            module.dilation,
            has_bias,
        )
    else:
        raise ValueError(f"unknown factorization kind={kind!r} method={method!r}")
    w = module.weight
    return new.to(device=w.device, dtype=w.dtype)


def apply_plan(model: nn.Module, plan: list[dict] | dict) -> nn.Module:
    """Rebuild the factorized structure described by `plan` in place (weights uninitialised).

    Accepts the plan dict from a report (`report["plan"]`), its `layers` list, or a dict that
    holds a `plan` key. Checks every target exists with the recorded kind and weight shape.
    """
    entries = _plan_entries(plan)
    for i, entry in enumerate(entries):
        try:
            name, kind, method, ranks = entry["name"], entry["kind"], entry["method"], dict(entry["ranks"])
        except (KeyError, TypeError) as exc:
            raise CheckpointError(f"compression plan entry {i}: missing field {exc}") from None
        try:
            module = model.get_submodule(name)
        except AttributeError:
            raise CheckpointError(
                f"compression plan: layer {name!r} does not exist in {type(model).__name__}"
            ) from None
        actual = layer_kind(module)
        if actual != kind:
            raise CheckpointError(
                f"compression plan: layer {name!r} is {type(module).__name__} ({actual}), plan expects {kind}"
            )
        if "shape" in entry and list(entry["shape"]) != layer_shape(module):
            raise CheckpointError(
                f"compression plan: layer {name!r} weight shape {layer_shape(module)} != plan {list(entry['shape'])}"
            )
        try:
            new = build_factorized(module, kind, method, {k: int(v) for k, v in ranks.items()})
        except (KeyError, ValueError) as exc:
            raise CheckpointError(f"compression plan: layer {name!r}: bad method/ranks ({exc})") from None
        new.train(module.training)
        replace_module(model, name, new)
    return model


def replace_module(model: nn.Module, name: str, new: nn.Module) -> None:
    """Put `new` where the submodule `name` is."""
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, new)


def _plan_entries(plan: list[dict] | dict) -> list[dict]:
    if isinstance(plan, dict) and "plan" in plan:
        plan = plan["plan"]
    if isinstance(plan, dict):
        fmt = plan.get("format", PLAN_FORMAT)
        if fmt != PLAN_FORMAT:
            raise CheckpointError(f"compression plan format {fmt!r} is not supported (expected {PLAN_FORMAT})")
        plan = plan.get("layers", [])
    if not isinstance(plan, list):
        raise CheckpointError(f"compression plan must be a list of layer entries, got {type(plan).__name__}")
    return plan
