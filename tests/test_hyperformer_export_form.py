"""Hyperformer's attention export form (issue 20 item 4): same math as the pre-rewrite
forward (kept below verbatim as the reference), same state_dict keys, ORT/OpenVINO parity,
and fewer Transpose nodes in the graph edgeskel exports."""

from __future__ import annotations

import copy
import types

import numpy as np
import onnx
import pytest
import torch
import torch.nn as nn

from edgeskel import models
from edgeskel.checkpoint import ModelSpec, Preprocess
from edgeskel.export.onnx import export_onnx
from edgeskel.layouts import get_layout
from edgeskel.models.hyperformer import MHSA, UnitViT

torch.set_num_threads(1)
ENTRY = models.model_entry("hyperformer")
LAYOUT = ENTRY.tiny["layout"]
KW = {k: v for k, v in ENTRY.tiny.items() if k != "layout"}
T = 16
# Stated bound on the exported graph (legacy exporter + onnxslim, batch 1): 2 Transposes
# outside the units plus at most 10 per unit (q, k+e and v head splits, the relative-position
# round trip, the bias, the head merge's two, LayerNorm's two). The old form needs 12.
MAX_TRANSPOSES = 2 + 10 * KW["num_stages"]


# ---- the pre-rewrite forward, verbatim (reference math) ---------------------------------------
def ref_mhsa_forward(mod: MHSA, x: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
    b, _, t, v = x.shape
    h, d = mod.num_heads, mod.head_dim
    kv = mod.kv(x)
    k, val = mod._heads(kv[:, : mod.dim]), mod._heads(kv[:, mod.dim :])
    q, e_k = mod._heads(mod.q(x)), mod._heads(e)
    k_r = mod.rpe[mod.hops].reshape(v, v, h, d).permute(2, 0, 3, 1)
    q_hn = q.permute(2, 3, 0, 1, 4).reshape(h, v, b * t, d)
    pos = torch.matmul(q_hn, k_r).reshape(h, v, b, t, v).permute(2, 3, 0, 1, 4)
    logits = torch.matmul(q, (k + e_k).transpose(-1, -2)) + pos
    bias = torch.matmul(e_k, mod.w1.reshape(1, 1, h, d, 1)).transpose(-1, -2)
    attn = torch.softmax((logits + bias) * mod.scale, dim=-1)
    y = torch.matmul(mod.alpha * attn + mod.outer, val)
    y = y.transpose(3, 4).reshape(b, t, h * d, v).transpose(1, 2)
    return mod.proj(y)


def ref_unit_forward(unit: UnitViT, x: torch.Tensor, part_avg: torch.Tensor, part_scatter: torch.Tensor) -> torch.Tensor:
    e = torch.matmul(unit.pe_proj(torch.matmul(x, part_avg)), part_scatter)
    xn = unit.norm1(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
    skip = x if unit.skip_proj is None else unit.skip_proj(x)
    return skip + unit.attn(xn, e)


def reference(model: nn.Module) -> nn.Module:
    """A copy of `model` running the pre-rewrite forwards on the same weights."""
    ref = copy.deepcopy(model).eval()
    for mod in ref.modules():
        if isinstance(mod, MHSA):
            mod.forward = types.MethodType(ref_mhsa_forward, mod)
        elif isinstance(mod, UnitViT):
            mod.forward = types.MethodType(ref_unit_forward, mod)
    return ref


def random_model(seed: int = 0, **kw) -> nn.Module:
    """Tiny Hyperformer with every parameter (rpe, w1, alpha, outer, norms) non-trivial."""
    m = models.build("hyperformer", 6, LAYOUT, num_person=2, **{**KW, **kw})
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in m.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.3)
    return m.eval()


def spec(model: nn.Module) -> ModelSpec:
    return ModelSpec(name="hyperformer", num_classes=6, layout=get_layout(LAYOUT), kwargs=dict(KW),
                     class_names=[str(i) for i in range(6)], preprocess=Preprocess(num_frames=T, num_person=2))


def transposes(path) -> int:
    return sum(n.op_type == "Transpose" for n in onnx.load(str(path)).graph.node)


@pytest.fixture(scope="module")
def model() -> nn.Module:
    return random_model()


@pytest.fixture(scope="module")
def x() -> np.ndarray:
    v = get_layout(LAYOUT).num_joints
    return np.random.default_rng(1).standard_normal((2, 3, T, v, 2)).astype(np.float32)


def test_torch_matches_reference_math(model, x):
    ref = reference(model)
    with torch.no_grad():
        got, want = model(torch.from_numpy(x)), ref(torch.from_numpy(x))
    assert want.abs().max() > 1e-2  # non-trivial logits
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    # also per unit, on a different width / head count and a 1-person batch
    m2 = random_model(seed=3, num_heads=2, width=0.5)
    r2 = reference(m2)
    u, ur = m2.l2.vit1, r2.l2.vit1
    c = u.attn.q.in_channels
    xs = torch.randn(1, c, 7, m2.num_joints)
    with torch.no_grad():
        torch.testing.assert_close(u(xs, m2.part_avg, m2.part_scatter), ur(xs, m2.part_avg, m2.part_scatter),
                                   atol=1e-5, rtol=1e-5)


def test_state_dict_keys_unchanged(model):
    ref = reference(model)
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == \
           {k: tuple(v.shape) for k, v in ref.state_dict().items()}
    keys = set(model.state_dict())
    assert {"l1.vit1.attn.w1", "l1.vit1.norm1.weight", "l1.vit1.norm1.bias", "l1.vit1.attn.rpe"} <= keys
    assert isinstance(model.l1.vit1.norm1, nn.LayerNorm) and isinstance(model.l1.vit1.attn.w1, nn.Parameter)


def test_fewer_transposes_than_old_form(model, tmp_path):
    new = transposes(export_onnx(model, spec(model), tmp_path / "new.onnx", batch=1))
    old = transposes(export_onnx(reference(model), spec(model), tmp_path / "old.onnx", batch=1))
    assert old > MAX_TRANSPOSES, (old, MAX_TRANSPOSES)  # the bound does separate the forms
    assert new <= MAX_TRANSPOSES, (new, old)


@pytest.mark.parametrize("backend", ["ort", "openvino"])
def test_backend_fp32_parity(model, x, backend, tmp_path):
    from edgeskel.runtime import get_runner

    if backend == "openvino":
        pytest.importorskip("openvino", reason="openvino not installed")
    path = export_onnx(model, spec(model), tmp_path / "m.onnx")  # dynamic batch
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    with get_runner(backend, path, precision="fp32", threads=1) as runner:
        got = runner.infer(x)
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-4)
