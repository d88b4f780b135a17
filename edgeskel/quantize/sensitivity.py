"""Per-tensor quantization damage of a QDQ graph (ORT's qdq_loss_debug), ranked worst first.

One job: measure, not decide. The ranking tells the INT8 accuracy search (`int8_search.py`)
which nodes to keep in float first; it is kept apart from the search because it is a
diagnostic of its own (ORT's debug tooling, its memory appetite and log noise) that the
search merely consumes.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from edgeskel.quantize.ort_qdq import ArrayReader, input_info, quiet_ort_noise

# qdq_loss_debug keeps every intermediate tensor of every sample in memory: with full-width
# CTR-GCN, 32 samples needed > 20 GB. A few samples rank nodes well enough.
SENSITIVITY_SAMPLES = 4


def sensitivity_ranking(float_pre: Path, qdq: Path, x: np.ndarray, batch: int = 8) -> list[dict[str, Any]]:
    """Rank quantized nodes by quantization damage (lowest SQNR in dB first).

    Uses ORT's qdq_loss_debug: the QDQ graph is augmented to expose every tensor before and
    after its Q/DQ pair (local activation noise), and weights are compared with their
    dequantized copies. A tensor's damage is charged to the compute nodes (Conv/MatMul/Gemm)
    that consume or produce it in the float graph, since excluding those removes its Q/DQ.
    """
    from onnxruntime.quantization.qdq_loss_debug import (
        collect_activations,
        compute_signal_to_quantization_noice_ratio,
        create_activation_matching,
        create_weight_matching,
        modify_model_output_intermediate_tensors,
    )

    proto = onnx.load(str(float_pre), load_external_data=False)
    producers = {o: n.name for n in proto.graph.node for o in n.output}
    consumers: dict[str, list[str]] = {}
    for n in proto.graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n.name)
    input_name, fixed = input_info(float_pre)
    with tempfile.TemporaryDirectory(prefix="edgeskel-sens-") as td:
        aug = Path(td) / "aug.onnx"
        modify_model_output_intermediate_tensors(str(qdq), str(aug))
        acts = collect_activations(str(aug), ArrayReader(x, input_name, fixed or min(batch, len(x))))
    errors: dict[str, float] = {}
    for name, match in create_activation_matching(acts).items():
        errors[name] = float(compute_signal_to_quantization_noice_ratio(match["pre_qdq"], match["post_qdq"]))
    with quiet_ort_noise():
        weights = create_weight_matching(str(float_pre), str(qdq))
    for name, match in weights.items():
        # 0-d weights (e.g. a scalar gate) break ORT's compute_weight_error: compare as 1-d
        f, d = np.atleast_1d(match["float"]), np.atleast_1d(match["dequantized"])
        sqnr = float(compute_signal_to_quantization_noice_ratio(f, d))
        errors[name] = min(errors.get(name, np.inf), sqnr)
    ranking = []
    for tensor, sqnr in sorted(errors.items(), key=lambda kv: (kv[1], kv[0])):  # ties by name: reproducible
        # A tensor stays quantized while ANY node touching it is quantized (an Add, Concat or
        # MaxPool consumer keeps its Q/DQ pair even when the Conv beside it is excluded), so
        # keeping it in float means excluding its producer and every consumer. (Charging it to
        # Conv/MatMul nodes only let CTR-GCN's fallback exclude 161 nodes without un-quantizing
        # the tensors that mattered.)
        nodes = [c for c in consumers.get(tensor, []) if c]
        if producers.get(tensor):
            nodes.append(producers[tensor])
        if nodes:
            ranking.append({"tensor": tensor, "sqnr_db": round(sqnr, 2), "nodes": sorted(set(nodes))})
    return ranking
