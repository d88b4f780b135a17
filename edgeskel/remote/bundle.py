"""Self-contained bundles: everything a device needs to measure the variants, nothing else.

A bundle folder holds the artifacts, the validation inputs/labels/reference logits as .npy,
`bundle.json` (what to run and how, and `backends`: each backend's runtime modules, version
distributions and whether it may be timed interleaved, from edgeskel/backends/, since the
runner cannot import edgeskel) and a copy of the standalone `device_runner.py`. It
needs only numpy and the runtime on the device, and never contains hostnames, users or keys.
Its id (`<name>-<hash>`) changes whenever any file in it changes.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgeskel import __version__
from edgeskel.backends import device_records
from edgeskel.errors import ConfigError, ExportError
from edgeskel.io import atomic_write_json, sha256_bytes, sha256_file
from edgeskel.names import NAME_RULE, is_safe_name
from edgeskel.remote.device_runner import BUNDLE_FORMAT

if TYPE_CHECKING:
    from edgeskel.devices import DeviceProfile

RUNNER_SOURCE = Path(__file__).with_name("device_runner.py")
_REQUIRED = ("name", "backend", "precision", "path")


def _companions(path: Path) -> list[Path]:
    """Files an artifact needs next to it: OpenVINO .bin weights, ONNX external data."""
    extra = []
    if path.suffix == ".xml" and path.with_suffix(".bin").is_file():
        extra.append(path.with_suffix(".bin"))
    if path.suffix == ".onnx":
        import onnx

        m = onnx.load(str(path), load_external_data=False)
        locs = {e.value for t in m.graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL
                for e in t.external_data if e.key == "location"}
        for loc in sorted(locs):
            p = path.parent / loc
            if not p.is_file():
                raise ExportError(f"{path}: external data file {p} is missing")
            extra.append(p)
    return extra


def _tensorrt_build(a: dict[str, Any], dest: Path, src: Path, batch_sizes: list[int]) -> dict[str, Any] | None:
    """bundle.json `build` of a TensorRT variant: the build script (copied) and the engine file
    per batch size that the script writes, both relative to the bundle. The engine names come
    from the artifact entry (the kit's tensorrt.json), never guessed: a guessed name once made
    every successful build fail as "engine build failed (exit 0)"."""
    rel = f"artifacts/{a['name']}"
    if src.suffix in (".engine", ".plan"):  # a prebuilt engine: nothing to build
        return None
    if not a.get("build_script"):
        raise ConfigError(f"bundle: TensorRT artifact {a['name']!r} is an ONNX without a build script (build_script)")
    engines = a.get("engines")
    if not engines:
        raise ConfigError(f"bundle: TensorRT artifact {a['name']!r} does not say which engines its build script writes "
                          f"(engines: {{batch: file}})")
    if sorted(int(b) for b in engines) != sorted(batch_sizes):
        raise ConfigError(f"bundle: TensorRT artifact {a['name']!r} builds engines for batch {sorted(map(int, engines))}"
                          f" but is measured at batch {sorted(batch_sizes)}")
    script = Path(a["build_script"])
    shutil.copy2(script, dest / script.name)
    return {"script": f"{rel}/{script.name}", "route": a.get("route"),
            "engines": {str(b): f"{rel}/{f}" for b, f in sorted(engines.items(), key=lambda kv: int(kv[0]))},
            "logs": {str(b): f"{rel}/{f}" for b, f in sorted((a.get("build_logs") or {}).items(), key=lambda kv: int(kv[0]))}}


def make_bundle(
    out_dir: str | Path,
    artifacts: list[dict[str, Any]],
    val_x: np.ndarray,
    val_y: np.ndarray,
    ref_logits: np.ndarray | None,
    profile: DeviceProfile,
    warmup: int = 10,
    runs: int = 100,
    max_seconds: float | None = None,
    eval_batch_size: int = 16,
    model: dict[str, Any] | None = None,
    stream_data: tuple[list[np.ndarray], np.ndarray] | None = None,
) -> Path:
    """Write a bundle to `out_dir` (replacing it atomically) and return its path.

    Each artifact: {name, backend, precision, path} plus optional batch_sizes (default: the
    profile's), static_batch (fixed batch artifacts), options (default: the profile variant's),
    input_name, files (extra files to copy), and for TensorRT: build_script (run on the device
    to build the engines), engines ({batch: engine file the script writes}, one per measured batch
    size), build_logs ({batch: trtexec log, which lists the layers on DLA/GPU}), route.
    A streaming artifact (a step graph, docs/STREAMING.md) also has form "streaming" and
    contract (its streaming.json); it is measured at batch 1 on `stream_data`: recorded
    sequences (raw (C, L, V, M) frames each) and their labels, stored concatenated.
    """
    out_dir = Path(out_dir)
    val_x = np.ascontiguousarray(val_x, dtype=np.float32)
    val_y = np.asarray(val_y).astype(np.int64).reshape(-1)
    if val_x.ndim != 5 or len(val_x) == 0:
        raise ConfigError(f"bundle: validation inputs must be a non-empty (N, C, T, V, M) array, got {val_x.shape}")
    if len(val_y) != len(val_x):
        raise ConfigError(f"bundle: {len(val_x)} validation samples but {len(val_y)} labels")
    if ref_logits is not None and len(ref_logits) != len(val_x):
        raise ConfigError(f"bundle: {len(val_x)} validation samples but {len(ref_logits)} reference logits rows")
    names = [a.get("name") for a in artifacts]
    bad = [n for n in names if not is_safe_name(n)]
    if bad or not is_safe_name(out_dir.name):  # names become folders here and on the device
        raise ConfigError(f"bundle: names {bad or [out_dir.name]} cannot be used as folder names (allowed: {NAME_RULE})")
    if len(set(names)) != len(names):
        raise ConfigError(f"bundle: duplicate artifact names {names}")
    profile_opts = {v.key: v.options for v in profile.variants}

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        variants = []
        for a in artifacts:
            missing = [k for k in _REQUIRED if k not in a]
            if missing:
                raise ConfigError(f"bundle: artifact {a.get('name', a)!r} lacks {missing}")
            src = Path(a["path"])
            if not src.is_file():
                raise ExportError(f"{src}: artifact for variant {a['name']!r} not found")
            dest = tmp / "artifacts" / a["name"]
            dest.mkdir(parents=True)
            copied = []
            for f in [src, *_companions(src), *(Path(p) for p in a.get("files", []))]:
                shutil.copy2(f, dest / f.name)
                copied.append(f"artifacts/{a['name']}/{f.name}")
            v: dict[str, Any] = {
                "name": a["name"], "backend": a["backend"], "precision": a["precision"],
                "artifact": copied[0], "files": copied,
                "batch_sizes": list(a.get("batch_sizes") or profile.batch_sizes),
                "static_batch": a.get("static_batch"),
                "options": a.get("options", profile_opts.get(a["name"], {})),
                "input_name": a.get("input_name", "input"),
            }
            if a.get("form") == "streaming":
                if stream_data is None:
                    raise ConfigError(f"bundle: streaming artifact {a['name']!r} needs recorded sequences (stream_data)")
                contract = Path(a["contract"])
                shutil.copy2(contract, dest / contract.name)
                streams = int(json.loads(contract.read_text()).get("batch", 1))  # streams one call serves
                v.update(form="streaming", contract=f"artifacts/{a['name']}/{contract.name}", batch_sizes=[streams],
                         static_batch=streams, of=a.get("of"), stateful=bool(a.get("stateful")))
                v["files"].append(v["contract"])
            if a["backend"] == "tensorrt":
                v["build"] = _tensorrt_build(a, dest, src, v["batch_sizes"])
            variants.append(v)

        np.save(tmp / "val_x.npy", val_x)
        np.save(tmp / "val_y.npy", val_y)
        if ref_logits is not None:
            np.save(tmp / "ref_logits.npy", np.asarray(ref_logits, dtype=np.float32))
        stream_meta = _save_stream_data(tmp, stream_data) if stream_data is not None else None
        meta: dict[str, Any] = {
            "format": BUNDLE_FORMAT,
            "name": out_dir.name,
            "device": profile.name,
            "arch": profile.arch,
            "created_by": f"edgeskel {__version__}",
            "threads": profile.threads,
            "batch_sizes": list(profile.batch_sizes),
            "measure": {"warmup": warmup, "runs": runs, "max_seconds": max_seconds, "eval_batch_size": eval_batch_size},
            "tensorrt": profile.tensorrt.model_dump() if profile.tensorrt else None,
            "data": {"val_x": "val_x.npy", "val_y": "val_y.npy",
                     "ref_logits": "ref_logits.npy" if ref_logits is not None else None,
                     "num_samples": int(len(val_x)), "sample_shape": list(val_x.shape[1:]),
                     **({"stream": stream_meta} if stream_meta else {})},
            "variants": variants,
            "model": model,  # what the inputs mean: layout (full definition), classes, preprocessing
            "backends": device_records(),  # what each backend needs: the runner cannot import edgeskel.backends
        }
        _seal(tmp, meta, out_dir)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return out_dir


def _save_stream_data(tmp: Path, stream_data: tuple[list[np.ndarray], np.ndarray]) -> dict[str, Any]:
    """Recorded sequences for streaming variants: frames concatenated along T (C, sum L, V, M),
    their lengths and labels (device_runner.stream_sequences reads them back)."""
    seqs, labels = stream_data
    if not seqs or len(seqs) != len(labels) or any(f.ndim != 4 or f.shape[1] == 0 for f in seqs):
        raise ConfigError(f"bundle: stream data must be non-empty (C, L, V, M) sequences with one label each "
                          f"({len(seqs)} sequences, {len(labels)} labels)")
    np.save(tmp / "stream_x.npy", np.ascontiguousarray(np.concatenate(seqs, axis=1), dtype=np.float32))
    np.save(tmp / "stream_len.npy", np.asarray([f.shape[1] for f in seqs], dtype=np.int64))
    np.save(tmp / "stream_y.npy", np.asarray(labels).astype(np.int64).reshape(-1))
    return {"frames": "stream_x.npy", "lengths": "stream_len.npy", "labels": "stream_y.npy", "num_sequences": len(seqs)}


def make_layer_bundle(out_dir: str | Path, forms: list[dict[str, Any]], profile: DeviceProfile, warmup: int = 5, runs: int = 30,
                      rounds: int = 3, max_seconds: float | None = 0.3) -> Path:
    """A layer-timing bundle (`kind: layers`): the per-layer latency table's forms, timed by the
    same device runner on the device. Each form: {name, path (the layer's ONNX), backend,
    input_shape, group}; the forms of one group (a layer at one batch size) are timed interleaved
    on one input of that shape. No data, no accuracy: only latency."""
    out_dir = Path(out_dir)
    names = [f.get("name") for f in forms]
    bad = [n for n in [*names, *(f.get("group") for f in forms)] if not is_safe_name(n)]
    if bad or not is_safe_name(out_dir.name) or len(set(names)) != len(names):
        raise ConfigError(f"layer bundle: names {bad or names} are not unique safe folder names (allowed: {NAME_RULE})")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        variants = []
        for f in forms:
            dest = tmp / "artifacts" / f["name"]
            dest.mkdir(parents=True)
            shutil.copy2(f["path"], dest / Path(f["path"]).name)
            rel = f"artifacts/{f['name']}/{Path(f['path']).name}"
            variants.append({"name": f["name"], "backend": f["backend"], "precision": "fp32", "artifact": rel,
                             "files": [rel], "group": f["group"], "input_shape": [int(d) for d in f["input_shape"]],
                             "options": f.get("options") or {}})
        meta: dict[str, Any] = {
            "format": BUNDLE_FORMAT, "kind": "layers", "name": out_dir.name, "device": profile.name,
            "arch": profile.arch, "created_by": f"edgeskel {__version__}", "threads": profile.threads,
            "measure": {"warmup": warmup, "runs": runs, "rounds": rounds, "max_seconds": max_seconds},
            "variants": variants, "backends": device_records(),
        }
        _seal(tmp, meta, out_dir)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return out_dir


def _seal(tmp: Path, meta: dict[str, Any], out_dir: Path) -> None:
    """Add the runner, every file's digest and the content-derived id; then move `tmp` into
    place as `out_dir` (replacing an older bundle there)."""
    shutil.copy2(RUNNER_SOURCE, tmp / "device_runner.py")
    meta["sha256"] = {str(p.relative_to(tmp)): sha256_file(p) for p in sorted(tmp.rglob("*")) if p.is_file()}
    h = sha256_bytes(json.dumps(meta, sort_keys=True).encode())[:12]
    meta["bundle_id"] = f"{out_dir.name}-{h}"
    atomic_write_json(tmp / "bundle.json", meta)
    if out_dir.exists():
        shutil.rmtree(out_dir)
    tmp.rename(out_dir)


def read_bundle(bundle_dir: str | Path) -> dict[str, Any]:
    path = Path(bundle_dir) / "bundle.json"
    if not path.is_file():
        raise ConfigError(f"{path}: not an edgeskel bundle (bundle.json missing)")
    try:
        meta = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: corrupt bundle.json: {exc}") from None
    if meta.get("format") != BUNDLE_FORMAT:
        raise ConfigError(f"{path}: unsupported bundle format {meta.get('format')!r} (want {BUNDLE_FORMAT})")
    names = [meta.get("bundle_id"), *(v.get("name") if isinstance(v, dict) else v for v in meta.get("variants") or [])]
    bad = [n for n in names if not is_safe_name(n)]
    if bad:  # the id names the folder on the device (`rm -rf` before upload), variants name subfolders
        raise ConfigError(f"{path}: bundle names {bad} cannot be used as folder names (allowed: {NAME_RULE})")
    return meta
