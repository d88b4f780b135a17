"""Where the time goes in tune's choice vs the best uncompressed candidate: per-op-type kernel
time of both at batch 1 (the bench's profilers), side by side. It explains the speedup tune
reports, or what limits it (e.g. layout ops or per-node overhead that factorization adds).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def profile_candidate(c: dict[str, Any], x: np.ndarray, threads: int, runs: int) -> dict[str, Any]:
    """Per-op profile of one measured candidate (ONNX Runtime or OpenVINO); errors are recorded,
    never raised: a profiler failure must not lose the search."""
    from edgeskel.bench.opprofile import artifact_op_profile

    try:
        return {"candidate": c["id"], **artifact_op_profile(c["runtime"]["backend"], Path(c["artifact_path"]),
                                                            c["runtime"]["precision"], x, threads, runs)}
    except Exception as exc:  # noqa: BLE001 - see docstring
        return {"candidate": c["id"], "error": f"{type(exc).__name__}: {exc}"}


def compare(chosen: dict[str, Any] | None, base: dict[str, Any] | None, x: np.ndarray, threads: int,
            runs: int = 30) -> list[dict[str, Any]]:
    """Profiles of the chosen candidate and the best uncompressed one (once if they are the same)."""
    picked = {c["id"]: c for c in (chosen, base) if c is not None}  # keeps order, drops the repeat
    return [profile_candidate(c, x, threads, runs) for c in picked.values()]


def table(profiles: list[dict[str, Any]], top: int = 10) -> str:
    """Op types by time (ms per run at batch 1) for each profiled candidate, 80 columns: the
    candidates are columns A, B (named on the first lines) so op names keep their width."""
    ok = [p for p in profiles if not p.get("error")]
    lines = [f"{p['candidate']}: profiling failed: {p['error']}"[:80] for p in profiles if p.get("error")]
    if not ok:
        return "\n".join(lines)
    tags = [chr(ord("A") + i) for i in range(len(ok))]
    lines += [f"{t} = {p['candidate']}"[:80] for t, p in zip(tags, ok, strict=True)]
    ms = [{o["op_type"]: (o["ms_per_run"], o["nodes_per_run"]) for o in p["ops"]} for p in ok]
    order = sorted({k for m in ms for k in m}, key=lambda k: -max(m.get(k, (0.0, 0))[0] for m in ms))[:top]
    col = 14
    name_w = 80 - col * len(ok)
    head = f"{'op type: ms per run (nodes)':<{name_w}}" + "".join(f"{t:>{col}}" for t in tags)
    lines += [head, "-" * len(head)]
    for k in order:
        cells = "".join(f"{(f'{m[k][0]:.3f} ({m[k][1]:.0f})' if k in m else '-'):>{col}}" for m in ms)
        name = k if len(k) < name_w else k[: name_w - 2] + "~"
        lines.append(f"{name:<{name_w}}" + cells)
    lines.append(f"{'kernel total':<{name_w}}" + "".join(f"{p['kernel_ms_per_run']:>{col}.3f}" for p in ok))
    return "\n".join(lines)
