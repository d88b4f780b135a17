"""Weight factorization math: matrix views of each layer kind, SVD / Tucker-2 factors, errors.

Everything is computed in float64 and cast back to the layer dtype at the end, so the
factorized layer at full rank reproduces the original to float32 round-off.
"""

from __future__ import annotations

import numpy as np
import tensorly as tl
import torch
import torch.nn as nn
from tensorly.decomposition import partial_tucker

from edgeskel.compress.datasvd import _fix_signs, whitened_factors, whitened_spectrum


def group_matrices(module: nn.Module, kind: str, w: torch.Tensor | None = None) -> list[torch.Tensor]:
    """Weight (or a same-shape tensor `w`) as the matrices that get factorized: one per group
    for 1x1 convs, else one (Linear: out x in; k x 1 conv: out x in*kh*kw in im2col order)."""
    w = module.weight.detach().double().cpu() if w is None else w
    if kind == "conv1x1":
        og = w.shape[0] // module.groups
        return [w[i * og : (i + 1) * og, :, 0, 0] for i in range(module.groups)]
    return [w.reshape(w.shape[0], -1)]


def group_chols(cov: torch.Tensor | None, chol_fn, module: nn.Module, kind: str) -> list[torch.Tensor | None]:
    """Whitening factor per group: diagonal blocks of the input covariance for grouped convs."""
    if cov is None:
        return [None] * (module.groups if kind == "conv1x1" else 1)
    return [chol_fn(c) for c in _cov_blocks(cov, module, kind)]


def svd_spectra(mats: list[torch.Tensor], chols: list[torch.Tensor | None]) -> list[torch.Tensor]:
    """Singular values per group (whitened when a Cholesky factor is given)."""
    return [torch.linalg.svdvals(m) if c is None else whitened_spectrum(m, c) for m, c in zip(mats, chols, strict=True)]


def mode_spectra(module: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """Singular values of the mode-0 (out) and mode-1 (in) unfoldings: drive Tucker-2 ranks."""
    w = module.weight.detach().double().cpu()
    return torch.linalg.svdvals(w.reshape(w.shape[0], -1)), torch.linalg.svdvals(
        w.transpose(0, 1).reshape(w.shape[1], -1)
    )


def svd_factors(m: torch.Tensor, rank: int, chol: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """(A, B) with A @ B the best rank-r approximation; sqrt(Sigma) split into both factors."""
    if chol is not None:
        return whitened_factors(m, rank, chol)
    u, s, vh = torch.linalg.svd(m, full_matrices=False)
    u, vh = _fix_signs(u, vh)
    root = s[:rank].sqrt()
    return u[:, :rank] * root, root[:, None] * vh[:rank]


def tucker2(
    weight: torch.Tensor, r_in: int, r_out: int, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Tucker-2 of a conv kernel on modes (out, in) via tensorly partial_tucker (HOOI, SVD init).

    Returns (core r_out x r_in x kh x kw, U_out out x r_out, U_in in x r_in), float64. Runs
    on the numpy backend inside a backend context so the global tensorly backend is untouched.
    HOOI is capped at 20 sweeps (tol 1e-5): on 256-channel kernels further sweeps changed the
    relative error by < 1e-3 while each costs two SVDs of a 256 x 2304 unfolding.
    """
    arr = weight.detach().double().cpu().numpy()
    with tl.backend_context("numpy"):
        (core, factors), _ = partial_tucker(
            arr, rank=[r_out, r_in], modes=[0, 1], init="svd", n_iter_max=20, tol=1e-5, random_state=seed
        )
    return (
        torch.from_numpy(np.asarray(core)),
        torch.from_numpy(np.asarray(factors[0])),
        torch.from_numpy(np.asarray(factors[1])),
    )


def fill_svd(
    new: nn.Sequential, module: nn.Module, kind: str, factors: list[tuple[torch.Tensor, torch.Tensor]]
) -> torch.Tensor:
    """Copy (A, B) factors into the new module; returns the reconstructed original-shape weight (float64)."""
    w = module.weight
    with torch.no_grad():
        if kind == "linear":
            a, b = factors[0]
            new.down.weight.copy_(b)
            new.up.weight.copy_(a)
            rec = a @ b
        elif kind == "conv1x1":
            r = factors[0][0].shape[1]
            blocks = []
            for i, (a, b) in enumerate(factors):
                new.down.weight[i * r : (i + 1) * r].copy_(b[:, :, None, None])
                og = a.shape[0]
                new.up.weight[i * og : (i + 1) * og].copy_(a[:, :, None, None])
                blocks.append(a @ b)
            rec = torch.cat(blocks, 0)[:, :, None, None]
        else:
            a, b = factors[0]
            new.down.weight.copy_(b.reshape(b.shape[0], *w.shape[1:]))
            new.up.weight.copy_(a[:, :, None, None])
            rec = (a @ b).reshape(w.shape)
        if module.bias is not None:
            new.up.bias.copy_(module.bias)
    return rec


def fill_tucker2(
    new: nn.Sequential, module: nn.Module, core: torch.Tensor, u_out: torch.Tensor, u_in: torch.Tensor
) -> torch.Tensor:
    """Copy Tucker-2 factors into down/core/up convs; returns the reconstructed kernel (float64)."""
    with torch.no_grad():
        new.down.weight.copy_(u_in.T[:, :, None, None])
        new.core.weight.copy_(core)
        new.up.weight.copy_(u_out[:, :, None, None])
        if module.bias is not None:
            new.up.bias.copy_(module.bias)
    return torch.einsum("oi...,Oo,Ii->OI...", core, u_out, u_in)


def errors(module: nn.Module, kind: str, rec: torch.Tensor, cov: torch.Tensor | None) -> tuple[float, float | None]:
    """(relative weight-space error, relative activation-space error or None).

    Activation error is sqrt(tr(dW C dW^T) / tr(W C W^T)) with C the input second moment,
    i.e. the relative output error on the calibration inputs (per group for grouped convs).
    """
    w = module.weight.detach().double().cpu()
    dw = w - rec
    rel = float(dw.norm() / w.norm().clamp_min(1e-300))
    if cov is None:
        return rel, None
    num = den = 0.0
    for wm, dm, c in zip(
        group_matrices(module, kind, w), group_matrices(module, kind, dw), _cov_blocks(cov, module, kind), strict=True
    ):
        num += float(((dm @ c) * dm).sum())
        den += float(((wm @ c) * wm).sum())
    return rel, float(np.sqrt(max(num, 0.0) / den)) if den > 0 else 0.0


def _cov_blocks(cov: torch.Tensor, module: nn.Module, kind: str) -> list[torch.Tensor]:
    if kind == "conv1x1" and module.groups > 1:
        ig = cov.shape[0] // module.groups
        return [cov[i * ig : (i + 1) * ig, i * ig : (i + 1) * ig] for i in range(module.groups)]
    return [cov]


def factorize(
    module: nn.Module,
    method: str,
    ranks: dict[str, int],
    chols: list[torch.Tensor | None] | None = None,
    seed: int = 0,
) -> tuple[nn.Sequential, torch.Tensor]:
    """Factorized replacement of one Linear/Conv2d with weights set; returns (module, reconstructed weight).

    `chols` (one whitening factor per group, see datasvd) makes the SVD data-aware; Tucker-2
    is always weight-space.
    """
    from edgeskel.models.lowrank import build_factorized, layer_kind

    kind = layer_kind(module)
    if kind is None:
        raise ValueError(f"cannot factorize {type(module).__name__}")
    new = build_factorized(module, kind, method, ranks)
    if method == "tucker2":
        core, u_out, u_in = tucker2(module.weight, ranks["r_in"], ranks["r_out"], seed)
        return new, fill_tucker2(new, module, core, u_out, u_in)
    mats = group_matrices(module, kind)
    chols = chols if chols is not None else [None] * len(mats)
    factors = [svd_factors(m, ranks["rank"], c) for m, c in zip(mats, chols, strict=True)]
    return new, fill_svd(new, module, kind, factors)
