"""Measure the export form of PYSKL's `unit_gcn` graph aggregation (issue 20 item 4).

PYSKL computes `einsum('nkctv,kvw->nctw')` after a 1x1 conv to K*C channels ("pre" form:
Conv -> Reshape -> MatMul -> ReduceSum -> Reshape -> BatchNorm). The per-op profile of the
ST-GCN benchmark shows most kernel time outside the convolutions (OpenVINO INT8: Multiply,
ReduceSum and Reorder nodes ~50%). The "post" form aggregates first and mixes channels after:

    z  = pre(x)                          (the factorized conv's `down`, or nothing)
    z2 = z @ [G_0 | G_1 | ... ]          (N, R, T, K*V): one MatMul, no Reshape
    y  = Conv(kernel (1, K), dilation (1, V))(z2) * bn_scale + bn_shift + bias_term(c, w)

which is the same function (the dilated conv sums W_k z G_k over k; the conv bias through the
graph becomes a (C, V) constant). Both forms of the same trained weights are exported with
edgeskel's `export_onnx` (batch 1), converted to OpenVINO and quantized (ORT quantize_static,
NNCF), and timed INTERLEAVED in one process; p50 ratios post vs pre are printed.

Run:  OMP_NUM_THREADS=1 .venv/bin/python scripts/stgcn_export_form.py --threads 2 --int8 \\
        [--checkpoint reference/stgcn-nwucla.ckpt] [--budget 0.33]
"""

from __future__ import annotations

import argparse
import copy
import sys
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edgeskel.checkpoint import load_checkpoint  # noqa: E402
from edgeskel.export.onnx import export_onnx  # noqa: E402
from edgeskel.io import atomic_write_json  # noqa: E402
from edgeskel.models import pyskl_units  # noqa: E402

sys.path.insert(0, str(ROOT / "scripts"))
from hyperformer_export_form import interleaved  # noqa: E402


FORMS = ("pre", "post", "concat")


def with_form(model: torch.nn.Module, form: str) -> torch.nn.Module:
    m = copy.deepcopy(model).eval()
    for mod in m.modules():
        if isinstance(mod, pyskl_units.UnitGCN):
            mod.export_form = form
    return m


def op_counts(path: Path) -> dict[str, int]:
    return dict(Counter(n.op_type for n in onnx.load(str(path)).graph.node))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", default=str(ROOT / "reference/stgcn-nwucla.ckpt"))
    ap.add_argument("--budget", type=float, default=None, help="factorize to this parameter budget first")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--block", type=int, default=5)
    ap.add_argument("--int8", action="store_true")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    from edgeskel.quantize.openvino import quantize_nncf, to_openvino_ir
    from edgeskel.quantize.ort_int8 import quantize_ort_int8
    from edgeskel.runtime import get_runner

    model, spec, _ = load_checkpoint(args.checkpoint)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, *spec.input_shape)).astype(np.float32)
    if args.budget is not None:
        from edgeskel.compress import compress_model
        from edgeskel.compress.config import CompressionConfig

        cfg = CompressionConfig(policy="budget", target="params", budget=args.budget, data_aware=False, rank_multiple=8)
        model, _ = compress_model(model, cfg, (1, *spec.input_shape), [])
    model.eval()
    out: dict[str, object] = {"checkpoint": str(args.checkpoint), "budget": args.budget, "threads": args.threads,
                              "rounds": args.rounds, "block": args.block}
    with torch.no_grad():
        ref = model(torch.from_numpy(x))
    lat: dict[str, object] = {}
    with tempfile.TemporaryDirectory(prefix="stgcn-form-") as td:
        files, diffs, ops = {}, {}, {}
        for form in FORMS:
            m = with_form(model, form)
            files[form] = export_onnx(m, spec, Path(td) / f"{form}.onnx", batch=1)
            ops[form] = op_counts(files[form])
            sess = get_runner("ort", files[form], precision="fp32", threads=args.threads).load()
            diffs[form] = float(np.abs(sess.infer(x) - ref.numpy()).max() / np.abs(ref.numpy()).max())
            sess.close()
        out["ops"], out["max_rel_diff_vs_torch"] = ops, diffs
        print("ONNX ops:", ops)
        print("max |ORT - torch| / max |logit|:", diffs)
        for backend in ("ort", "openvino"):
            runners = {}
            for form in FORMS:
                art = files[form] if backend == "ort" else to_openvino_ir(files[form], Path(td) / f"{form}.xml")
                runners[form] = get_runner(backend, art, precision="fp32", threads=args.threads).load()
            lat[f"{backend} fp32"] = interleaved(runners, x, args.rounds, args.block)
        if args.int8:
            calib = rng.standard_normal((32, *spec.input_shape)).astype(np.float32)
            for backend in ("ort", "openvino"):
                runners = {}
                for form in FORMS:
                    if backend == "ort":
                        art = Path(td) / f"{form}-int8.onnx"
                        quantize_ort_int8(files[form], art, calib, symmetric_activations=False)
                    else:
                        art = Path(td) / f"{form}-int8.xml"
                        quantize_nncf(files[form], art, calib, subset_size=32)
                    runners[form] = get_runner(backend, art, precision="int8", threads=args.threads).load()
                lat[f"{backend} int8"] = interleaved(runners, x, args.rounds, args.block)
    out["latency"] = lat
    print("p50 ms, and post's speed-up over pre (median of per-round ratios; > 1 = post faster):")
    for k, v in lat.items():
        print(f"  {k:14s} " + "  ".join(f"{f} {v[f]['p50_ms']:.3f} ms ({v[f]['ratio']:.2f}x)" for f in FORMS))
    if args.json:
        atomic_write_json(Path(args.json), out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
