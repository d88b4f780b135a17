"""Time tune's candidates on the device over SSH (device profiles with an `ssh:` block).

Why the pipeline's bundle and device runner (remote/): they already measure a set of artifacts
on the device (accuracy on the shipped validation split, latency with ORT/OpenVINO sessions
interleaved round-robin in one process, peak memory), validate what comes back and keep host
details out of it. Tune ships ALL its candidates as one bundle, so they are compared under the
same device conditions in one interleaved pass, and the accuracy gate uses the top-1 the device
computed, not the host's.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from edgeskel.devices import DeviceProfile


def bundle_name(candidate_id: str) -> str:
    """Candidate ids are '<option>/<variant>'; bundle variants become folders on the device."""
    return candidate_id.replace("/", "__")


def measure_on_device(cands: dict[str, dict[str, Any]], profile: DeviceProfile, val_x: np.ndarray, val_y: np.ndarray,
                      runs: int, out_dir: Path, log: Callable[[str], None],
                      stream_data: tuple[list[np.ndarray], np.ndarray] | None = None) -> dict[str, Any]:
    """Ship every candidate to the device in one bundle and run it there (a streaming candidate,
    `step_dir`, as a step graph on `stream_data`: recorded validation sequences). Returns
    {"latency": {cid: {str(batch): stats}}, "top1": {cid: device top-1}, "errors": {cid: why},
    "measured_on": "ssh://<profile>", "timing": how the device runner timed them}.
    Raises RemoteError (unreachable, wrong arch, missing runtime, ...): nothing is cached then."""
    from edgeskel.pipeline.validation import artifact_entry, stream_entry
    from edgeskel.remote.bundle import make_bundle
    from edgeskel.remote.remote import run_remote
    from edgeskel.remote.ssh import SSHTarget
    from edgeskel.validate.emulation import emulation_tags

    names = {bundle_name(cid): cid for cid in cands}
    entries = []
    for name, cid in names.items():
        c = cands[cid]
        v = SimpleNamespace(key=c["variant"], backend=c["backend"], precision=c["precision"], options=c.get("options") or {})
        if c.get("step_dir"):
            entries.append(stream_entry(name, v, Path(c["step_dir"])))
            continue
        export_root = Path(c["artifact_path"])  # <export stage>/<variant>/<artifact>: c["artifact"] is relative to the stage
        for _ in Path(c["artifact"]).parts:
            export_root = export_root.parent
        static = 1 if profile.input.static_shapes else None
        entry = artifact_entry(v, {"artifact_path": c["artifact_path"], "options": {"batch": static}}, export_root)
        entries.append({**entry, "name": name})
    bundle = make_bundle(out_dir / f"bundle-{profile.name}", entries, val_x, val_y, None, profile,
                         warmup=profile.measure.warmup, runs=runs, stream_data=stream_data)
    target = SSHTarget.from_profile(profile)
    log(f"[tune] timing {len(entries)} candidates on {target.label} (one bundle, interleaved on the device)")
    doc = run_remote(bundle, target, out=out_dir / "results.json", log=log)
    out: dict[str, Any] = {"latency": {}, "top1": {}, "errors": {}, "measured_on": doc.get("measured_on", target.label),
                           "timing": (doc.get("timing") or {}).get("method"), "emulation": emulation_tags(doc)}
    for r in doc["variants"]:
        cid = names[r["name"]]
        if r.get("status") == "ok":
            out["latency"][cid] = r.get("latency_ms") or {}
            out["top1"][cid] = (r.get("accuracy") or {}).get("top1")
        else:
            out["errors"][cid] = str(r.get("error") or r.get("status"))[:300]
    return out
