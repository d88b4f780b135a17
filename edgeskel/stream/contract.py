"""`streaming.json`: everything a runtime needs to drive a step graph, beside the artifact.

    {"format": "edgeskel-streaming/1",
     "frame_input": "frame", "frame_shape": [N, C, stride, V, M], "valid_input": "valid", "batch": N,
     "logits_output": "logits",
     "state": [{"input": "s0", "output": "s0_out", "shape": [1], "dtype": "float32", "initial": 0.0}, ...],
     "stride": S, "window": W*S, "valid_from": F, "delay": D, "flush_calls": K, ...}

A caller starts every state at `initial` (a fill value for the whole tensor), feeds `stride`
raw frames per call (oldest first; camera-space joints, missing joints/persons as zeros) with
`valid` = stride, and after each call replaces every state input by the matching output.
`logits` is then the decision for the stream so far (docs/STREAMING.md); decisions from
`valid_from` frames on average a full `window`. To end a stream (a recording, a tracked person
leaving), feed the leftover r < stride frames with `valid` = r (0 if none), then
`flush_calls` - 1 calls with `valid` = 0: the last decision covers the stream to its last frame.
Nothing else is needed: no edgeskel import, no preprocessing.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from edgeskel.errors import ExportError
from edgeskel.io import atomic_path

FORMAT = "edgeskel-streaming/1"
FILE = "streaming.json"
FRAME_INPUT = "frame"
VALID_INPUT = "valid"
LOGITS_OUTPUT = "logits"
REQUIRED = ("frame_input", "valid_input", "logits_output", "state", "stride", "window", "valid_from", "flush_calls")


def state_names(i: int) -> tuple[str, str]:
    return f"s{i}", f"s{i}_out"


def make_contract(step, files: dict[str, str], extra: dict[str, Any] | None = None) -> dict[str, Any]:
    plan = step.plan
    spec = step.spec
    states = []
    for i, (shape, rows) in enumerate(zip(step.state_shapes(), step.state_rows(), strict=True)):
        inp, out = state_names(i)
        states.append({"input": inp, "output": out, "shape": list(shape), "dtype": "float32", "initial": 0.0,
                       "rows": rows})
    return {
        "format": FORMAT,
        "frame_input": FRAME_INPUT,
        "frame_shape": list(step.frame_shape()),
        "frame_layout": "N C S V M (S = stride frames, oldest first)",
        "valid_input": VALID_INPUT,
        "valid_shape": [step.batch],
        "batch": step.batch,
        "batch_meaning": "N independent streams per call: row n of frame/valid/logits is stream n; a state's "
                         "leading axis holds one row per stream ('stream') or per stream and person ('stream x "
                         "person': rows n*M .. n*M+M-1). To start stream n, set its rows of every state to "
                         "`initial`; an idle row is fed zero frames (held) or ended (valid 0)",
        "valid_meaning": "real frames in this call: stride while the stream runs; r < stride (the leftover "
                         "frames, first r of the call) ends it, then valid 0 for the flush calls",
        "logits_output": LOGITS_OUTPUT,
        "state": states,
        "stride": plan.stride,
        "window": plan.window,
        "valid_from": plan.valid_from,
        "delay": plan.delay,
        "flush_calls": plan.flush_calls,
        "window_outputs": plan.window_outputs,
        "stride_mode": plan.stride_mode,
        "upsample": plan.upsample,
        "upsample_meaning": "network frames per source frame, made inside the graph (linear from each person's "
                            "previous present frame); stride, window, delay and valid_from count source frames",
        "hold_on_empty": bool(step.hold_empty),
        "model": plan.model,
        "num_classes": plan.num_classes,
        "class_names": list(spec.class_names),
        "layout": spec.layout.name,
        "preprocess": spec.preprocess.to_dict(),
        "files": dict(files),
        "semantics": "docs/STREAMING.md",
        **(extra or {}),
    }


def write_contract(out_dir: str | Path, contract: dict[str, Any]) -> Path:
    path = Path(out_dir) / FILE
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(contract, indent=2) + "\n")
    return path


def read_contract(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if path.is_dir():
        path = path / FILE
    if not path.is_file():
        raise ExportError(f"{path}: streaming contract not found")
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ExportError(f"{path}: not a readable streaming contract: {exc}") from None
    missing = [k for k in REQUIRED if k not in data] if isinstance(data, dict) else list(REQUIRED)
    if missing:
        raise ExportError(f"{path}: streaming contract lacks {missing}")
    problem = contract_problem(data)
    if problem:
        raise ExportError(f"{path}: streaming contract: {problem}")
    return data


# What a contract edgeskel wrote can hold; anything outside is a damaged or hostile file (an
# artifact folder is user input), refused before a runtime allocates or loops on it.
_INT_FIELDS = {"stride": (1, 4096), "window": (1, 10**6), "valid_from": (0, 10**7), "delay": (0, 10**7),
               "flush_calls": (1, 10**4), "window_outputs": (1, 10**6), "upsample": (1, 64), "batch": (1, 4096)}
_MAX_STATE_VALUES = 2**28  # 1 GiB of float32 per state
_MAX_STATES = 4096


def contract_problem(data: dict[str, Any]) -> str | None:
    """Why `data` is not a usable streaming contract, or None."""
    import math

    def count(shape: Any) -> int | None:
        if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d > 0
                                                  for d in shape):
            return None
        return math.prod(shape)

    for key, (lo, hi) in _INT_FIELDS.items():
        if key in data and (not isinstance(data[key], int) or isinstance(data[key], bool) or not lo <= data[key] <= hi):
            return f"{key} must be an integer in [{lo}, {hi}], got {data[key]!r}"
    for key in ("frame_input", "valid_input", "logits_output"):
        if not isinstance(data[key], str) or not data[key]:
            return f"{key} must be a tensor name, got {data[key]!r}"
    frame_shape = data.get("frame_shape", [1, 1, 1, 1, 1])
    if count(frame_shape) is None or len(frame_shape) != 5 or count(frame_shape) > _MAX_STATE_VALUES:
        return f"frame_shape must be 5 positive integers (N, C, stride, V, M), got {frame_shape!r}"
    states = data["state"]
    if not isinstance(states, list) or len(states) > _MAX_STATES:
        return f"state must be a list of at most {_MAX_STATES} entries"
    for i, st in enumerate(states):
        if not isinstance(st, dict) or not isinstance(st.get("input"), str) or not isinstance(st.get("output"), str):
            return f"state {i} must name its input and output"
        n = count(st.get("shape"))
        if n is None or n > _MAX_STATE_VALUES:
            return f"state {i} ({st.get('input')}): shape must be positive integers, at most {_MAX_STATE_VALUES} values"
        if st.get("dtype", "float32") != "float32":
            return f"state {i} ({st.get('input')}): dtype {st.get('dtype')!r} (edgeskel writes float32)"
        initial = st.get("initial", 0.0)
        if not isinstance(initial, (int, float)) or isinstance(initial, bool) or not math.isfinite(initial):
            return f"state {i} ({st.get('input')}): initial must be a finite number, got {initial!r}"
    files = data.get("files", {})
    if not isinstance(files, dict):
        return "files must map kinds to file names"
    for kind, name in files.items():
        if not isinstance(name, str) or not name or Path(name).name != name or name in (".", ".."):
            return f"files.{kind} must be a file name inside the artifact folder, got {name!r}"
    return None
