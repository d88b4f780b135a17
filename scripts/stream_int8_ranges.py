"""Which NNCF setting keeps a stream checkpoint's OpenVINO INT8 step graph near fp32?

    .venv/bin/python scripts/stream_int8_ranges.py [N_TEST_SEQUENCES]   (default 120)

Exports reference/stgcn-nwucla-stream.ckpt's step graph, quantizes it with NNCF (Convolution /
MatMul only, calibrated on 256 training sequences streamed, as `make export` does) under several
settings, and prints each one's streaming top-1 on the first N recorded NW-UCLA test sequences
(docs/BENCHMARKS.md "Streaming variants in make export").
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch


def main() -> int:
    import nncf
    import openvino as ov
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters
    from nncf.quantization.range_estimator import RangeEstimatorParametersSet

    from edgeskel.checkpoint import load_checkpoint
    from edgeskel.data.registry import load_dataset
    from edgeskel.data.splits import holdout
    from edgeskel.pipeline.streaming import calibration_sequences, recorded_sequences
    from edgeskel.stream import build_step_model
    from edgeskel.stream.contract import make_contract, write_contract
    from edgeskel.stream.export import export_step_onnx
    from edgeskel.stream.quantize import calibration_feeds
    from edgeskel.stream.replay import session_for

    torch.set_num_threads(1)
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 120
    model, spec, _ = load_checkpoint("reference/stgcn-nwucla-stream.ckpt")
    ds = load_dataset("nw-ucla:../shared/data/nw-ucla", layout=spec.layout)
    step = build_step_model(model, spec, "keep")
    work = Path(tempfile.mkdtemp())
    onnx = export_step_onnx(step, work / "model.onnx")
    seqs, labels = recorded_sequences(ds.test, 1, n)
    feeds = calibration_feeds(step, calibration_sequences(holdout(ds), 1, 256), 2048)
    base = ov.Core().read_model(str(onnx))
    quantized = {"Convolution", "GroupConvolution", "MatMul"}
    others = sorted({op.get_type_name() for op in base.get_ordered_ops()} - quantized - {"Parameter", "Result", "Constant"})

    def top1(model_ov: Any) -> float:
        out = work / "v"
        out.mkdir(exist_ok=True)
        shutil.copy(onnx, out / "model.onnx")
        ov.save_model(model_ov, str(out / "model.xml"))
        write_contract(out, make_contract(step, {"onnx": "model.onnx", "openvino": "model.xml"}, {}))
        session = session_for(out, "openvino", threads=1, precision="int8")
        preds = np.array([int(session.replay(f, end=True)[-1].argmax()) for f in seqs])
        return float((preds == labels).mean() * 100)

    minmax = AdvancedQuantizationParameters(activations_range_estimator_params=RangeEstimatorParametersSet.MINMAX)
    mixed = nncf.QuantizationPreset.MIXED
    settings: dict[str, dict[str, Any] | None] = {
        "fp32": None,
        "mixed (NNCF's default ranges)": {"preset": mixed},
        "mixed, MatMul not quantized": {"preset": mixed, "skip": "MatMul"},
        "mixed, no fast bias correction": {"preset": mixed, "fast_bias_correction": False},
        "mixed, MINMAX ranges (edgeskel)": {"preset": mixed, "advanced_parameters": minmax},
    }
    for name, cfg in settings.items():
        t0 = time.time()
        if cfg is None:
            result = top1(base)
        else:
            kw = dict(cfg)
            skip = kw.pop("skip", None)
            ignored = nncf.IgnoredScope(types=others + ([skip] if skip else []), validate=False)
            q = nncf.quantize(ov.Core().read_model(str(onnx)), nncf.Dataset(feeds), subset_size=len(feeds),
                              ignored_scope=ignored, **kw)
            result = top1(q)
        print(f"{name:34s} {result:6.2f}  ({time.time() - t0:.0f} s)", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
