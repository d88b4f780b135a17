"""The reference model, shared by every device run of one recipe (`runs/<recipe>/_shared`).

Why a module of its own: runs for several devices of one recipe start together (one per
device, e.g. `make export DEVICE=cpu & make export DEVICE=jetson-orin`) and all need the same
reference. The first builds it under the shared folder's lock; the others *wait* for that lock
(they used to fail with "in use") and then find the stage finished. A run with its own `--out`
first looks, read-only, for a finished reference with the same inputs in the default `runs/`
folder, so choosing another output folder does not retrain it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edgeskel.errors import RunLockedError
from edgeskel.io import atomic_write_bytes, sha256_file, sha256_json
from edgeskel.pipeline.rundir import RunDir

DEFAULT_ROOT = Path("runs")
WAIT_POLL_S = 1.0
WAIT_LOG_EVERY_S = 60.0


def finished_reference(shared_root: Path, inputs: dict[str, Any]) -> dict[str, Any] | None:
    """The manifest record of a finished reference stage with these inputs in `shared_root`,
    if its checkpoint is intact; read-only (no lock: manifests are written atomically)."""
    other = RunDir(shared_root)
    if not other.manifest_path.is_file():
        return None
    other.manifest = other._read_manifest()
    return other.stage_done("reference", sha256_json(inputs))


def shared_reference(shared_root: Path, out_root: Path, recipe: str, inputs: dict[str, Any],
                     build: Callable[[Path], dict[str, Any]], dest: Path, log: Callable[[str], None]) -> dict[str, Any]:
    """Copy the reference checkpoint for `inputs` to `dest` and return its stage result: reused
    from the default runs folder when it holds one, else built (or found) in `shared_root`,
    waiting while another run holds that folder."""
    default = DEFAULT_ROOT / recipe / "_shared"
    if default.resolve() != shared_root.resolve():
        rec = finished_reference(default, inputs)
        if rec is not None:
            src = default / "reference" / "reference.ckpt"
            data = src.read_bytes()
            if sha256_file(src) == rec["outputs"].get("reference/reference.ckpt"):
                atomic_write_bytes(dest, data)
                log(f"[reference] reused from {default} (same inputs)")
                return rec["result"]
    waited, t0, last = False, time.monotonic(), -WAIT_LOG_EVERY_S
    while True:
        try:
            with RunDir(shared_root, base=out_root) as shared:
                if waited:
                    log(f"[reference] {shared_root} is free after {time.monotonic() - t0:.0f} s")
                res = shared.run_stage("reference", inputs, build, log, label="shared reference")
                atomic_write_bytes(dest, (shared.root / "reference" / "reference.ckpt").read_bytes())
                return res
        except RunLockedError as exc:
            waited = True
            now = time.monotonic()
            if now - last >= WAIT_LOG_EVERY_S:
                log(f"[reference] waiting: another run is building the shared reference ({exc})")
                last = now
            time.sleep(WAIT_POLL_S)
