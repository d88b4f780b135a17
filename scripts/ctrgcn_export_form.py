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

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from export_form_compare import compare_forms  # noqa: E402

from edgeskel.models.ctrgcn import UnitGCN  # noqa: E402

FORMS = ("subsets", "stacked")


def main(argv: list[str] | None = None) -> int:
    return compare_forms(__doc__.splitlines()[0], UnitGCN, FORMS, str(ROOT / "reference/ctrgcn-nwucla.ckpt"),
                         (("ort", "fp32"), ("openvino", "fp32"), ("openvino", "bf16")), argv)


if __name__ == "__main__":
    raise SystemExit(main())
