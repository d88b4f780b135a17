"""Measure Hyperformer's attention export forms (issue 20 item 4): old vs each rewrite.

Builds the trained NW-UCLA Hyperformer (reference/hyperformer-nwucla.ckpt, kinect20, T=52,
216 channels) and, from the same weights, one variant per cumulative rewrite of
`MHSA`/`UnitViT` (the "old" form is the pre-rewrite forward, kept here verbatim):

  old      head-split k, e separately; bias w1.e on split heads; 3-op head merge;
           LayerNorm as permute -> LayerNorm -> permute
  +r1      k + e summed before the head split
  +r2      the hyperedge bias as a grouped 1x1 conv on e in (B, C, T, V), alone
  +r1r2    +r1 and the hyperedge bias as a grouped 1x1 conv on e in (B, C, T, V)
                                                   (= the model's code, "model" below)
  +r1r2r3  +r1r2 and heads merged with one 5-D permute               (measured, dropped)
  +r1r2ln  +r1r2 and LayerNorm computed on the channel axis, no permutes (measured, dropped)

Each variant is exported with edgeskel's own `export_onnx` (batch 1) and converted with
`to_openvino_ir`; latency is measured INTERLEAVED in one process (blocks of runs, start
rotated each round) on ORT fp32 and OpenVINO fp32 CPU, p50 ratios vs old are printed.
`--int8` also compares old vs the model's current form after ORT quantize_static and NNCF.

Run:  OMP_NUM_THREADS=1 .venv/bin/python scripts/hyperformer_export_form.py --threads 1 --int8
"""

from __future__ import annotations

import argparse
import copy
import sys
import tempfile
import types
from pathlib import Path

import numpy as np
import onnx
import torch
import torch.nn as nn
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from export_form_compare import time_forms  # noqa: E402

from edgeskel.checkpoint import load_checkpoint  # noqa: E402
from edgeskel.export.onnx import export_onnx  # noqa: E402
from edgeskel.io import atomic_write_json  # noqa: E402
from edgeskel.models.hyperformer import MHSA, UnitViT  # noqa: E402


def mhsa_forward(mod: MHSA, x: torch.Tensor, e: torch.Tensor, r1: bool, r2: bool, r3: bool) -> torch.Tensor:
    """MHSA forward with each rewrite switchable; all off = the pre-rewrite code verbatim."""
    b, _, t, v = x.shape
    h, d = mod.num_heads, mod.head_dim
    kv = mod.kv(x)
    q, val = mod._heads(mod.q(x)), mod._heads(kv[:, mod.dim :])
    if r1:
        ke = mod._heads(kv[:, : mod.dim] + e)
    else:
        k, e_k = mod._heads(kv[:, : mod.dim]), mod._heads(e)
        ke = k + e_k
    k_r = mod.rpe[mod.hops].reshape(v, v, h, d).permute(2, 0, 3, 1)
    q_hn = q.permute(2, 3, 0, 1, 4).reshape(h, v, b * t, d)
    pos = torch.matmul(q_hn, k_r).reshape(h, v, b, t, v).permute(2, 3, 0, 1, 4)
    logits = torch.matmul(q, ke.transpose(-1, -2)) + pos
    if r2:
        bias = F.conv2d(e, mod.w1.reshape(h, d, 1, 1), groups=h).permute(0, 2, 1, 3).unsqueeze(3)
    else:
        e_k = mod._heads(e)
        bias = torch.matmul(e_k, mod.w1.reshape(1, 1, h, d, 1)).transpose(-1, -2)
    attn = torch.softmax((logits + bias) * mod.scale, dim=-1)
    y = torch.matmul(mod.alpha * attn + mod.outer, val)
    if r3:
        y = y.permute(0, 2, 4, 1, 3).reshape(b, h * d, t, v)
    else:
        y = y.transpose(3, 4).reshape(b, t, h * d, v).transpose(1, 2)
    return mod.proj(y)


def channel_layernorm(norm: nn.LayerNorm, x: torch.Tensor) -> torch.Tensor:
    """nn.LayerNorm over dim 1 of (B, C, T, V) without moving C last."""
    mu = x.mean(1, keepdim=True)
    xc = x - mu
    var = (xc * xc).mean(1, keepdim=True)
    w, b = norm.weight.reshape(1, -1, 1, 1), norm.bias.reshape(1, -1, 1, 1)
    return xc * torch.rsqrt(var + norm.eps) * w + b


def unit_forward(unit: UnitViT, x: torch.Tensor, part_avg: torch.Tensor, part_scatter: torch.Tensor,
                 ln: bool) -> torch.Tensor:
    e = torch.matmul(unit.pe_proj(torch.matmul(x, part_avg)), part_scatter)
    xn = channel_layernorm(unit.norm1, x) if ln else unit.norm1(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
    skip = x if unit.skip_proj is None else unit.skip_proj(x)
    return skip + unit.attn(xn, e)


def variant(model: nn.Module, r1: bool, r2: bool, r3: bool, ln: bool) -> nn.Module:
    """A copy of `model` whose MHSA/UnitViT forwards use the chosen rewrites."""
    m = copy.deepcopy(model).eval()
    for mod in m.modules():
        if isinstance(mod, MHSA):
            mod.forward = types.MethodType(lambda s, x, e: mhsa_forward(s, x, e, r1, r2, r3), mod)
        elif isinstance(mod, UnitViT):
            mod.forward = types.MethodType(lambda s, x, pa, ps: unit_forward(s, x, pa, ps, ln), mod)
    return m


FORMS = {"old": (0, 0, 0, 0), "+r1": (1, 0, 0, 0), "+r2": (0, 1, 0, 0), "+r1r2": (1, 1, 0, 0), "+r1r2r3": (1, 1, 1, 0),
         "+r1r2ln": (1, 1, 0, 1)}


def transposes(path: Path) -> int:
    return sum(n.op_type == "Transpose" for n in onnx.load(str(path)).graph.node)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", default=str(ROOT / "reference/hyperformer-nwucla.ckpt"))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--block", type=int, default=5)
    ap.add_argument("--no-fp32", action="store_true", help="skip the fp32 comparison")
    ap.add_argument("--int8", action="store_true", help="also compare old vs current after ORT/NNCF INT8")
    ap.add_argument("--json", default=None, help="write the results here")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    model, spec, _ = load_checkpoint(args.checkpoint)
    x = np.random.default_rng(0).standard_normal((1, *spec.input_shape)).astype(np.float32)
    ckpt = Path(args.checkpoint).resolve()
    out: dict[str, object] = {"checkpoint": str(ckpt.relative_to(ROOT) if ckpt.is_relative_to(ROOT) else ckpt), "input_shape": [1, *spec.input_shape],
                              "threads": args.threads, "rounds": args.rounds, "block": args.block}
    with torch.no_grad():
        ref = model(torch.from_numpy(x))
    with tempfile.TemporaryDirectory(prefix="hf-form-") as td:
        files: dict[str, Path] = {}
        counts, diffs = {}, {}
        forms = {**FORMS, "model": None}
        for name, flags in forms.items():
            m = model if flags is None else variant(model, *map(bool, flags))
            with torch.no_grad():
                diffs[name] = float((m(torch.from_numpy(x)) - ref).abs().max())
            files[name] = export_onnx(m, spec, Path(td) / f"{name}.onnx", batch=1)
            counts[name] = transposes(files[name])
        out["transposes"], out["max_abs_diff_vs_current"] = counts, diffs
        print("Transpose nodes:", counts)
        print("max |logit diff| vs the model's current code:", {k: f"{v:.1e}" for k, v in diffs.items()})
        fp32 = () if args.no_fp32 else (("ort", "fp32"), ("openvino", "fp32"))
        lat = time_forms({n: files[n] for n in FORMS}, x, None, td, args.threads, args.rounds, args.block, fp32)
        if args.int8:
            calib = np.random.default_rng(1).standard_normal((32, *spec.input_shape)).astype(np.float32)
            lat.update(time_forms({n: files[n] for n in ("old", "model")}, x, calib, td, args.threads, args.rounds,
                                  args.block, ()))
    out["latency"] = lat
    print("p50 ms and interleaved speed-up vs old (median of per-round ratios; > 1 = faster):")
    for k, v in lat.items():
        print(f"{k:14s} " + "  ".join(f"{n} {r['p50_ms']:6.2f} ({r['ratio']:.3f}x)" for n, r in v.items()))
    if args.json:
        atomic_write_json(Path(args.json), out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
