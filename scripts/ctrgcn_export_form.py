"""Measure the export form of CTR-GCN's unit_gcn (issue 20 item 4).

The official unit_gcn loops over its 3 graph subsets: per subset 4 small 1x1 convs, two
temporal means, tanh, and two MatMuls, then adds the subsets (~45 nodes per block; CTR-GCN is
~600 small kernels at batch 1). The "stacked" form (`ctrgcn.UnitGCN._forward_stacked`) runs
the subsets' convs as one conv per stage (`models/parallel_1x1.py`), conv1/conv2 on the
temporal mean, and the subset sum as one MatMul over (subset, joint). Both forms of the same
weights are exported with edgeskel's `export_onnx` (batch 1), converted to OpenVINO, and timed
INTERLEAVED in one process; p50 ratios stacked vs subsets are printed.

Run:  OMP_NUM_THREADS=1 .venv/bin/python scripts/ctrgcn_export_form.py --threads 2 \\
        [--checkpoint reference/ctrgcn-nwucla.ckpt] [--budget 0.5] [--int8] [--json F]
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
from edgeskel.models.ctrgcn import UnitGCN  # noqa: E402

sys.path.insert(0, str(ROOT / "scripts"))
from hyperformer_export_form import interleaved  # noqa: E402

FORMS = ("subsets", "stacked")


def with_form(model: torch.nn.Module, form: str) -> torch.nn.Module:
    m = copy.deepcopy(model).eval()
    for mod in m.modules():
        if isinstance(mod, UnitGCN):
            mod.export_form = form
    return m


def op_counts(path: Path) -> dict[str, int]:
    return dict(Counter(n.op_type for n in onnx.load(str(path)).graph.node))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", default=str(ROOT / "reference/ctrgcn-nwucla.ckpt"))
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
        ref = model(torch.from_numpy(x)).numpy()
    lat: dict[str, object] = {}
    with tempfile.TemporaryDirectory(prefix="ctrgcn-form-") as td:
        files, diffs, ops = {}, {}, {}
        for form in FORMS:
            files[form] = export_onnx(with_form(model, form), spec, Path(td) / f"{form}.onnx", batch=1)
            ops[form] = op_counts(files[form])
            sess = get_runner("ort", files[form], precision="fp32", threads=args.threads).load()
            diffs[form] = float(np.abs(sess.infer(x) - ref).max() / np.abs(ref).max())
            sess.close()
        out["ops"], out["nodes"], out["max_rel_diff_vs_torch"] = ops, {f: sum(o.values()) for f, o in ops.items()}, diffs
        out["onnx_bytes"] = {f: files[f].stat().st_size for f in FORMS}
        print("ONNX nodes:", out["nodes"], " bytes:", out["onnx_bytes"])
        print("max |ORT - torch| / max |logit|:", diffs)
        for backend, precision in (("ort", "fp32"), ("openvino", "fp32"), ("openvino", "bf16")):
            runners = {}
            for form in FORMS:
                art = files[form] if backend == "ort" else to_openvino_ir(files[form], Path(td) / f"{form}-{precision}.xml")
                runners[form] = get_runner(backend, art, precision=precision, threads=args.threads).load()
            lat[f"{backend} {precision}"] = interleaved(runners, x, args.rounds, args.block)
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
    print("p50 ms, and the speed-up over 'subsets' (median of per-round ratios; > 1 = faster):")
    for k, v in lat.items():
        print(f"  {k:14s} " + "  ".join(f"{f} {v[f]['p50_ms']:.3f} ms ({v[f]['ratio']:.2f}x)" for f in FORMS))
    if args.json:
        atomic_write_json(Path(args.json), out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
