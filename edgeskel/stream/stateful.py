"""OpenVINO's stateful form of a step graph: the states become ReadValue/Assign variables kept
by the infer request, so a call feeds only the frames and `valid` (no state copies in or out).

Made from the stateless IR by OpenVINO's own MakeStateful transformation with the contract's
(state input, state output) pairs; export checks it against PyTorch like every graph and times
both forms interleaved here. streaming.json `openvino_stateful` has both p50s, the parity result
and `preferred` (faster AND within the fp32 parity rule): bundles ship the preferred form.
Measured here (OpenVINO 2026.4, this CPU): an ST-GCN step (remove mode, 26 states, 1 thread)
runs 1.97 vs 2.70 ms per call stateful, but the stateful decisions differ from the stateless
ones by 2-4e-4 of the logit scale (the stateless graph: 1e-7), above the fp32 rule, i.e. the
plugin keeps the variables at a lower precision; so it is exported and measured, not preferred.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

STATEFUL_FILE = "model.stateful.xml"


def make_stateful_ir(xml: Path, out_xml: Path, contract: dict[str, Any]) -> Path:
    """Write the stateful IR of `xml` (each contract state: its input read, its output assigned)."""
    import openvino as ov
    from openvino._offline_transformations import apply_make_stateful_transformation

    model = ov.Core().read_model(str(xml))
    apply_make_stateful_transformation(model, {s["input"]: s["output"] for s in contract["state"]})
    ov.save_model(model, str(out_xml))
    return out_xml


def compare_forms(out_dir: Path, precision: str, frames: np.ndarray, threads: int = 1, rounds: int = 5,
                  calls: int = 60) -> dict[str, Any]:
    """p50 ms per call of the stateless and the stateful graph, interleaved in rounds on the same
    recorded frames (a running stream), and which one is faster."""
    from edgeskel.remote.device_runner import StreamCaller, time_round_robin
    from edgeskel.stream.replay import session_for

    callers = {form: StreamCaller(session_for(out_dir, "openvino", threads, precision, stateful=form == "stateful"), frames)
               for form in ("stateless", "stateful")}
    times = time_round_robin(callers, None, warmup=10, runs=rounds * calls, rounds=rounds)
    p50 = {form: round(float(np.median(t)), 4) for form, t in times.items()}
    return {"p50_ms": p50, "preferred": p50["stateful"] < p50["stateless"], "timed": f"{rounds} rounds x {calls} calls, "
            f"{threads} thread(s), interleaved, on the export host"}
