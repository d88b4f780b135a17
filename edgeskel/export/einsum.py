"""`torch.einsum` exported as MatMul / Transpose / Reshape, for the routes that need it.

Most GCN code aggregates over the graph with `torch.einsum` (CTR-GCN, 2s-AGCN, MS-G3D,
InfoGCN, HD-GCN, ...). ONNX Runtime and OpenVINO run an ONNX `Einsum` node, so those routes
export it as is. TensorRT runs Einsum slowly, cannot put it in an INT8 (Q/DQ) region and DLA
has no Einsum layer, so the TensorRT routes export with `einsum_as_matmul()` active: while it
is, every `torch.einsum` call a model makes is computed by `matmul_einsum`, which the tracer
records as plain Transpose/Reshape/MatMul/ReduceSum nodes. The user's model is not edited.

Covered: any equation over 1..n operands whose indices are letters or `...`, with no index
repeated inside one operand (a diagonal/trace, e.g. `ii->i`), and batch indices shared by both
operands broadcast as torch.matmul broadcasts them. Anything else raises `EinsumRewriteError`
naming the equation.
"""

from __future__ import annotations

import contextlib
import math
import string
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch.overrides import TorchFunctionMode

from edgeskel.errors import ExportError


class EinsumRewriteError(ExportError):
    """An einsum equation outside what `matmul_einsum` rewrites."""


def _parse(equation: str, operands: Sequence[torch.Tensor]) -> tuple[list[str], str]:
    """Operand index strings and the output string, with `...` expanded to fresh capital letters."""
    eq = equation.replace(" ", "")
    lhs, arrow, rhs = eq.partition("->")
    terms = lhs.split(",")
    if len(terms) != len(operands):
        raise EinsumRewriteError(f"einsum {equation!r}: {len(terms)} operand terms for {len(operands)} tensors")
    spare = iter(string.ascii_uppercase)
    ell_dims = max((op.dim() - (len(t) - 3) for t, op in zip(terms, operands, strict=True) if "..." in t), default=0)
    ell = "".join(next(spare) for _ in range(ell_dims))
    expanded = []
    for t, op in zip(terms, operands, strict=True):
        if "..." in t:
            n = op.dim() - (len(t) - 3)
            t = t.replace("...", ell[ell_dims - n:] if n else "")
        if len(t) != op.dim():
            raise EinsumRewriteError(f"einsum {equation!r}: term {t!r} does not match a {op.dim()}-d operand")
        if not all(c.isalpha() for c in t):
            raise EinsumRewriteError(f"einsum {equation!r}: unsupported index characters in {t!r}")
        if len(set(t)) != len(t):
            raise EinsumRewriteError(f"einsum {equation!r}: an index repeated inside one operand (diagonal/trace) "
                                     "is not rewritten; write it with torch.diagonal in the model")
        expanded.append(t)
    if arrow:
        out = rhs.replace("...", ell)
    else:  # implicit output: the ellipsis, then every letter that appears once, sorted
        counts = {c: "".join(expanded).count(c) for c in set("".join(expanded))}
        out = ell + "".join(sorted(c for c, k in counts.items() if k == 1 and c not in ell))
    if len(set(out)) != len(out) or any(c not in "".join(expanded) for c in out):
        raise EinsumRewriteError(f"einsum {equation!r}: output indices {out!r} are not a subset of the inputs'")
    return expanded, out


def _sum_out(x: torch.Tensor, idx: str, keep: str) -> tuple[torch.Tensor, str]:
    """Sum the axes whose index is not in `keep` (indices only this operand has)."""
    drop = [i for i, c in enumerate(idx) if c not in keep]
    if drop:
        x = x.sum(dim=drop)
        idx = "".join(c for c in idx if c in keep)
    return x, idx


def _pair(a: torch.Tensor, ai: str, b: torch.Tensor, bi: str, out: str) -> tuple[torch.Tensor, str]:
    """Contract two operands into indices `out` (a subset of ai | bi) with one MatMul."""
    a, ai = _sum_out(a, ai, bi + out)
    b, bi = _sum_out(b, bi, ai + out)
    batch = [c for c in out if c in ai and c in bi]
    contract = [c for c in ai if c in bi and c not in out]
    left = [c for c in ai if c not in bi]
    right = [c for c in bi if c not in ai]
    a = a.permute([ai.index(c) for c in batch + left + contract])
    b = b.permute([bi.index(c) for c in batch + contract + right])
    nb = len(batch)
    lsz, rsz = list(a.shape[nb:nb + len(left)]), list(b.shape[nb + len(contract):])
    k = math.prod(a.shape[nb + len(left):])
    a2 = a.reshape(*a.shape[:nb], math.prod(lsz), k)
    b2 = b.reshape(*b.shape[:nb], k, math.prod(rsz))
    y = torch.matmul(a2, b2)
    y = y.reshape(*y.shape[:nb], *lsz, *rsz)
    yi = "".join(batch + left + right)
    return y, yi


def matmul_einsum(equation: str, *operands: Any) -> torch.Tensor:
    """torch.einsum(equation, *operands) computed with permute/reshape/matmul/sum only."""
    if len(operands) == 1 and isinstance(operands[0], (list, tuple)):
        operands = tuple(operands[0])
    ops = list(operands)
    terms, out = _parse(equation, ops)
    x, xi = ops[0], terms[0]
    if len(ops) == 1:
        x, xi = _sum_out(x, xi, out)
    for j in range(1, len(ops)):
        later = "".join(terms[j + 1:]) + out
        keep = "".join(c for c in dict.fromkeys(xi + terms[j]) if c in later)
        x, xi = _pair(x, xi, ops[j], terms[j], keep)
    return x.permute([xi.index(c) for c in out]) if xi != out else x


class _EinsumAsMatmul(TorchFunctionMode):
    def __init__(self) -> None:
        super().__init__()
        self.equations: list[str] = []

    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        if func is torch.einsum:
            self.equations.append(str(args[0]))
            return matmul_einsum(*args, **kwargs)
        return func(*args, **kwargs)


@contextlib.contextmanager
def einsum_as_matmul() -> Iterator[list[str]]:
    """While active, `torch.einsum` calls run as `matmul_einsum`; yields the list of the
    equations rewritten (for export.json)."""
    mode = _EinsumAsMatmul()
    with mode:
        yield mode.equations
