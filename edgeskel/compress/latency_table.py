"""Per-layer latency table: each factorizable layer, dense and at candidate ranks, timed on the
target backend, cached on disk and reused.

Why: on CPU runtimes batch-1 latency is bound by per-node overhead, so a factorization that
cuts FLOPs can still be slower (one conv becomes two or three). Parameter/FLOP budgets cannot
see that; a measurement can. Each layer is timed *alone* with its real input shape (recorded
by one forward of zeros at every batch size asked), exported to ONNX exactly like the model
(legacy exporter + onnxslim) and run by the backend's edgeskel Runner with the profile's
threads. Forms of one layer are timed INTERLEAVED (bench/measure.py), so drift of this shared
machine hits dense and factorized forms alike. What it does not see: fusion with the
neighbouring BatchNorm/ReLU/aggregation, which the whole-model measurement in `edgeskel tune`
does see (the table only decides ranks; tune judges whole models).

On the device: with a `device` timer (compress/device_latency.py, profiles with an `ssh:`
block) the same ONNX files go to the device in ONE layer bundle per policy run and the standalone
device runner times them there, forms of a layer interleaved; the key then holds the device's
runtime versions (asked over SSH) instead of this host's.

Cache: one JSON file per (profile, backend) holding entries keyed by sha256 of (profile,
backend, precision, threads, layer signature, input shape, form, batch, library versions,
host or device); a changed runtime version or shape is a miss, never a stale hit. Writes merge
with what is on disk and are atomic.
"""

from __future__ import annotations

import copy
import json
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn as nn

from edgeskel.backends import all_backends
from edgeskel.compress.costs import LayerInfo
from edgeskel.io import atomic_write_json, sha256_json
from edgeskel.models.lowrank import build_factorized, layer_shape

CACHE_FORMAT = "edgeskel-latency-table/1"


def runtime_libs(backend: str) -> tuple[str, ...]:
    """The distributions whose version keys a backend's cached timings (edgeskel/backends/:
    backends with `layer_timing`). Raises ValueError for a backend the table cannot time."""
    timed = {s.name: s.dists for s in all_backends(layer_timing=True)}
    if backend not in timed:
        raise ValueError(f"latency table: backend {backend!r} cannot be timed here; use one of {sorted(timed)}")
    return timed[backend]


Form = tuple[str | None, dict[str, int] | None]  # (None, None) = dense
# Injected timing (tests): (layer, {form key: module}, input tensor) -> {form key: ms}
Timer = Callable[[LayerInfo, dict[str, nn.Module], torch.Tensor], dict[str, float]]
Job = tuple[LayerInfo, dict[str, nn.Module], torch.Tensor]  # one layer at one batch size


class DeviceTimer(Protocol):
    """Times many layers' forms on a device in one go (compress/device_latency.py)."""

    def versions(self) -> dict[str, str | None]: ...

    def time_groups(self, jobs: list[Job]) -> list[dict[str, float]]: ...


def form_key(method: str | None, ranks: dict[str, int] | None) -> str:
    """'dense', 'svd:rank=16' or 'tucker2:r_in=8,r_out=16'."""
    if method is None:
        return "dense"
    return f"{method}:" + ",".join(f"{k}={int(v)}" for k, v in sorted((ranks or {}).items()))


def layer_signature(module: nn.Module) -> dict[str, Any]:
    """What a layer's latency depends on besides its input: type, weight shape, conv geometry."""
    sig: dict[str, Any] = {"type": type(module).__name__, "weight": layer_shape(module), "bias": module.bias is not None}
    for attr in ("stride", "padding", "dilation", "groups"):
        if hasattr(module, attr):
            v = getattr(module, attr)
            sig[attr] = list(v) if isinstance(v, tuple) else v
    return sig


def _lib_versions(libs: tuple[str, ...]) -> dict[str, str | None]:
    from importlib import metadata

    out: dict[str, str | None] = {}
    for lib in libs:
        try:
            out[lib] = metadata.version(lib)
        except metadata.PackageNotFoundError:
            out[lib] = None
    return out


def _runtime_version(dists: tuple[str, ...]) -> dict[str, str | None]:
    """{first dist: version of the first installed one} (ORT's GPU build reports as onnxruntime, as
    the cache keys always named it)."""
    found = [v for v in _lib_versions(dists).values() if v is not None]
    return {dists[0]: found[0] if found else None}


class LatencyTable:
    """Measured p50 latency (ms) of layers in dense and factorized forms on one backend.

    `measure(info, forms)` returns {form key: ms at batch 1} after timing what the cache lacks;
    `timer` replaces the real measurement (tests inject a deterministic one); `device` times on
    the device instead of this host. `record_inputs` must have seen the model first (it supplies
    each layer's real input shape)."""

    def __init__(self, backend: str = "ort", batch_sizes: list[int] | tuple[int, ...] = (1,), threads: int | None = None,
                 profile: str = "local", cache_file: str | Path | None = None, timer: Timer | None = None,
                 rounds: int = 3, runs: int = 30, warmup: int = 5, max_seconds: float | None = 0.3,
                 log: Callable[[str], None] | None = None, device: DeviceTimer | None = None):
        runtime_libs(backend)  # ValueError if the table cannot time it
        self.backend, self.threads, self.profile = backend, threads, profile
        self.batch_sizes = sorted({1, *(int(b) for b in batch_sizes)})
        self.cache_file = Path(cache_file) if cache_file is not None else None
        self.timer, self.device = timer, device
        self.rounds, self.runs, self.warmup, self.max_seconds = rounds, runs, warmup, max_seconds
        self.log = log
        self._versions: dict[str, str | None] | None = None
        self.inputs: dict[str, dict[int, tuple[int, ...]]] = {}  # layer -> batch -> input shape
        self.entries: dict[str, dict[str, Any]] = self._read_cache()
        self.hits = 0
        self.measured = 0

    @classmethod
    def from_config(cls, cfg: Any, device: DeviceTimer | None = None,
                    log: Callable[[str], None] | None = None) -> LatencyTable:
        """The table a CompressionConfig's latency_* fields describe (host, or `device`)."""
        return cls(cfg.latency_backend, cfg.latency_batch_sizes, cfg.latency_threads, cfg.latency_profile,
                   cfg.latency_cache, log=log, device=device)

    # ---- inputs -------------------------------------------------------------------------
    def record_inputs(self, model: nn.Module, names: list[str], input_shape: tuple[int, ...]) -> None:
        """Each layer's input shape (first call) at every batch size, from forwards of zeros."""
        mods = {n: model.get_submodule(n) for n in names}
        was = model.training
        model.eval()
        try:
            for b in self.batch_sizes:
                seen: dict[str, tuple[int, ...]] = {}
                hooks = [m.register_forward_hook(_shape_hook(seen, n)) for n, m in mods.items()]
                try:
                    p = next(model.parameters(), None)
                    with torch.no_grad():
                        model(torch.zeros(b, *input_shape[1:], dtype=p.dtype if p is not None else torch.float32))
                finally:
                    for h in hooks:
                        h.remove()
                for n, shape in seen.items():
                    self.inputs.setdefault(n, {})[b] = shape
        finally:
            model.train(was)

    @property
    def versions(self) -> dict[str, str | None]:
        """Exporter versions (this host) + the timing runtime's: this host's, or the device's
        (asked over SSH once, on first use: an unreachable device fails here, before any work)."""
        if self._versions is None:
            export = _lib_versions(("torch", "onnx", "onnxslim"))
            runtime = self.device.versions() if self.device is not None else _runtime_version(runtime_libs(self.backend))
            self._versions = {**export, **runtime}
        return self._versions

    @property
    def timed_by(self) -> str:
        return "injected" if self.timer is not None else "device" if self.device is not None else "runtime"

    # ---- cache --------------------------------------------------------------------------
    def _read_cache(self) -> dict[str, dict[str, Any]]:
        if self.cache_file is None or not self.cache_file.is_file():
            return {}
        try:
            data = json.loads(self.cache_file.read_text())
        except (OSError, ValueError):
            return {}  # unreadable cache: measure again (it is only a cache)
        if not isinstance(data, dict) or data.get("format") != CACHE_FORMAT or not isinstance(data.get("entries"), dict):
            return {}
        return {k: v for k, v in data["entries"].items() if isinstance(v, dict) and isinstance(v.get("p50_ms"), float)}

    def _write_cache(self) -> None:
        if self.cache_file is None:
            return
        merged = {**self._read_cache(), **self.entries}  # another process may have added entries
        atomic_write_json(self.cache_file, {"format": CACHE_FORMAT, "profile": self.profile, "backend": self.backend,
                                            "entries": merged})

    def _key(self, info: LayerInfo, shape: tuple[int, ...], form: str, batch: int) -> str:
        return sha256_json({"profile": self.profile, "backend": self.backend, "precision": "fp32",
                            "threads": self.threads, "layer": layer_signature(info.module), "input": list(shape),
                            "form": form, "batch": batch, "versions": self.versions,
                            "timer": self.timed_by})

    # ---- measurement --------------------------------------------------------------------
    def prefetch(self, requests: list[tuple[LayerInfo, list[Form]]]) -> None:
        """Time (all batch sizes, forms of a layer interleaved) every dense + requested form
        the cache lacks. On a device this is ONE bundle and one SSH round trip for all layers."""
        jobs: list[tuple[Job, tuple[int, ...], int]] = []
        for info, forms in requests:
            if info.name not in self.inputs:
                raise ValueError(f"latency table: no input shape recorded for layer {info.name!r} (call record_inputs)")
            wanted = {form_key(m, r): (m, r) for m, r in [(None, None), *forms]}
            for b in self.batch_sizes:
                shape = self.inputs[info.name].get(b)
                if shape is None:
                    continue
                missing = [k for k in wanted if self._key(info, shape, k, b) not in self.entries]
                self.hits += len(wanted) - len(missing)
                if missing:
                    x = torch.randn(*shape, generator=torch.Generator().manual_seed(0))
                    jobs.append(((info, {k: self._build(info, *wanted[k]) for k in missing}, x), shape, b))
        if not jobs:
            return
        if self.device is not None and self.timer is None:
            all_times = self.device.time_groups([job for job, _, _ in jobs])
        else:
            all_times = [(self.timer or self._time)(*job) for job, _, _ in jobs]
        for ((info, modules, _x), shape, b), times in zip(jobs, all_times, strict=True):
            for k in modules:
                self.entries[self._key(info, shape, k, b)] = {
                    "p50_ms": float(times[k]), "layer": info.name, "form": k, "batch": b, "input": list(shape),
                    "signature": layer_signature(info.module), "threads": self.threads, "timed_by": self.timed_by}
            self.measured += len(modules)
        self._write_cache()

    def measure(self, info: LayerInfo, forms: list[Form]) -> dict[str, float]:
        """{form key: p50 ms at batch 1} for the layer's dense form and `forms` (timed first if
        the cache lacks them; what `prefetch` just timed or found is not counted again)."""
        keys = [form_key(m, r) for m, r in [(None, None), *forms]]
        shapes = self.inputs.get(info.name, {})
        if not all(self._key(info, shape, k, b) in self.entries for b, shape in shapes.items() for k in keys) or not shapes:
            self.prefetch([(info, forms)])
        return {k: self.entries[self._key(info, self.inputs[info.name][1], k, 1)]["p50_ms"] for k in keys}

    def by_batch(self, info: LayerInfo, form: str) -> dict[str, float]:
        """Cached p50 ms of one measured form at every batch size (for reports)."""
        out = {}
        for b, shape in self.inputs.get(info.name, {}).items():
            e = self.entries.get(self._key(info, shape, form, b))
            if e is not None:
                out[str(b)] = e["p50_ms"]
        return out

    @staticmethod
    def _build(info: LayerInfo, method: str | None, ranks: dict[str, int] | None) -> nn.Module:
        if method is None:
            return copy.deepcopy(info.module).eval()
        return build_factorized(info.module, info.kind, method, dict(ranks or {})).eval()

    def _time(self, info: LayerInfo, modules: dict[str, nn.Module], x: torch.Tensor) -> dict[str, float]:
        """Export each form to ONNX and time them interleaved with the backend's Runner."""
        from edgeskel.export.onnx import export_layer
        from edgeskel.runtime import get_runner
        from edgeskel.validate.latency import interleaved_latency

        runners = {}
        with tempfile.TemporaryDirectory(prefix="edgeskel-lat-") as td:
            try:
                for k, mod in modules.items():
                    path = export_layer(mod, x, Path(td) / f"{len(runners)}.onnx")
                    runners[k] = get_runner(self.backend, path, precision="fp32", threads=self.threads).load()
                xb = {int(x.shape[0]): np.ascontiguousarray(x.numpy(), dtype=np.float32)}
                infers = {k: r.raw() for k, r in runners.items()}
                stats = interleaved_latency(infers, xb, rounds=self.rounds, runs=self.runs, warmup=self.warmup,
                                            max_seconds=self.max_seconds, progress=False)
            finally:
                for r in runners.values():
                    r.close()
        if self.log is not None:
            self.log(f"latency {self.backend} {info.name} {tuple(x.shape)}: " + ", ".join(
                f"{k} {s[str(int(x.shape[0]))]['p50']:.3f} ms" for k, s in stats.items()))
        return {k: float(s[str(int(x.shape[0]))]["p50"]) for k, s in stats.items()}

    def summary(self) -> dict[str, Any]:
        """What the table did, for the compression report and the manifest."""
        return {"backend": self.backend, "profile": self.profile, "threads": self.threads,
                "batch_sizes": self.batch_sizes, "cache_file": str(self.cache_file) if self.cache_file else None,
                "cache_hits": self.hits, "measured": self.measured, "versions": self.versions,
                "timer": self.timed_by}


def _shape_hook(seen: dict[str, tuple[int, ...]], name: str) -> Callable[..., None]:
    """Forward hook recording the first input shape; returns None, so the output is unchanged."""

    def hook(_m: nn.Module, inp: tuple, _out: Any) -> None:
        seen.setdefault(name, tuple(inp[0].shape))

    return hook


