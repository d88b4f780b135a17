"""Step graph export: DIR/model.onnx (+ DIR/model.xml/.bin for OpenVINO) and DIR/streaming.json.

The step model is exported with the legacy TorchScript exporter at opset 17 (as the windowed
export, edgeskel/export/onnx.py) and cleaned with onnxslim; every state is a graph input
`s<i>` and output `s<i>_out`, batch 1. Before anything is written as "ok", the graph is replayed
frame by frame on the backend and compared, decision by decision, with the PyTorch step model
(which the equivalence tests tie to the full-history definition, semantics.py).
"""

from __future__ import annotations

import io
import json
import warnings
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import onnx
import torch
import torch.nn as nn

from edgeskel import __version__
from edgeskel.backends import all_backends, get_backend
from edgeskel.checkpoint import ModelSpec
from edgeskel.errors import ConfigError, ExportError, ParityError
from edgeskel.io import atomic_path
from edgeskel.stream.contract import FRAME_INPUT, LOGITS_OUTPUT, VALID_INPUT, make_contract, state_names, write_contract
from edgeskel.stream.step import StepModel, build_step_model, run_stream

TENSORRT_KIT = "tensorrt"  # DIR/tensorrt/: the step engine's build kit (quantize/tensorrt.py)
# A strongly typed fp16 step engine computes these in float16; the state path (call counter, masks,
# end-of-stream table, the ring of recent logits) stays float32, so counts stay exact.
STEP_FP16_OPS = ("Conv", "MatMul", "Gemm", "BatchNormalization", "Relu", "Softmax", "Tanh", "Sigmoid", "Einsum")


class ParityCheck(NamedTuple):
    """One replay export_streaming judges: which runtime replays which graph (ONNX folder other than
    the export's own, or OpenVINO's stateful form) at which precision, under which report key."""

    key: str
    runtime: str
    precision: str
    onnx_dir: Path | None = None
    stateful: bool = False


def streaming_precisions() -> dict[str, tuple[str, ...]]:
    """{backend: precisions of its step graph} (edgeskel/backends/ `streaming_precisions`)."""
    return {s.name: s.streaming_precisions for s in all_backends() if s.streaming_precisions}


def export_step_onnx(step: StepModel, out: str | Path, opset: int = 17, simplify: bool = True,
                     einsum: str = "keep") -> Path:
    """`einsum="rewrite"`: every `torch.einsum` (users' graph convolutions) is traced as
    Transpose/Reshape/MatMul, as for windowed TensorRT graphs (export/einsum.py)."""
    import contextlib

    from edgeskel.export.einsum import einsum_as_matmul

    out = Path(out)
    states = step.initial_states()
    frame = torch.zeros(step.frame_shape())
    ins = [FRAME_INPUT, VALID_INPUT] + [state_names(i)[0] for i in range(len(states))]
    outs = [LOGITS_OUTPUT] + [state_names(i)[1] for i in range(len(states))]
    buf = io.BytesIO()
    rewrite = einsum_as_matmul() if einsum == "rewrite" else contextlib.nullcontext()
    try:
        with warnings.catch_warnings(), torch.no_grad(), rewrite:
            warnings.simplefilter("ignore")
            torch.onnx.export(step, (frame, step.full_valid(), *states), buf, dynamo=False, opset_version=opset, input_names=ins,
                              output_names=outs, do_constant_folding=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many types; one clear line
        raise ExportError(f"{out}: step graph export failed: {type(exc).__name__}: {str(exc).splitlines()[0]}") from None
    proto = onnx.load_from_string(buf.getvalue())
    if simplify:
        import onnxslim

        proto = onnxslim.slim(proto)
    if einsum == "rewrite":
        from edgeskel.export.onnx import refuse_einsum

        refuse_einsum(proto, out)
    got_in = [i.name for i in proto.graph.input]
    got_out = [o.name for o in proto.graph.output]
    if got_in != ins or got_out != outs:
        raise ExportError(f"{out}: step graph lost its named inputs/outputs (inputs {got_in[:4]}..., outputs {got_out[:4]}...)")
    props = {"edgeskel_version": __version__, "torch_version": torch.__version__, "form": "streaming",
             "streaming_plan": json.dumps(step.plan.to_dict()), "spec": json.dumps(step.spec.to_dict(), default=str)}
    del proto.metadata_props[:]
    onnx.helper.set_model_props(proto, props)
    proto.producer_name, proto.producer_version = "edgeskel", __version__
    try:
        onnx.checker.check_model(proto, full_check=True)
    except onnx.checker.ValidationError as exc:
        raise ExportError(f"{out}: step graph failed onnx.checker: {str(exc).splitlines()[0]}") from None
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        onnx.save(proto, str(tmp))
    return out


def parity_sequence(step: StepModel, extra_calls: int = 6, seed: int = 0, hold: bool = True) -> np.ndarray:
    """A raw test stream (C, L, V, M): past `valid_from`, person 1 absent at first, one empty call
    (`hold`: only for graphs that hold on empty calls)."""
    p = step.plan
    calls = -(-p.valid_from // p.stride) + extra_calls
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(p.channels, calls * p.stride, p.joints, p.persons)).astype(np.float32)
    if p.persons > 1:
        x[:, : 3 * p.stride, :, 1:] = 0
    if hold:
        x[:, 4 * p.stride: 5 * p.stride] = 0  # an empty call: the state must hold
    return x


def check_backend(step: StepModel, out_dir: Path, backend: str, precision: str = "fp32",
                  sequences: list[np.ndarray] | None = None, onnx_dir: Path | None = None,
                  stateful: bool = False) -> dict[str, Any]:
    """Replay streams (default: one random parity stream) on the exported graph and compare every
    call's decision, from the first call to the last flush call, with the PyTorch step model.
    `onnx_dir`: where the ONNX to replay is (default out_dir; a TensorRT kit's for its graph)."""
    from edgeskel.stream.replay import session_for
    from edgeskel.validate.parity import check_parity

    if sequences is None:
        frames = parity_sequence(step, hold=step.hold_empty)
        # the stream runs, then ends mid-call (leftover frames + flush calls): both paths compared
        sequences = [frames[:, : frames.shape[1] - (step.plan.stride // 2)]]
    session = session_for(out_dir, backend, threads=1, precision=precision, onnx_dir=onnx_dir, stateful=stateful)
    ref = np.concatenate([run_stream(step, torch.from_numpy(f), end=True).numpy() for f in sequences])
    got = np.concatenate([session.replay(f, end=True) for f in sequences])
    res = check_parity(ref, got, precision)
    res["calls"] = int(len(ref))
    return res


def export_streaming(model: nn.Module, spec: ModelSpec, backend: str, precision: str, out_dir: str | Path,
                     stride_mode: str = "keep", opset: int = 17, check: bool = True,
                     hold_empty: bool = True, calib: list[np.ndarray] | None = None,
                     holdout: list[np.ndarray] | None = None, window: int | None = None,
                     options: dict[str, Any] | None = None, batch: int = 1) -> dict[str, Any]:
    """Write DIR/model.onnx (+ model.xml/.bin for openvino, + DIR/tensorrt/, a build kit of one
    batch-1 step engine, for tensorrt) and DIR/streaming.json; check parity. INT8 (ORT) needs
    `calib`: raw recorded sequences (C, L, V, M) to calibrate on; `holdout` (other sequences)
    are streamed to judge it. `options`: TensorRT's route (tensorrt_version, typing, dla_core,
    workspace_mb), as for windowed variants. `batch`: streams one call serves (N independent
    streams, docs/STREAMING.md "Batched streams"). Raises NotStreamable (with the reason) for
    models without a streaming form."""
    supported = streaming_precisions()
    if backend not in supported:
        raise ConfigError(f"--form streaming: backend {backend!r} has no streaming export; choose one of {list(supported)}")
    if precision not in supported[backend]:
        raise ConfigError(f"--form streaming: precision {precision!r} on {backend} is not supported yet "
                          f"(supported: {list(supported[backend])}; INT8 step graphs are a later part of issue 29)")
    if precision == "int8" and not (calib and holdout):
        raise ConfigError("--form streaming --precision int8: give --calib-data SPEC (recorded sequences: its "
                          "training split calibrates, its test split judges the INT8 graph)")
    out_dir = Path(out_dir)
    step = build_step_model(model, spec, stride_mode, hold_empty=hold_empty, window=window, batch=batch)
    extra: dict[str, Any] = {}
    einsum = "rewrite" if backend == "tensorrt" else "keep"  # TensorRT: no Einsum (slow, none in INT8/DLA)
    if precision == "int8" and backend != "openvino":  # the ONNX itself is INT8 (OpenVINO's is its IR)
        from edgeskel.stream.quantize import quantize_step_graph

        fp32 = export_step_onnx(step, out_dir / "model.fp32.onnx", opset=opset, einsum=einsum)
        # TensorRT's explicit quantization needs s8 symmetric activations (zero-point 0)
        extra["quantization"] = quantize_step_graph(fp32, out_dir / "model.onnx", step, calib,
                                                    symmetric=backend == "tensorrt")
        onnx_path = out_dir / "model.onnx"
    else:
        onnx_path = export_step_onnx(step, out_dir / "model.onnx", opset=opset, einsum=einsum)
    files = {"onnx": onnx_path.name}
    if backend == "openvino" and precision == "int8":
        from edgeskel.stream.quantize import quantize_step_graph_openvino

        extra["quantization"] = quantize_step_graph_openvino(onnx_path, out_dir / "model.xml", step, calib)
        files["openvino"] = "model.xml"
    elif backend == "openvino":
        from edgeskel.quantize.openvino import to_openvino_ir

        files["openvino"] = to_openvino_ir(onnx_path, out_dir / "model.xml").name
    if backend == "tensorrt":  # the device builds the engine: no shape flags, every input is static
        from edgeskel.quantize.tensorrt import prepare_tensorrt

        opts = options or {}
        kit = prepare_tensorrt(out_dir / "model.fp32.onnx" if precision == "int8" else onnx_path, out_dir / TENSORRT_KIT,
                               precision, qdq_onnx=onnx_path if precision == "int8" else None, batch_sizes=[batch],
                               dla_core=opts.get("dla_core"), allow_gpu_fallback=opts.get("allow_gpu_fallback", True),
                               workspace_mb=int(opts.get("workspace_mb", 1024)),
                               tensorrt_version=opts.get("tensorrt_version"), typing=opts.get("typing"),
                               fp16_ops=STEP_FP16_OPS)
        if not kit["lint"]["passed"]:
            raise ExportError(f"{out_dir / TENSORRT_KIT}: step graph fails the TensorRT lint: {kit['lint']['errors'][:3]}")
        files["tensorrt"] = TENSORRT_KIT
        extra["tensorrt"] = {k: kit[k] for k in ("route", "typing", "tensorrt_version", "engines", "trtexec")}
    (out_dir / "model.fp32.onnx").unlink(missing_ok=True)  # INT8: the float graph only fed the quantizer and the kit
    contract = make_contract(step, files, {"backend": backend, "precision": precision, **extra})
    if backend == "openvino":  # its ReadValue/Assign form too; which one is faster is timed below
        from edgeskel.stream.stateful import STATEFUL_FILE, make_stateful_ir

        files["openvino_stateful"] = make_stateful_ir(out_dir / files["openvino"], out_dir / STATEFUL_FILE, contract).name
        contract["files"] = dict(files)
    result: dict[str, Any] = {"status": "ok", "files": [str(out_dir / f) for f in files.values()],
                              "plan": step.plan.to_dict(), "parity": {}, **extra}
    write_contract(out_dir, contract)
    if check:
        spec_b = get_backend(backend)
        runner = spec_b.runner
        # ORT replays the ONNX, OpenVINO its IR; TensorRT's engine is the device's: ORT replays the kit's
        # TensorRT-ready ONNX (fp16-typed on strongly typed routes) under the fp16 rule
        if precision == "int8" and backend != "openvino":  # the QDQ graph itself (ORT's, or TensorRT's source)
            checks = [ParityCheck(key="ort", runtime="ort", precision="int8")]
        else:
            checks = [ParityCheck(key="ort", runtime="ort", precision="fp32")]
            if runner != "ort" and spec_b.runs_here:  # e.g. OpenVINO's IR
                checks.append(ParityCheck(key=runner, runtime=runner, precision=precision))
        if TENSORRT_KIT in files:
            checks.append(ParityCheck(key=f"ort ({TENSORRT_KIT}/model.onnx)", runtime="ort", precision=precision,
                                      onnx_dir=out_dir / TENSORRT_KIT))
        if "openvino_stateful" in files:
            checks.append(ParityCheck(key="openvino-stateful", runtime=runner, precision=precision, stateful=True))
        for c in checks:
            res = check_backend(step, out_dir, c.runtime, c.precision, holdout if c.precision == "int8" else None,
                                onnx_dir=c.onnx_dir, stateful=c.stateful)
            result["parity"][c.key] = {k: res[k] for k in ("max_abs", "scale", "calls", "passed", "agreement")}
            if not res["passed"] and not c.stateful:  # the stateful form is optional: judged, never fatal
                result["status"] = "failed"
    if check and result["status"] == "ok" and "openvino_stateful" in files:
        from edgeskel.stream.stateful import compare_forms

        form = compare_forms(out_dir, precision, parity_sequence(step, extra_calls=20, hold=step.hold_empty))
        form["parity"] = result["parity"]["openvino-stateful"]
        # preferred (what bundles ship) only if it is faster AND computes what the stateless graph does
        form["preferred"] = bool(form["preferred"] and form["parity"]["passed"])
        contract["openvino_stateful"] = result["openvino_stateful"] = form
        write_contract(out_dir, contract)
    result["files"].append(str(out_dir / "streaming.json"))
    if result["status"] != "ok":
        bad = {k: v for k, v in result["parity"].items() if not v["passed"]}
        raise ParityError(f"{out_dir}: step graph does not match the PyTorch step model: {bad}")
    return result


def export_streaming_checkpoint(checkpoint: str | Path, backend: str, precision: str, out_dir: str | Path,
                                stride_mode: str = "keep", calib_data: str | None = None,
                                calib_samples: int = 64, window: int | None = None) -> dict[str, Any]:
    """`edgeskel export --checkpoint C --backend B --precision P --form streaming --out DIR`
    (`--calib-data SPEC --calib-samples N` for INT8: N training sequences calibrate, N test
    sequences judge)."""
    from edgeskel.checkpoint import load_checkpoint

    model, spec, extra = load_checkpoint(checkpoint)
    calib = holdout = None
    if calib_data is not None:
        from edgeskel.data import load_dataset
        from edgeskel.stream.evaluate import as_stream_frames
        from edgeskel.train.api import check_compatible

        ds = load_dataset(calib_data, layout=spec.layout)
        check_compatible(spec, ds, str(checkpoint), extra, fix="pass --calib-data with the data it was made for")
        rng = np.random.default_rng(0)
        pick = [rng.permutation(len(s))[:calib_samples] for s in (ds.train, ds.test)]
        calib = [as_stream_frames(ds.train.samples[i], spec.preprocess.num_person) for i in pick[0]]
        holdout = [as_stream_frames(ds.test.samples[i], spec.preprocess.num_person) for i in pick[1]]
    return export_streaming(model, spec, backend, precision, out_dir, stride_mode=stride_mode, calib=calib,
                            holdout=holdout, window=window)
