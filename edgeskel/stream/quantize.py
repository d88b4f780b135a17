"""INT8 step graphs for ONNX Runtime: static QDQ quantization calibrated on recorded streams.

A step graph has many inputs (the frames, `valid`, every state), so calibration replays real
sequences through the fp32 step model -- each as a stream that then ends -- and records every
call's feeds (`calibration_feeds`); ORT's calibrators run on those (quantize/ort_qdq.py,
FeedListReader). Only Conv and MatMul are quantized: the state path (Concat/Slice/Where of
frames kept between calls) stays float, so quantization error cannot accumulate in the state
from call to call. INT8 is judged like a windowed INT8 export (validate/parity.py, "int8":
top-1 agreement and the typical per-call error) against the PyTorch step model, over every
call of held-out streams and their ends.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from edgeskel.stream.contract import FRAME_INPUT, VALID_INPUT, state_names
from edgeskel.stream.step import StepModel, end_calls

QUANTIZED_OPS = ("Conv", "MatMul")


def calibration_feeds(step: StepModel, sequences: Sequence[np.ndarray], max_calls: int = 2048) -> list[dict[str, np.ndarray]]:
    """Every call's inputs (frame, valid, states) while `sequences` (raw (C, L, V, M) each) are
    streamed and ended, at most `max_calls` in all (spread over the sequences)."""
    p = step.plan
    feeds: list[dict[str, np.ndarray]] = []
    per_seq = max(1, max_calls // max(1, len(sequences)))
    with torch.no_grad():
        for seq in sequences:
            states = step.initial_states()
            calls = end_calls(seq.shape[1], p.stride, p.flush_calls)[:per_seq]
            for first, real in calls:
                n = step.batch  # a batched graph: the stream in every row (the ranges are per tensor)
                chunk = np.zeros((n, p.channels, p.stride, p.joints, p.persons), np.float32)
                chunk[:, :, :real] = seq[:, first:first + real]
                valid = np.full((n,), float(real), np.float32)
                feeds.append({FRAME_INPUT: chunk, VALID_INPUT: valid,
                              **{state_names(i)[0]: s.numpy().copy() for i, s in enumerate(states)}})
                out = step(torch.from_numpy(chunk), torch.from_numpy(valid), *states)
                states = list(out[1:])
            if len(feeds) >= max_calls:
                break
    return feeds[:max_calls]


def quantize_step_graph(onnx_fp32: Path, onnx_out: Path, step: StepModel, sequences: Sequence[np.ndarray],
                        method: str = "minmax", max_calls: int = 2048, symmetric: bool = False) -> dict[str, Any]:
    """INT8 QDQ step graph: u8 asymmetric activations, as edgeskel's windowed ORT INT8, or with
    `symmetric` s8 zero-point-0 activations, which TensorRT's explicit quantization needs."""
    from edgeskel.quantize.ort_qdq import quantize_ort_int8

    feeds = calibration_feeds(step, sequences, max_calls)
    settings = quantize_ort_int8(onnx_fp32, onnx_out, feeds, method=method, symmetric_activations=symmetric,
                                 op_types=QUANTIZED_OPS, preprocess=False, quantize_bias=not symmetric)
    settings["calib_sequences"] = len(sequences)
    return settings


def quantize_step_graph_openvino(onnx_fp32: Path, out_xml: Path, step: StepModel, sequences: Sequence[np.ndarray],
                                 max_calls: int = 2048) -> dict[str, Any]:
    """INT8 OpenVINO IR of a step graph (NNCF post-training quantization) calibrated on the same
    recorded-stream feeds as ORT's; only Convolution/MatMul inputs are quantized (every other op
    type is NNCF's ignored scope), so the state path stays float as in the ORT graph."""
    import nncf
    import openvino as ov

    feeds = calibration_feeds(step, sequences, max_calls)
    model = ov.Core().read_model(str(onnx_fp32))
    quantized_types = {"Convolution", "GroupConvolution", "MatMul"}
    others = sorted({op.get_type_name() for op in model.get_ordered_ops()} - quantized_types
                    - {"Parameter", "Result", "Constant"})
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters
    from nncf.quantization.range_estimator import RangeEstimatorParametersSet

    # MIXED: asymmetric activations (a step graph's activations after masks and state concats are
    # far from zero-centred; PERFORMANCE flipped 12% of a tiny test model's decisions, MIXED none).
    # MINMAX ranges over all calls, as ORT's minmax: NNCF's default averages per-call ranges, and
    # most calls of a stream (warming up, held, ending) are small, so the mean range clipped the
    # running calls (upsampled ST-GCN on NW-UCLA: 78.66 vs 84.70 fp32; MINMAX: within 1 point)
    q = nncf.quantize(model, nncf.Dataset(feeds), preset=nncf.QuantizationPreset.MIXED, subset_size=len(feeds),
                      ignored_scope=nncf.IgnoredScope(types=others, validate=False),
                      advanced_parameters=AdvancedQuantizationParameters(
                          activations_range_estimator_params=RangeEstimatorParametersSet.MINMAX))
    ov.save_model(q, str(out_xml))
    fq = sum(op.get_type_name() == "FakeQuantize" for op in q.get_ordered_ops())
    return {"tool": "nncf.quantize", "nncf_version": nncf.__version__, "preset": "mixed", "activation_ranges": "minmax",
            "quantized_op_types": sorted(quantized_types), "fake_quantize_nodes": int(fq),
            "calib_samples": len(feeds), "calib_sequences": len(sequences)}
