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

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from export_form_compare import compare_forms  # noqa: E402

from edgeskel.models.pyskl_units import UnitGCN  # noqa: E402

FORMS = ("pre", "post", "concat")


def main(argv: list[str] | None = None) -> int:
    return compare_forms(__doc__.splitlines()[0], UnitGCN, FORMS, str(ROOT / "reference/stgcn-nwucla.ckpt"),
                         (("ort", "fp32"), ("openvino", "fp32")), argv)


if __name__ == "__main__":
    raise SystemExit(main())
