"""Per-module INT8 sensitivity of an exported model under OpenVINO + NNCF (issue 16 item 8).

Why: a top-1 gate on a small validation split (23 SBU clips: one clip = 4.3 points) cannot say
*which* tensors INT8 damages, nor whether the damage is real or a coin flip. This measures it
without labels where possible: agreement of INT8 with fp32 predictions and the logit error
(normalized MSE, NNCF's own ranking measure) over every clip the run holds (calibration, validation
and test arrays), for

- the whole model in INT8 (what the pipeline ships),
- each top-level module alone in INT8 (everything else float): which module INT8 hurts,
- each top-level module alone kept float (everything else INT8): what reverting it buys,
- the whole model under other NNCF settings (mixed preset, quantile / histogram activation
  ranges, full bias correction): whether a global setting rescues it,

and the fp32 model's own decision margins (top-1 minus top-2 logit over the largest |logit|):
a model whose predictions sit on the decision boundary flips under any small perturbation.

Usage (run folder of a finished pipeline run, model = any fp32 ONNX of that run):

    .venv/bin/python scripts/int8_sensitivity.py runs/stgcn-sbu/cpu \
        runs/stgcn-sbu/cpu/baseline/baseline-openvino-fp32/model.onnx --out docs/sweep/sbu-int8-sensitivity.json
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

import numpy as np


def _modules(onnx_path: Path) -> list[str]:
    """Top-level module names as torch.onnx.export writes them into node names (`/gcn.3/...`)."""
    import onnx

    names: list[str] = []
    for node in onnx.load(str(onnx_path), load_external_data=False).graph.node:
        parts = node.name.split("/")
        if len(parts) > 2 and parts[1] not in names:
            names.append(parts[1])
    return names


def _pattern(module: str) -> str:
    return f".*/{re.escape(module)}/.*"


def _logits(compiled, x: np.ndarray, batch: int = 16) -> np.ndarray:
    out = compiled.output(0)
    return np.concatenate([np.asarray(compiled(x[i : i + batch])[out]) for i in range(0, len(x), batch)])


def _measure(ref: np.ndarray, got: np.ndarray, labels: dict[str, tuple[slice, np.ndarray]]) -> dict[str, float]:
    agree = float((ref.argmax(1) == got.argmax(1)).mean())
    nmse = float((((ref - got) ** 2).sum(1) / np.maximum((ref**2).sum(1), 1e-12)).mean())
    row = {"agreement": round(100 * agree, 2), "flips": int((ref.argmax(1) != got.argmax(1)).sum()), "nmse": nmse}
    for split, (sl, y) in labels.items():
        row[f"top1_{split}"] = round(100 * float((got[sl].argmax(1) == y).mean()), 2)
    return row


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path, help="pipeline run folder (holds data/*.npy)")
    ap.add_argument("onnx", type=Path, help="fp32 ONNX to quantize")
    ap.add_argument("--out", type=Path, required=True, help="JSON results")
    ap.add_argument("--subset-size", type=int, default=300, help="NNCF calibration subset (the pipeline's default)")
    args = ap.parse_args(argv)

    import nncf
    import openvino as ov

    d = args.run / "data"
    calib = np.load(d / "calib_x.npy").astype(np.float32)
    parts = {k: (np.load(d / f"{k}_x.npy").astype(np.float32), np.load(d / f"{k}_y.npy")) for k in ("val", "test")
             if (d / f"{k}_x.npy").is_file()}
    pool = np.concatenate([calib] + [x for x, _ in parts.values()])
    labels, start = {}, len(calib)
    for k, (x, y) in parts.items():
        labels[k] = (slice(start, start + len(x)), y)
        start += len(x)
    core = ov.Core()
    cfg = {"INFERENCE_PRECISION_HINT": "f32"}
    model = core.read_model(str(args.onnx))
    ref = _logits(core.compile_model(model, "CPU", cfg), pool)
    ref_row = {k: round(100 * float((ref[sl].argmax(1) == y).mean()), 2) for k, (sl, y) in labels.items()}
    calib_ds = nncf.Dataset([calib[i : i + 1] for i in range(len(calib))])
    modules = _modules(args.onnx)

    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters as Adv
    from nncf.quantization.range_estimator import RangeEstimatorParametersSet as Ranges

    settings = {  # name -> extra nncf.quantize arguments
        "mixed preset": {"preset": nncf.QuantizationPreset.MIXED},
        "quantile activation ranges": {"advanced_parameters": Adv(activations_range_estimator_params=Ranges.MEAN_QUANTILE)},
        "histogram activation ranges": {"advanced_parameters": Adv(activations_range_estimator_params=Ranges.HISTOGRAM)},
        "full bias correction": {"fast_bias_correction": False},
    }

    def run(ignored: list[str], **extra) -> dict[str, float]:
        scope = nncf.IgnoredScope(patterns=[_pattern(m) for m in ignored], validate=False) if ignored else None
        kw = {"preset": nncf.QuantizationPreset.PERFORMANCE, **extra}
        q = nncf.quantize(core.read_model(str(args.onnx)), calib_ds, subset_size=min(args.subset_size, len(calib)),
                          **kw, **({"ignored_scope": scope} if scope else {}))
        row = _measure(ref, _logits(core.compile_model(q, "CPU", cfg), pool), labels)
        row["fake_quantize"] = sum(op.get_type_name() == "FakeQuantize" for op in q.get_ops())
        return row

    top2 = np.sort(ref, axis=1)[:, -2:]
    margin = (top2[:, 1] - top2[:, 0]) / np.abs(ref).max(1)
    t0 = time.perf_counter()
    res: dict = {"fp32_margin": {"median": round(float(np.median(margin)), 4),
                                 **{f"below_{t}": round(100 * float((margin < t).mean()), 2) for t in (0.01, 0.05, 0.1)}},
                 "onnx": str(args.onnx), "pool": {"calibration": len(calib), **{k: len(x) for k, (x, _) in parts.items()}},
                 "fp32_top1": ref_row, "modules": modules, "all_int8": run([]), "only_this_int8": {}, "only_this_float": {}}
    print(f"fp32 top-1 {ref_row}; all INT8: {res['all_int8']}", file=sys.stderr)
    res["settings"] = {}
    for name, extra in settings.items():
        res["settings"][name] = run([], **extra)
        print(f"{name}: {res['settings'][name]}", file=sys.stderr)
    for m in modules:
        res["only_this_int8"][m] = run([o for o in modules if o != m])
        res["only_this_float"][m] = run([m])
        print(f"{m:12s} only INT8: {res['only_this_int8'][m]}\n{'':12s} only float: {res['only_this_float'][m]}", file=sys.stderr)
    res["seconds"] = round(time.perf_counter() - t0, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
