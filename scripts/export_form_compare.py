"""Shared driver of the export-form scripts (stgcn_export_form.py, ctrgcn_export_form.py).

Both forms of the same weights are exported with edgeskel's `export_onnx` (batch 1), checked
against eager PyTorch on ONNX Runtime, converted to OpenVINO (and with --int8 quantized: ORT
quantize_static, NNCF) and timed INTERLEAVED in one process (`interleaved`, `time_forms`, also
used by hyperformer_export_form.py); p50 and the speed-up of every form over the first are
printed and, with --json, written.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import tempfile
import time
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


def interleaved(runners: dict[str, object], x: np.ndarray, rounds: int, block: int) -> dict[str, dict[str, float]]:
    """Per runner: p50 ms over all runs and `ratio`, the median over rounds of
    (the first runner's block median / this runner's block median). Each round runs `block`
    inferences per runner, start rotated; the per-round ratio cancels load that drifts between rounds."""
    names = list(runners)
    times: dict[str, list[float]] = {n: [] for n in names}
    ratios: dict[str, list[float]] = {n: [] for n in names}
    for r in runners.values():
        for _ in range(3):
            r.infer(x)  # warm-up
    for i in range(rounds):
        med = {}
        for n in names[i % len(names):] + names[: i % len(names)]:
            run = []
            for _ in range(block):
                t0 = time.perf_counter()
                runners[n].infer(x)
                run.append((time.perf_counter() - t0) * 1e3)
            times[n] += run
            med[n] = statistics.median(run)
        for n in names:
            ratios[n].append(med[names[0]] / med[n])
    return {n: {"p50_ms": statistics.median(times[n]), "ratio": statistics.median(ratios[n])} for n in names}


def time_forms(files: dict[str, Path], x: np.ndarray, calib: np.ndarray | None, td: str, threads: int, rounds: int,
               block: int, fp_backends: tuple[tuple[str, str], ...]) -> dict[str, dict[str, dict[str, float]]]:
    """{"<backend> <precision>": interleaved(...)} for the exported forms `files` (the first is
    the baseline of the ratios): each float (backend, precision), then, with `calib`, ORT
    quantize_static and NNCF INT8 of each form."""
    from edgeskel.quantize.openvino import quantize_nncf, to_openvino_ir
    from edgeskel.quantize.ort_qdq import quantize_ort_int8
    from edgeskel.runtime import get_runner

    lat: dict[str, dict[str, dict[str, float]]] = {}
    for backend, precision in fp_backends:
        runners = {}
        for form, onnx_file in files.items():
            art = onnx_file if backend == "ort" else to_openvino_ir(onnx_file, Path(td) / f"{form}-{precision}.xml")
            runners[form] = get_runner(backend, art, precision=precision, threads=threads).load()
        lat[f"{backend} {precision}"] = interleaved(runners, x, rounds, block)
    for backend in ("ort", "openvino") if calib is not None else ():
        runners = {}
        for form, onnx_file in files.items():
            if backend == "ort":
                art = Path(td) / f"{form}-int8.onnx"
                quantize_ort_int8(onnx_file, art, calib, symmetric_activations=False)
            else:
                art = Path(td) / f"{form}-int8.xml"
                quantize_nncf(onnx_file, art, calib, subset_size=32)
            runners[form] = get_runner(backend, art, precision="int8", threads=threads).load()
        lat[f"{backend} int8"] = interleaved(runners, x, rounds, block)
    return lat


def with_form(model: torch.nn.Module, unit_cls: type, form: str) -> torch.nn.Module:
    """A copy of `model` whose `unit_cls` modules export `form`."""
    m = copy.deepcopy(model).eval()
    for mod in m.modules():
        if isinstance(mod, unit_cls):
            mod.export_form = form
    return m


def op_counts(path: Path) -> dict[str, int]:
    return dict(Counter(n.op_type for n in onnx.load(str(path)).graph.node))


def compare_forms(description: str, unit_cls: type, forms: tuple[str, ...], default_checkpoint: str,
                  fp_backends: tuple[tuple[str, str], ...], argv: list[str] | None = None) -> int:
    """The whole measurement (command line: --checkpoint --budget --threads --rounds --block --int8 --json)."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--checkpoint", default=default_checkpoint)
    ap.add_argument("--budget", type=float, default=None, help="factorize to this parameter budget first")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--block", type=int, default=5)
    ap.add_argument("--int8", action="store_true")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

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
    with tempfile.TemporaryDirectory(prefix="export-form-") as td:
        files, diffs, ops = {}, {}, {}
        for form in forms:
            files[form] = export_onnx(with_form(model, unit_cls, form), spec, Path(td) / f"{form}.onnx", batch=1)
            ops[form] = op_counts(files[form])
            sess = get_runner("ort", files[form], precision="fp32", threads=args.threads).load()
            diffs[form] = float(np.abs(sess.infer(x) - ref).max() / np.abs(ref).max())
            sess.close()
        out["ops"], out["nodes"], out["max_rel_diff_vs_torch"] = ops, {f: sum(o.values()) for f, o in ops.items()}, diffs
        out["onnx_bytes"] = {f: files[f].stat().st_size for f in forms}
        print("ONNX nodes:", out["nodes"], " bytes:", out["onnx_bytes"])
        print("max |ORT - torch| / max |logit|:", diffs)
        calib = rng.standard_normal((32, *spec.input_shape)).astype(np.float32) if args.int8 else None
        lat = time_forms(files, x, calib, td, args.threads, args.rounds, args.block, fp_backends)
    out["latency"] = lat
    print(f"p50 ms, and the speed-up over {forms[0]!r} (median of per-round ratios; > 1 = faster):")
    for k, v in lat.items():
        print(f"  {k:14s} " + "  ".join(f"{f} {v[f]['p50_ms']:.3f} ms ({v[f]['ratio']:.2f}x)" for f in forms))
    if args.json:
        atomic_write_json(Path(args.json), out)
    return 0
