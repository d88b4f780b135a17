"""Drive an exported step graph from its streaming.json here, with the device runner's code.

`StreamSession` (remote/device_runner.py) is what a deployment does: keep the states, feed
`stride` frames per call, swap state outputs into state inputs. It runs on the `run_named` of the
device runner's infer classes, so export's parity replay, `edgeskel stream`, the benchmark and a
bundle measured on the device stream through the same lines for every backend.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgeskel.errors import ExportError
from edgeskel.remote.device_runner import RUNTIMES, StreamSession, stream_session

__all__ = ["StreamSession", "session_for"]


def session_for(out_dir: str | Path, backend: str, threads: int | None = None, precision: str = "fp32",
                onnx_dir: str | Path | None = None, stateful: bool = False) -> StreamSession:
    """A session on DIR's step graph: ONNX Runtime runs its ONNX (or `onnx_dir/model.onnx`, e.g.
    a TensorRT kit's), OpenVINO its IR (`stateful`: its ReadValue/Assign form)."""
    from edgeskel.stream.contract import read_contract

    contract = read_contract(out_dir)
    files = contract.get("files", {})
    key = ("openvino_stateful" if stateful else "openvino") if backend == "openvino" else "onnx"
    if key not in files:
        raise ExportError(f"{out_dir}: streaming contract names no {key} file")
    path = Path(out_dir) / files[key] if onnx_dir is None else Path(onnx_dir) / "model.onnx"
    try:
        infer = RUNTIMES[backend](path, precision if backend == "openvino" else "fp32", threads, {})
    except Exception as exc:  # noqa: BLE001 - the runtimes raise many types; one clear line
        raise ExportError(f"{path}: {backend} cannot load the step graph: {str(exc).splitlines()[0]}") from None
    session = stream_session(infer, contract, stateful)
    try:  # one call of zeros: a contract that does not describe this graph fails here, in one line
        _, c, stride, v, m = contract["frame_shape"]
        session.reset()
        session.step(np.zeros((c, stride, v, m), np.float32), stride)
        session.reset()
    except Exception as exc:  # noqa: BLE001 - the runtimes raise many types
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ExportError(f"{path}: the step graph does not take what {Path(out_dir) / 'streaming.json'} describes: "
                          f"{msg[:300]}") from None
    return session
