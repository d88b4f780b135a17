"""Measure a bundle on a device over SSH and bring back validated results.

Steps: connection check -> runtime check (remote python imports numpy + each variant's
runtime; arch matches the profile) -> upload to `<workdir>/<bundle_id>` (skipped when the
same bundle is already there) -> run device_runner.py under `timeout` -> fetch and validate
results.json -> write it locally atomically. The runner's exit 3 (some variants errored,
results.json written) is a completed run: those variants come back as ERROR entries. On any
failure (unreachable, host key, disconnect, timeout, remote error, the runner crashing or
exiting with another status) a RemoteError is raised and no local results file exists, so
the run folder never holds partial or stale results.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edgeskel.backends import registry
from edgeskel.errors import RemoteError
from edgeskel.io import atomic_write_json, atomic_write_text
from edgeskel.remote.bundle import read_bundle
from edgeskel.remote.device_runner import EXIT_OK, EXIT_VARIANT_ERRORS, RESULTS_FORMAT
from edgeskel.remote.ssh import SSHTarget, rpath


def backend_modules(backend: str) -> list[str]:
    """Python modules `backend` needs on the device (edgeskel/backends/ `runtime_modules`); an
    unknown name is taken as a module name."""
    reg = registry()
    return list(reg[backend].runtime_modules) if backend in reg else [backend]


def install_hint(module: str) -> str:
    """How to install a runtime module on a device (the backends' `install_hints`)."""
    hints = {"numpy": "pip install numpy"}
    for spec in registry().values():
        hints.update(spec.install_hints)
    return hints.get(module, f"pip install {module}")


_CHECK = (
    "import importlib, json, platform, sys\n"
    "missing = {}\n"
    "for m in sys.argv[1:]:\n"
    "    try:\n"
    "        importlib.import_module(m)\n"
    "    except Exception as e:\n"
    "        missing[m] = type(e).__name__ + ': ' + str(e)[:200]\n"
    "versions = {m: str(getattr(sys.modules.get(m), '__version__', None)) for m in sys.argv[1:] if m not in missing}\n"
    "print(json.dumps({'missing': missing, 'machine': platform.machine(), 'python': platform.python_version(),\n"
    "                  'versions': versions}))\n"
)


def check_runtimes(target: SSHTarget, backends: list[str], arch: str | None = None) -> dict[str, Any]:
    """RemoteError naming each missing module and its install command; also checks the
    remote python exists and the machine architecture matches the profile's. Returns
    {machine, python, versions: {module: __version__}} of the device."""
    mods = ["numpy"] + sorted({m for b in backends for m in backend_modules(b)})
    cmd = f"{shlex.quote(target.python)} -c {shlex.quote(_CHECK)} {' '.join(mods)}"
    res = target.run(cmd, timeout=target.connect_timeout_s + 60, what="runtime check", check=False)
    err = res.stderr.decode(errors="replace")
    if res.returncode == 127 or (res.returncode != 0 and "not found" in err):
        raise RemoteError(f"remote python {target.python!r} was not found on device {target.name!r}: "
                          f"install Python 3 there or set ssh.python in the profile")
    try:
        info = json.loads(res.stdout.decode().strip().splitlines()[-1])
    except (json.JSONDecodeError, IndexError):
        raise RemoteError(f"runtime check failed on device {target.name!r} (exit {res.returncode}): {err.strip()[-500:]}") from None
    if info["missing"]:
        lines = [f"{m} is not installed on the device {target.name!r} (python {target.python}): {install_hint(m)}"
                 f" [{why}]" for m, why in info["missing"].items()]
        raise RemoteError("\n".join(lines))
    if arch and info["machine"] not in (arch, {"aarch64": "arm64"}.get(arch, arch)):
        raise RemoteError(f"device {target.name!r} reports architecture {info['machine']}, but the profile says {arch}: "
                          f"wrong host or wrong profile?")
    return info


def run_remote(
    bundle_dir: str | Path,
    target: SSHTarget,
    timeout: float | None = None,
    out: str | Path | None = None,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Run the bundle on `target`; returns the validated results dict, also written to `out`
    (default: `<bundle_dir>/../results.json`) with `measured_on: ssh://<profile name>`."""
    bundle_dir = Path(bundle_dir)
    log = log or (lambda s: None)
    meta = read_bundle(bundle_dir)
    out = Path(out) if out else bundle_dir.parent / "results.json"
    log_path = out.with_suffix(".log")
    out.unlink(missing_ok=True)  # never leave results of an earlier run looking current
    timeout = timeout or target.command_timeout_s
    rdir = f"{target.workdir.rstrip('/')}/{meta['bundle_id']}"
    try:
        log(f"connecting to {target.label}")
        target.check_connection()
        info = check_runtimes(target, sorted({v["backend"] for v in meta["variants"]}), meta.get("arch"))
        log(f"{target.label}: python {info['python']} on {info['machine']}")
        probe = target.run(f"test -f {rpath(rdir + '/bundle.json')} && cat {rpath(rdir + '/bundle.json')}",
                           what="bundle check", check=False)
        if probe.returncode != 0 or _same_bundle(probe.stdout, meta) is False:
            log(f"uploading bundle {meta['bundle_id']}")
            target.upload_dir(bundle_dir, rdir, timeout=timeout)
        py = shlex.quote(target.python)
        t = int(timeout)
        cmd = (f"cd {rpath(rdir)} && rm -f results.json && "
               f"if command -v timeout >/dev/null 2>&1; then timeout -k 10 {t} {py} device_runner.py . --out results.json; "
               f"else {py} device_runner.py . --out results.json; fi")
        log("running device_runner.py on the device")
        res = target.run(cmd, timeout=timeout + 30, what="device_runner.py", check=False)
        stderr = res.stderr.decode(errors="replace")
        atomic_write_text(log_path, target.redact(stderr))
        if res.returncode == 124:
            raise RemoteError(f"device_runner.py timed out on device {target.name!r} after {t} s")
        # EXIT_VARIANT_ERRORS: results.json was written and some variants errored; those are
        # ERROR entries in it (rows in the report), not a failed run. Anything else non-zero is.
        if res.returncode not in (EXIT_OK, EXIT_VARIANT_ERRORS):
            raise RemoteError(f"device_runner.py failed on device {target.name!r} with exit code {res.returncode}:\n"
                              f"{_tail(stderr)}")
        doc = _validate(target.read_file(rdir + "/results.json"), meta, target)
    except RemoteError:
        out.unlink(missing_ok=True)
        raise
    doc["measured_on"] = target.label
    atomic_write_json(out, doc)
    return doc


def _same_bundle(raw: bytes, meta: dict[str, Any]) -> bool:
    try:
        return json.loads(raw).get("bundle_id") == meta["bundle_id"]
    except (json.JSONDecodeError, AttributeError):
        return False


def _validate(raw: bytes, meta: dict[str, Any], target: SSHTarget) -> dict[str, Any]:
    """Results must be complete JSON for this very bundle, one entry per variant."""
    try:
        doc = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise RemoteError(f"results.json from device {target.name!r} is not valid JSON: {exc}") from None
    if doc.get("format") != RESULTS_FORMAT or doc.get("bundle_id") != meta["bundle_id"]:
        raise RemoteError(f"results.json from device {target.name!r} is for another bundle or format "
                          f"({doc.get('format')!r}, {doc.get('bundle_id')!r}; expected {meta['bundle_id']!r})")
    want = [v["name"] for v in meta["variants"]]
    got = [v.get("name") for v in doc.get("variants", [])]
    if got != want:
        raise RemoteError(f"results.json from device {target.name!r} has variants {got}, expected {want}")
    measured = {"latency_ms"} if meta.get("kind") == "layers" else {"accuracy", "latency_ms"}  # layers: no accuracy
    for v in doc["variants"]:
        if v.get("status") == "ok" and not (measured <= set(v)):
            raise RemoteError(f"results.json from device {target.name!r}: variant {v['name']!r} lacks measurements")
    return doc


def _tail(text: str, n: int = 10) -> str:
    return "\n".join(text.strip().splitlines()[-n:])
