"""Data-aware (activation-whitened) SVD, as in ASVD / SVD-LLM.

Plain SVD minimises ||W - W_r||_F, but what matters is the layer output error
||(W - W_r) X||_F over real inputs X. With C = E[x x^T] and S = chol(C + eps I) (so C ~= S S^T),
||(W - W_r) X||^2 = ||(W - W_r) S||^2 * n, so the optimum rank-r W_r is U_r Sigma_r V_r^T S^-1
where U Sigma V^T = svd(W S) (Eckart-Young in the whitened space). All in float64 with
relative damping, retried with larger damping if Cholesky still fails.

Statistics are input second moments gathered with forward hooks on a few calibration
batches: Linear layers over all tokens; convolutions over im2col patches (F.unfold with
the layer's own kernel/stride/padding/dilation), subsampling positions with a seeded
generator so memory stays bounded and results are deterministic.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F


def _patches(module: nn.Module, x: torch.Tensor, max_rows: int, gen: torch.Generator) -> torch.Tensor:
    """Input rows the layer's weight multiplies: (rows, d), d = in_features or in_channels*kh*kw."""
    if isinstance(module, nn.Linear):
        rows = x.reshape(-1, x.shape[-1])
        if rows.shape[0] > max_rows:
            rows = rows[torch.randperm(rows.shape[0], generator=gen)[:max_rows]]
        return rows
    pad = module.padding
    if isinstance(pad, str):  # 'valid' -> 0; 'same' (stride 1) -> explicit, possibly asymmetric, zero padding
        if pad == "same":
            total = [d * (k - 1) for d, k in zip(module.dilation, module.kernel_size, strict=True)]
            x = F.pad(x, (total[1] // 2, total[1] - total[1] // 2, total[0] // 2, total[0] - total[0] // 2))
        pad = 0
    n = x.shape[0]
    per = max(1, math.ceil(max_rows / n))
    out = []
    for i in range(n):  # one sample at a time: im2col of a whole batch can be hundreds of MB
        u = F.unfold(x[i : i + 1], module.kernel_size, dilation=module.dilation, padding=pad, stride=module.stride)
        u = u[0].transpose(0, 1)  # (L, C*kh*kw), channel-major like weight.reshape(out, -1)
        if u.shape[0] > per:
            u = u[torch.randperm(u.shape[0], generator=gen)[:per]]
        out.append(u)
    return torch.cat(out, 0)


@torch.no_grad()
def collect_input_stats(
    model: nn.Module, names: list[str], calib: list[torch.Tensor], max_rows: int = 4096, seed: int = 0
) -> dict[str, torch.Tensor]:
    """E[x x^T] (float64) of the inputs each named layer sees on the calibration batches."""
    sums: dict[str, torch.Tensor] = {}
    counts: dict[str, int] = {}
    gen = torch.Generator().manual_seed(seed)
    handles = []

    def make_hook(name: str):
        def hook(mod: nn.Module, inp: tuple, _out) -> None:
            rows = _patches(mod, inp[0].detach().float().cpu(), max_rows, gen).double()
            acc = rows.T @ rows
            sums[name] = sums[name] + acc if name in sums else acc
            counts[name] = counts.get(name, 0) + rows.shape[0]

        return hook

    for name in names:
        handles.append(model.get_submodule(name).register_forward_hook(make_hook(name)))
    was_training = model.training
    model.eval()
    try:
        for batch in calib:
            model(batch)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return {k: sums[k] / counts[k] for k in sums}


def whitening_factor(cov: torch.Tensor, damping: float = 1e-5) -> torch.Tensor:
    """Lower-triangular S with S S^T = cov + eps I; eps relative to the mean diagonal, grown until PD."""
    cov = cov.double()
    d = cov.shape[0]
    scale = float(torch.diagonal(cov).mean()) if d else 1.0
    scale = scale if scale > 0 else 1.0
    eps = damping * scale
    eye = torch.eye(d, dtype=torch.float64)
    for _ in range(12):
        chol, info = torch.linalg.cholesky_ex(cov + eps * eye)
        if int(info) == 0:
            return chol
        eps *= 10.0
    raise RuntimeError("activation covariance is not positive definite even with heavy damping")


def whitened_spectrum(w: torch.Tensor, chol: torch.Tensor) -> torch.Tensor:
    """Singular values of W S: sigma_i^2 is the output-error energy of dropping component i."""
    return torch.linalg.svdvals(w.double() @ chol)


def whitened_factors(w: torch.Tensor, rank: int, chol: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(A out x r, B r x d) with A @ B the rank-r W minimising ||(W - A B) S||_F."""
    u, s, vh = torch.linalg.svd(w.double() @ chol, full_matrices=False)
    u, vh = _fix_signs(u, vh)
    root = s[:rank].sqrt()
    a = u[:, :rank] * root
    # B S = sqrt(S_r) V_r^T  <=>  S^T B^T = V_r sqrt(S_r)
    b = torch.linalg.solve_triangular(chol.T, vh[:rank].T * root, upper=True).T
    return a, b


def _fix_signs(u: torch.Tensor, vh: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Make the largest-|.| entry of each left vector positive: same factors across LAPACK builds."""
    idx = u.abs().argmax(0)
    sign = torch.sign(u[idx, torch.arange(u.shape[1])])
    sign[sign == 0] = 1
    return u * sign, vh * sign[:, None]
