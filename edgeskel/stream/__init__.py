"""Streaming inference (issue 29): a trained recognizer as a step model that takes new frames
plus its state and returns the decision for the stream so far plus the next state.

- `semantics`  : what a step model computes (the definition) and the reference it must match
- `layers`     : stateful temporal primitives (StreamConv, StreamMaxPool, Delay) and timelines
- `convert`    : module surgery that swaps them into a network, with delays on merging branches
- `support`    : which architectures stream, and why the others refuse
- `preprocess` : the windowed preprocessing made causal, inside the step graph
- `step`       : the step model and its plan
- `contract`   : streaming.json (the artifact's contract)
- `export`     : ONNX / OpenVINO step graphs + streaming.json, with parity checks
"""

from edgeskel.stream.convert import STRIDE_MODES, NotStreamable
from edgeskel.stream.step import StepModel, StreamPlan, build_step_model, run_stream
from edgeskel.stream.support import streamable_models

__all__ = ["STRIDE_MODES", "NotStreamable", "StepModel", "StreamPlan", "build_step_model", "run_stream",
           "streamable_models"]
