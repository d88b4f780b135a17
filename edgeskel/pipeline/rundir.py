"""Run folders: a lock, a manifest, and stages that are skipped when their inputs did not change.

Why: `make export` runs for minutes to hours and can be killed at any point. Each stage records
in `manifest.json` the hash of its inputs (which include the hashes of the previous stages'
outputs) and the sha256 of every file it produced. On a rerun a stage is skipped only if the
input hash matches AND every recorded output still exists with the same hash, so a
half-written or tampered artifact is never taken as finished. The manifest itself is written
atomically after each stage. A second process on the same folder gets a clear error.
"""

from __future__ import annotations

import fcntl
import os
import platform
import shutil
import signal
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

from edgeskel import __version__
from edgeskel.errors import RunLockedError
from edgeskel.io import atomic_write_json, sha256_file, sha256_json

MANIFEST_FORMAT = "edgeskel-manifest/1"
TRACKED_LIBRARIES = ("torch", "numpy", "onnx", "onnxruntime", "openvino", "nncf", "onnxslim", "tensorly", "polygraphy")


def library_versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {"python": platform.python_version(), "edgeskel": __version__}
    for lib in TRACKED_LIBRARIES:
        try:
            out[lib] = metadata.version(lib)
        except metadata.PackageNotFoundError:
            out[lib] = None
    return out


def kill_point(stage: str, point: str) -> None:
    """Test hook: SIGKILL this process at a named point when EDGESKEL_KILL_AT == "stage:point".
    Used by the interruption tests to kill the pipeline in the middle of every stage."""
    if os.environ.get("EDGESKEL_KILL_AT") == f"{stage}:{point}":
        os.kill(os.getpid(), signal.SIGKILL)


class RunDir:
    """A run folder `runs/<recipe>/<device>/` with an exclusive lock and a manifest."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.manifest_path = self.root / "manifest.json"
        self._lock_fh: Any = None
        self.manifest: dict[str, Any] = {}

    # ---- locking -------------------------------------------------------------------
    def __enter__(self) -> RunDir:
        self.root.mkdir(parents=True, exist_ok=True)
        lock_path = self.root / ".lock"
        fh = open(lock_path, "a+")
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip() or "another process"
            fh.close()
            raise RunLockedError(
                f"{self.root}: run folder is in use by {holder}; wait for it to finish or use another --out"
            ) from None
        fh.seek(0)
        fh.truncate()
        fh.write(f"pid {os.getpid()} since {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
        fh.flush()
        self._lock_fh = fh
        self.manifest = self._read_manifest()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._lock_fh is not None:
            fcntl.flock(self._lock_fh, fcntl.LOCK_UN)
            self._lock_fh.close()
            self._lock_fh = None

    # ---- manifest --------------------------------------------------------------------
    def _read_manifest(self) -> dict[str, Any]:
        import json

        if self.manifest_path.is_file():
            try:
                data = json.loads(self.manifest_path.read_text())
                if _well_formed(data):
                    return data
            except (ValueError, OSError):
                pass  # unreadable or malformed manifest: start over (stages re-run, nothing trusted)
        return {"format": MANIFEST_FORMAT, "stages": {}}

    def save_manifest(self) -> None:
        self.manifest["updated"] = time.strftime("%Y-%m-%dT%H:%M:%S")
        self.manifest["libraries"] = library_versions()
        atomic_write_json(self.manifest_path, self.manifest)

    def set_inputs(self, inputs: dict[str, Any]) -> None:
        self.manifest["inputs"] = inputs
        self.save_manifest()

    def stage_done(self, name: str, input_hash: str) -> dict[str, Any] | None:
        """The recorded result of a stage if it finished with these inputs and its outputs are intact."""
        rec = self.manifest.get("stages", {}).get(name)
        if not rec or rec.get("input_hash") != input_hash or rec.get("status") != "done":
            return None
        for rel, digest in rec.get("outputs", {}).items():
            p = self.root / rel
            if not p.is_file() or sha256_file(p) != digest:
                return None
        return rec

    def run_stage(self, name: str, inputs: dict[str, Any], fn: Callable[[Path], dict[str, Any]],
                  log: Callable[[str], None] = print) -> dict[str, Any]:
        """Run `fn(stage_dir)` unless an identical finished run is recorded. `fn` returns a dict
        with `outputs` (paths relative to the stage dir) and anything else worth recording."""
        input_hash = sha256_json(inputs)
        done = self.stage_done(name, input_hash)
        if done is not None:
            log(f"[{name}] up to date, skipped")
            return done["result"]
        stage_dir = self.root / name
        prev = self.manifest.get("stages", {}).get(name)
        if stage_dir.exists() and (not prev or prev.get("input_hash") != input_hash):
            # Leftovers of a run with other inputs (or of an unknown run) must not be resumed
            # from (e.g. a trainer's last.pt); a killed run with the same inputs is kept.
            shutil.rmtree(stage_dir)
        stage_dir.mkdir(parents=True, exist_ok=True)
        self.manifest.setdefault("stages", {})[name] = {"status": "running", "input_hash": input_hash,
                                                         "started": time.strftime("%Y-%m-%dT%H:%M:%S")}
        self.save_manifest()
        t0 = time.perf_counter()
        result = fn(stage_dir)
        outputs = {str(Path(name) / rel): sha256_file(stage_dir / rel) for rel in result.get("outputs", [])}
        # A stage may finish but ask to be retried next time (e.g. the device was unreachable):
        # its result feeds this run's report, but it is never taken as up to date.
        status = "incomplete" if result.get("incomplete") else "done"
        self.manifest["stages"][name] = {
            "status": status, "input_hash": input_hash, "outputs": outputs, "result": result,
            "wall_time_s": round(time.perf_counter() - t0, 2), "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
        }
        self.save_manifest()
        return result

    def output_hash(self, name: str) -> str:
        """Hash of a finished stage's outputs: the input of the stages after it."""
        rec = self.manifest["stages"][name]
        return sha256_json({"outputs": rec.get("outputs", {}), "result": rec.get("result")})


def _well_formed(data: Any) -> bool:
    """A manifest this version wrote: stages map names to records with string hashes and
    output digests (anything else, e.g. a hand-edited or damaged file, is not trusted)."""
    if not isinstance(data, dict) or data.get("format") != MANIFEST_FORMAT or not isinstance(data.get("stages"), dict):
        return False
    for rec in data["stages"].values():
        if not isinstance(rec, dict) or not isinstance(rec.get("input_hash"), str):
            return False
        if rec.get("status") == "done" and not isinstance(rec.get("result"), dict):
            return False
        outs = rec.get("outputs", {})
        if not isinstance(outs, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in outs.items()):
            return False
    return True
