"""Drive an exported step graph from its streaming.json (numpy + the runtime only).

`StreamSession` is what a deployment does: keep the states, feed `stride` frames per call,
swap state outputs into state inputs. The ORT / OpenVINO adapters only map a dict of named
inputs to a dict of named outputs, so the same loop serves parity checks and benchmarks.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from edgeskel.errors import ExportError

RunFn = Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]


class StreamSession:
    def __init__(self, contract: dict[str, Any], run: RunFn):
        self.contract, self.run = contract, run
        self.stride = int(contract["stride"])
        self.reset()

    def reset(self) -> None:
        self.states = {s["input"]: np.full(s["shape"], s["initial"], dtype=s["dtype"]) for s in self.contract["state"]}

    def step(self, frames: np.ndarray, valid: int | None = None) -> np.ndarray:
        """`frames` (C, stride, V, M) raw, `valid` of them real (default all) -> logits (K,)."""
        feeds = dict(self.states)
        feeds[self.contract["frame_input"]] = np.ascontiguousarray(frames[None], dtype=np.float32)
        feeds[self.contract["valid_input"]] = np.full((1,), self.stride if valid is None else valid, np.float32)
        out = self.run(feeds)
        for s in self.contract["state"]:
            self.states[s["input"]] = out[s["output"]]
        return np.asarray(out[self.contract["logits_output"]])[0]

    def replay(self, frames: np.ndarray, end: bool = False) -> np.ndarray:
        """Raw (C, L, V, M) -> decisions, one per call, from a fresh state: L // stride calls, or
        with `end` the whole calls, the end call with the leftover frames and the flush calls."""
        self.reset()
        s = self.stride
        whole = frames.shape[1] // s
        out = [self.step(frames[:, i * s:(i + 1) * s]) for i in range(whole)]
        if end:
            left = frames[:, whole * s:]
            pad = np.zeros((frames.shape[0], s) + frames.shape[2:], np.float32)
            pad[:, : left.shape[1]] = left
            out.append(self.step(pad, left.shape[1]))
            out += [self.step(np.zeros_like(pad), 0) for _ in range(int(self.contract["flush_calls"]) - 1)]
        return np.stack(out)


def ort_run(path: str | Path, threads: int | None = None) -> RunFn:
    import onnxruntime as ort

    from edgeskel.runtime.ort import cpu_session_options

    try:
        sess = ort.InferenceSession(str(path), cpu_session_options(threads), providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001
        raise ExportError(f"{path}: onnxruntime cannot load the step graph: {str(exc).splitlines()[0]}") from None
    names = [o.name for o in sess.get_outputs()]

    def run(feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return dict(zip(names, sess.run(names, feeds), strict=True))

    return run


def openvino_run(path: str | Path, threads: int | None = None, precision: str = "fp32") -> RunFn:
    import openvino as ov

    from edgeskel.runtime.openvino import HINTS

    config = {"INFERENCE_PRECISION_HINT": HINTS.get(precision, "f32"), "PERFORMANCE_HINT": "LATENCY"}
    if threads:
        config["INFERENCE_NUM_THREADS"] = int(threads)
    try:
        compiled = ov.Core().compile_model(str(path), "CPU", config)
    except Exception as exc:  # noqa: BLE001
        raise ExportError(f"{path}: OpenVINO cannot load the step graph: {str(exc).splitlines()[0]}") from None
    request = compiled.create_infer_request()
    names = [o.get_any_name() for o in compiled.outputs]

    def run(feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        # inputs shared (no copy in); outputs copied out, since they come back as inputs next call
        res = request.infer(feeds, share_inputs=True, share_outputs=False)
        return dict(zip(names, res.to_tuple(), strict=True))

    return run


def session_for(out_dir: str | Path, backend: str, threads: int | None = None, precision: str = "fp32") -> StreamSession:
    from edgeskel.stream.contract import read_contract

    contract = read_contract(out_dir)
    files = contract.get("files", {})
    key = "openvino" if backend == "openvino" else "onnx"
    if key not in files:
        raise ExportError(f"{out_dir}: streaming contract names no {key} file")
    path = Path(out_dir) / files[key]
    run = openvino_run(path, threads, precision) if backend == "openvino" else ort_run(path, threads)
    return StreamSession(contract, run)
