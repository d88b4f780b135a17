"""Run folders: a lock, a manifest, and stages that are skipped when their inputs did not change.

Why: `make export` runs for minutes to hours and can be killed at any point. Each stage records
in `manifest.json` the hash of its inputs (which include the hashes of the previous stages'
outputs) and the sha256 of every file it produced. On a rerun a stage is skipped only if the
input hash matches AND every recorded output still exists with the same hash, so a
half-written or tampered artifact is never taken as finished. The manifest itself is written
atomically after each stage. A second process on the same folder gets a clear error.

Run folders live on shared disks, so their contents are untrusted too: the lock is opened
without following symlinks, a symlinked stage folder, output or manifest is refused, the
leftover cleanup deletes only stage folders edgeskel created (recorded in the manifest, or
carrying its marker file), and every OSError on the folder reaches the user as one
`RunFolderError` line instead of a traceback.
"""

from __future__ import annotations

import errno
import fcntl
import os
import platform
import shutil
import signal
import stat
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

from edgeskel import __version__
from edgeskel.errors import EdgeskelError, RunFolderError, RunLockedError
from edgeskel.io import atomic_write_json, sha256_file, sha256_json

MANIFEST_FORMAT = "edgeskel-manifest/1"
STAGE_MARKER = ".edgeskel-stage"  # written into every stage folder edgeskel creates
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
    """A run folder `runs/<recipe>/<device>/` with an exclusive lock and a manifest. With
    `base` (the user's --out), the folder must lie below it and no folder between them may be
    a symlink, so no name can send a run, or its cleanup, anywhere else."""

    def __init__(self, root: str | Path, base: str | Path | None = None):
        self.root = Path(root)
        self.base = Path(base) if base is not None else None
        self.manifest_path = self.root / "manifest.json"
        self._lock_fh: Any = None
        self.manifest: dict[str, Any] = {}
        self.used_stages: list[str] = []  # stages this run ran or reused (a run's cost = their recorded times)

    # ---- locking -------------------------------------------------------------------
    def __enter__(self) -> RunDir:
        try:
            self._make_root()
            fh = self._open_lock()
        except OSError as exc:
            raise _folder_error(exc, self.root) from None
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip() or "another process"
            fh.close()
            raise RunLockedError(
                f"{self.root}: run folder is in use by {holder}; wait for it to finish or use another --out"
            ) from None
        try:
            fh.seek(0)
            fh.truncate()
            fh.write(f"pid {os.getpid()} since {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
            fh.flush()
            self._lock_fh = fh
            self.manifest = self._read_manifest()
        except BaseException as exc:
            self.__exit__(None, None, None)
            if isinstance(exc, OSError):
                raise _folder_error(exc, self.root) from None
            raise
        return self

    def __exit__(self, exc_type: Any = None, exc: Any = None, tb: Any = None) -> None:
        if self._lock_fh is not None:
            fcntl.flock(self._lock_fh, fcntl.LOCK_UN)
            self._lock_fh.close()
            self._lock_fh = None
        # Any OSError inside the `with` block (permissions, full disk, a file that vanished)
        # reaches the user as one `error:` line naming the file, not a traceback.
        if isinstance(exc, OSError) and not isinstance(exc, EdgeskelError):
            raise _folder_error(exc, self.root) from None

    def _make_root(self) -> None:
        """Create the run folder; below `base`, refuse `..` and symlinked folders."""
        if self.base is None:
            self.root.mkdir(parents=True, exist_ok=True)
            return
        try:
            rel = self.root.relative_to(self.base)
        except ValueError:
            raise RunFolderError(f"{self.root}: run folder is not below the output folder {self.base}") from None
        from edgeskel.names import NAME_RULE, is_safe_name

        if not rel.parts or not all(is_safe_name(part) for part in rel.parts):
            raise RunFolderError(f"{self.root}: run folder must be below {self.base}, each folder name {NAME_RULE}")
        self.base.mkdir(parents=True, exist_ok=True)
        cur = self.base
        for part in rel.parts:
            cur = cur / part
            _refuse_symlink(cur, "run folder")
            try:
                cur.mkdir()
            except FileExistsError:
                if not cur.is_dir():
                    raise RunFolderError(f"{cur}: exists and is not a folder; remove it or use another --out") from None

    def _open_lock(self) -> Any:
        """Open `.lock` without following a symlink (a planted link must never make us
        truncate the file it points to) and only if it is a regular file."""
        lock_path = self.root / ".lock"
        try:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise RunFolderError(f"{lock_path}: the run folder's lock file is a symlink; refusing to use it "
                                     f"(remove it or use another --out)") from None
            raise
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise RunFolderError(f"{lock_path}: the run folder's lock file is not a regular file; "
                                 f"remove it or use another --out")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "r+")

    # ---- manifest --------------------------------------------------------------------
    def _read_manifest(self) -> dict[str, Any]:
        import json

        _refuse_symlink(self.manifest_path, "run manifest")
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
            for folder in reversed(Path(rel).parents[:-1]):  # every folder between the root and the file
                _refuse_symlink(self.root / folder, f"stage {name!r} folder")
            _refuse_symlink(p, f"output of stage {name!r}")
            if not p.is_file() or sha256_file(p) != digest:
                return None
        return rec

    def run_stage(self, name: str, inputs: dict[str, Any], fn: Callable[[Path], dict[str, Any]],
                  log: Callable[[str], None] = print, label: str | None = None) -> dict[str, Any]:
        """Run `fn(stage_dir)` unless an identical finished run is recorded. `fn` returns a dict
        with `outputs` (paths relative to the stage dir) and anything else worth recording.
        `label` names the stage in log lines where `name` alone is ambiguous."""
        input_hash = sha256_json(inputs)
        label = label or name
        if name not in self.used_stages:
            self.used_stages.append(name)
        done = self.stage_done(name, input_hash)
        if done is not None:
            log(f"[{label}] up to date, skipped")
            return done["result"]
        stage_dir = self.root / name
        prev = self.manifest.get("stages", {}).get(name)
        _refuse_symlink(stage_dir, f"stage {name!r} folder")
        if stage_dir.exists() and not stage_dir.is_dir():
            raise RunFolderError(f"{stage_dir}: stage {name!r} folder is not a folder; remove it or use another --out")
        if stage_dir.exists() and (not prev or prev.get("input_hash") != input_hash):
            # Leftovers of a run with other inputs (or of an unknown run) must not be resumed
            # from (e.g. a trainer's last.pt); a killed run with the same inputs is kept. Only
            # a folder edgeskel created is deleted: one the manifest records, or (the manifest
            # was damaged) one with edgeskel's marker file.
            if not prev and not (stage_dir / STAGE_MARKER).is_file():
                raise RunFolderError(f"{stage_dir}: folder exists but edgeskel did not create it (not in the run "
                                     f"manifest); not deleting it: move it away or use another --out")
            shutil.rmtree(stage_dir)
        stage_dir.mkdir(parents=True, exist_ok=True)
        if not (stage_dir / STAGE_MARKER).exists():
            (stage_dir / STAGE_MARKER).write_text(f"created by edgeskel {__version__} for stage {name}\n")
        self.manifest.setdefault("stages", {})[name] = {"status": "running", "input_hash": input_hash,
                                                         "started": time.strftime("%Y-%m-%dT%H:%M:%S")}
        self.save_manifest()
        log(f"[{label}] running")  # one line per stage: progress readable in a log file, not only on a terminal
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
        log(f"[{label}] {status} in {self.manifest['stages'][name]['wall_time_s']:.1f} s")
        return result

    def output_hash(self, name: str) -> str:
        """Hash of a finished stage's outputs: the input of the stages after it."""
        rec = self.manifest["stages"][name]
        return sha256_json({"outputs": rec.get("outputs", {}), "result": rec.get("result")})


def _refuse_symlink(path: Path, what: str) -> None:
    """RunFolderError if `path` is a symlink (a planted link would redirect our writes or
    deletes outside the run folder)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISLNK(st.st_mode):
        raise RunFolderError(f"{path}: {what} is a symlink; edgeskel never follows symlinks inside a run folder "
                             f"(remove it or use another --out)")


def _folder_error(exc: OSError, root: Path) -> RunFolderError:
    """One line for an OSError met while using the run folder: the file, the problem, the folder."""
    where = exc.filename or root
    problem = exc.strerror or str(exc) or type(exc).__name__
    if exc.filename2:
        where = f"{exc.filename} -> {exc.filename2}"
    return RunFolderError(f"{where}: {problem} (run folder {root})")


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
