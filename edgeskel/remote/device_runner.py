#!/usr/bin/env python3
"""Standalone device runner: measures every variant of an edgeskel bundle on THIS machine.

Usage (on the device; needs only numpy + the runtime of each variant):
    python3 device_runner.py BUNDLE_DIR [--out results.json] [--variant NAME]

It is copied verbatim into every bundle, so it must not import edgeskel. It is also the
single source of the metric definitions: `edgeskel.validate` imports `accuracy_stats`,
`evaluate`, `time_infer` and `latency_stats` from here, so a local run and a device run
compute exactly the same numbers.

Units: top1/top5/agreement are percentages (0-100); latencies are milliseconds per call of
`infer` on a whole batch (host wall clock, including host<->device copies); throughput is
samples per second; memory is the peak resident set size (RSS) of the process in MB.

Each variant runs in its own child process (so a crashing runtime, e.g. a TensorRT segfault,
only fails that variant, and peak RSS is per variant). results.json is written atomically.

Exit status (`python3 device_runner.py BUNDLE`):
    0  every variant measured; results.json written
    3  results.json written, but at least one variant errored (its entry has status "error"
       and the reason; each error is also printed once on stderr)
    2  usage or bundle error (bad arguments, not an edgeskel bundle, unknown --variant):
       nothing measured, no results.json
    1  the runner itself crashed (a Python traceback): no results.json
Callers that read results.json (`edgeskel results import`, the SSH path) treat 0 and 3 alike:
an errored variant is an ERROR row in the report, not a failed run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

RESULTS_FORMAT = "edgeskel-device-results/1"
BUNDLE_FORMAT = "edgeskel-bundle/1"
# What each backend needs here comes from the bundle (bundle.json `backends`, written from
# edgeskel/backends/ by remote/bundle.py): this file cannot import edgeskel. LEGACY_BACKENDS is
# ONLY the fallback for bundles made before bundle.json had `backends`; never extend it (a new
# backend is a file in edgeskel/backends/ plus, to run here, an infer class in RUNTIMES below).
LEGACY_BACKENDS: dict[str, dict[str, Any]] = {
    "ort": {"runtime_modules": ["onnxruntime"], "dists": ["onnxruntime", "onnxruntime-gpu"], "interleavable": True},
    "openvino": {"runtime_modules": ["openvino"], "dists": ["openvino"], "interleavable": True},
    "tensorrt": {"runtime_modules": ["tensorrt"], "dists": ["tensorrt"], "interleavable": False},
    "torch": {"runtime_modules": ["torch"], "dists": ["torch"], "interleavable": False},
}
# Exit status of `device_runner.py BUNDLE` (module docstring). 3, not 1: a Python traceback exits
# 1, and a caller must tell "results.json written, some variants errored" from a crashed runner.
EXIT_OK = 0
EXIT_USAGE = 2
EXIT_VARIANT_ERRORS = 3

# ----------------------------------------------------------------------------- metrics


def accuracy_stats(logits: np.ndarray, y: np.ndarray, ref_logits: np.ndarray | None = None) -> dict[str, Any]:
    """Top-1/top-5 (%), agreement with the reference's top-1 (%), max |logits - ref|, and the
    number of samples whose logits contain NaN/Inf."""
    logits = np.asarray(logits, dtype=np.float64)
    y = np.asarray(y).astype(np.int64).reshape(-1)
    n, k = logits.shape
    if n != y.shape[0]:
        raise ValueError(f"{n} logits rows but {y.shape[0]} labels")
    finite_rows = np.isfinite(logits).all(axis=1)
    safe = np.where(np.isfinite(logits), logits, -np.inf)  # a NaN never wins the argmax
    pred = safe.argmax(axis=1)
    kk = min(5, k)
    top5 = np.argsort(-safe, axis=1, kind="stable")[:, :kk]
    out: dict[str, Any] = {
        "num_samples": int(n),
        "top1": float(100.0 * np.mean(pred == y)) if n else 0.0,
        "top5": float(100.0 * np.mean((top5 == y[:, None]).any(axis=1))) if n else 0.0,
        "nonfinite": int((~finite_rows).sum()),
        "agreement": None,
        "max_abs_vs_ref": None,
    }
    if ref_logits is not None:
        ref = np.asarray(ref_logits, dtype=np.float64)
        if ref.shape != logits.shape:
            raise ValueError(f"reference logits shape {ref.shape} != logits shape {logits.shape}")
        out["agreement"] = float(100.0 * np.mean(pred == ref.argmax(axis=1))) if n else 0.0
        diff = np.abs(logits - ref)
        out["max_abs_vs_ref"] = float(diff.max()) if np.isfinite(diff).all() and n else None
    return out


def evaluate(
    infer: Callable[[np.ndarray], np.ndarray],
    x: np.ndarray,
    y: np.ndarray,
    batch_size: int = 16,
    ref_logits: np.ndarray | None = None,
    pad_to_batch: bool = False,
) -> tuple[dict[str, Any], np.ndarray]:
    """Run `infer` over x in batches; returns (accuracy_stats, logits). With pad_to_batch the
    last batch is padded (repeating its last sample) for fixed-batch artifacts."""
    outs = []
    for start in range(0, len(x), batch_size):
        b = np.ascontiguousarray(x[start : start + batch_size], dtype=np.float32)
        n = len(b)
        if pad_to_batch and n < batch_size:
            b = np.concatenate([b, np.repeat(b[-1:], batch_size - n, axis=0)])
        logits = np.asarray(infer(b))
        if logits.ndim != 2 or logits.shape[0] != len(b):
            raise ValueError(f"runner returned shape {logits.shape} for a batch of {len(b)}")
        outs.append(logits[:n])
    logits = np.concatenate(outs).astype(np.float32) if outs else np.zeros((0, 0), np.float32)
    return accuracy_stats(logits, y, ref_logits), logits


def make_batch(sample: np.ndarray, batch_size: int) -> np.ndarray:
    """(C,T,V,M) sample -> contiguous float32 (B,C,T,V,M) batch."""
    return np.ascontiguousarray(np.repeat(np.asarray(sample, np.float32)[None], batch_size, axis=0))


def time_infer(
    infer: Callable[[np.ndarray], np.ndarray],
    batch: np.ndarray,
    warmup: int = 10,
    runs: int = 100,
    max_seconds: float | None = None,
    min_runs: int = 10,
    on_step: Callable[[], None] | None = None,
    warmup_seconds: float | None = None,
) -> list[float]:
    """Wall-clock ms of each of `runs` calls after `warmup` calls. Stops early once
    max_seconds have been spent timing (but never before min_runs). Warm-up stops after
    warmup_seconds (but never before 2 calls): 10 warm-up calls of a 1-second batch-64
    transformer would cost more than the timing itself."""
    t_warm = time.perf_counter()
    for i in range(warmup):
        infer(batch)
        if warmup_seconds is not None and i + 1 >= 2 and time.perf_counter() - t_warm > warmup_seconds:
            break
    times: list[float] = []
    t_start = time.perf_counter()
    for i in range(runs):
        t0 = time.perf_counter_ns()
        infer(batch)
        times.append((time.perf_counter_ns() - t0) / 1e6)
        if on_step:
            on_step()
        if max_seconds is not None and i + 1 >= min_runs and time.perf_counter() - t_start > max_seconds:
            break
    return times


# A variant's timing is flagged noisy when its tail or its middle half is wide relative to its
# median: then a close pair of variants may swap places on a rerun (the report says so).
NOISY_P99_OVER_P50 = 2.0
NOISY_IQR_OVER_P50 = 0.25


def latency_stats(times_ms: list[float], batch_size: int) -> dict[str, Any]:
    """Percentiles (linear interpolation) of per-call latency; throughput in samples/s; the
    spread (p99/p50, IQR/p50) and a `noisy` flag when either is above its threshold."""
    t = np.asarray(times_ms, dtype=np.float64)
    mean = float(t.mean())
    p25, p50, p75, p99 = (float(np.percentile(t, q)) for q in (25, 50, 75, 99))
    spread = {"p99_over_p50": round(p99 / p50, 3) if p50 > 0 else None,
              "iqr_over_p50": round((p75 - p25) / p50, 3) if p50 > 0 else None}
    noisy = bool(p50 > 0 and (p99 / p50 > NOISY_P99_OVER_P50 or (p75 - p25) / p50 > NOISY_IQR_OVER_P50))
    return {
        "batch_size": int(batch_size),
        "runs": int(t.size),
        "p50": p50,
        "p90": float(np.percentile(t, 90)),
        "p99": p99,
        "p25": p25,
        "p75": p75,
        "mean": mean,
        "std": float(t.std()),
        "min": float(t.min()),
        "max": float(t.max()),
        "spread": spread,
        "noisy": noisy,
        "throughput_fps": float(batch_size * 1000.0 / mean) if mean > 0 else None,
        "samples_ms": [round(float(v), 4) for v in t],
    }


def time_round_robin(
    infers: dict[str, Callable[[np.ndarray], np.ndarray]],
    batch: np.ndarray,
    warmup: int = 10,
    runs: int = 100,
    max_seconds: float | None = None,
    min_runs: int = 10,
    rounds: int = 5,
) -> dict[str, list[float]]:
    """Wall-clock ms of `runs` calls of every infer, INTERLEAVED in blocks: each of `rounds`
    rounds gives every variant a short re-warm and then a block of consecutive timed calls, the
    starting variant rotated each round. Why rounds: a shared host's speed drifts over minutes,
    so timing A fully and then B measures the drift as much as the variants. Why blocks, not
    call-by-call alternation: ONNX Runtime's and OpenVINO's idle worker threads spin for a while
    after a call and steal the cores from the next session (measured on the default demo's
    bundle: OpenVINO fp32 p50 7.1 ms alternated call by call vs 1.3 ms in blocks). `max_seconds`
    caps the whole pass (per variant on average), never before `min_runs` calls."""
    names = list(infers)
    for n in names:
        for _ in range(warmup):
            infers[n](batch)
    rounds = max(1, min(rounds, runs))
    per_round = [runs // rounds + (1 if r < runs % rounds else 0) for r in range(rounds)]
    rewarm = min(2, warmup)
    times: dict[str, list[float]] = {n: [] for n in names}
    t_start = time.perf_counter()
    for r in range(rounds):
        k = r % len(names)
        for n in names[k:] + names[:k]:
            for _ in range(rewarm):
                infers[n](batch)
            for _ in range(per_round[r]):
                t0 = time.perf_counter_ns()
                infers[n](batch)
                times[n].append((time.perf_counter_ns() - t0) / 1e6)
        if (max_seconds is not None and len(times[names[0]]) >= min_runs
                and time.perf_counter() - t_start > max_seconds * len(names)):
            break
    return times


def peak_rss_mb() -> float:
    """Peak RSS of this process so far, in MB.

    Linux: VmHWM from /proc/self/status, the high-water mark of this process's own address
    space. Not getrusage(ru_maxrss): Linux carries ru_maxrss across fork+exec, so a runner
    started by a large parent (e.g. the pipeline after fine-tuning) reported the parent's peak.
    Elsewhere: ru_maxrss (KB on Linux, bytes on macOS)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r / (1024 * 1024) if sys.platform == "darwin" else r / 1024


# ----------------------------------------------------------------------------- runtimes


def ort_session_options(threads: int | None = None) -> Any:
    """The SessionOptions of every edgeskel ORT session, here and on the device (runners, the
    layer latency table, the op profiler, the INT8 study): all graph optimizations, `threads`
    intra-op threads and one inter-op thread (the box is shared), warnings off."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads:
        so.intra_op_num_threads = int(threads)
        so.inter_op_num_threads = 1
    so.log_severity_level = 3
    return so


class OrtInfer:
    """ONNX Runtime: the one implementation (edgeskel's host Runner wraps this class too)."""

    backend = "ort"

    def __init__(self, path: Path, precision: str, threads: int | None, options: dict[str, Any]):
        import onnxruntime as ort

        providers = options.get("providers") or ["CPUExecutionProvider"]
        self.sess = ort.InferenceSession(str(path), sess_options=ort_session_options(threads), providers=providers)
        inp = self.sess.get_inputs()[0]
        self.input = inp.name
        self.fixed_batch = inp.shape[0] if isinstance(inp.shape[0], int) and inp.shape[0] > 0 else None
        self.output_names = [o.name for o in self.sess.get_outputs()]

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.sess.run(None, {self.input: x})[0]

    def run_named(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Every output by name for named inputs (step graphs: frame, valid and the states)."""
        return dict(zip(self.output_names, self.sess.run(self.output_names, feeds), strict=True))


class OpenVinoInfer:
    """OpenVINO: the one implementation (edgeskel's host Runner wraps this class too), so the
    precision hint is decided here once. fp16 = the IR's weights stored in fp16, computed in f32:
    what export's parity check ran (its record says runtime precision fp32). With the f16 hint, a
    CPU without native fp16 computes like bf16 instead (EfficientGCN-B0 on NW-UCLA: 73.28 vs 72.41
    top-1), so the variant measured was not the one judged. Without an explicit hint this CPU
    runs OpenVINO in bf16 (TOOLCHAIN.md)."""

    HINTS = {"fp32": "f32", "int8": "f32", "fp16": "f32", "bf16": "bf16"}
    backend = "openvino"

    def __init__(self, path: Path, precision: str, threads: int | None, options: dict[str, Any]):
        import openvino as ov

        if precision not in self.HINTS:
            raise ValueError(f"unsupported OpenVINO precision {precision!r}; use one of {', '.join(self.HINTS)}")
        core = ov.Core()
        config = {"INFERENCE_PRECISION_HINT": self.HINTS[precision], "PERFORMANCE_HINT": "LATENCY"}
        if threads:
            config["INFERENCE_NUM_THREADS"] = int(threads)
        config.update(options.get("config") or {})
        self.config = config
        self.compiled = core.compile_model(core.read_model(str(path)), options.get("device", "CPU"), config)
        self.request = self.compiled.create_infer_request()
        self.out = self.compiled.output(0)
        shape = self.compiled.input(0).get_partial_shape()
        self.fixed_batch = shape[0].get_length() if shape[0].is_static else None
        self.output_names = [o.get_any_name() for o in self.compiled.outputs]

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(self.request.infer({0: x})[self.out])

    def run_named(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Every output by name. Inputs are shared (no copy in); outputs are copied out, since a
        step graph's state outputs come back as inputs on the next call."""
        res = self.request.infer(feeds, share_inputs=True, share_outputs=False)
        return dict(zip(self.output_names, res.to_tuple(), strict=True))

    def reset_state(self) -> None:
        """A stateful IR (ReadValue/Assign: the states live in the request): back to the initial
        values, at the start of every stream."""
        self.request.reset_state()


class TensorRTInfer:
    """A TensorRT engine via the TensorRT 10 Python API + cuda-python (cudart).

    TensorRT calls used (the contract tests/doubles/tensorrt_double implements, no others):
    `tensorrt.__version__`, `Logger(Logger.WARNING)`, `Runtime(logger)`, `Runtime.DLA_core`,
    `Runtime.deserialize_cuda_engine(bytes)` (None on failure), `ICudaEngine.num_io_tensors`,
    `.get_tensor_name(i)`, `.get_tensor_mode(name)` (`TensorIOMode.INPUT/OUTPUT`),
    `.get_tensor_shape(name)`, `.get_tensor_profile_shape(name, 0)`, `.create_execution_context()`,
    `IExecutionContext.set_input_shape(name, shape)` (False if outside the profile),
    `.get_tensor_shape(name)`, `.set_tensor_address(name, ptr)`, `.execute_async_v3(stream)`.
    cudart: cudaStreamCreate, cudaMalloc, cudaFree, cudaMemcpyAsync, cudaStreamSynchronize.

    Inputs of any batch are split into chunks of the engine's profile maximum and a short last
    chunk is padded to the profile minimum: engines here have static shapes (one per batch size,
    as DLA requires), so a batch the engine was not built for must never reach it."""

    backend = "tensorrt"

    def __init__(self, path: Path, precision: str, threads: int | None, options: dict[str, Any]):
        import tensorrt as trt

        try:
            from cuda.bindings import runtime as cudart  # cuda-python >= 12.6
        except ImportError:
            from cuda import cudart  # older cuda-python
        self.cudart = cudart
        self.version = str(getattr(trt, "__version__", "unknown"))
        self.runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        if options.get("dla_core") is not None:
            self.runtime.DLA_core = int(options["dla_core"])
        self.engine = self.runtime.deserialize_cuda_engine(Path(path).read_bytes())
        if self.engine is None:
            raise RuntimeError(f"{path}: TensorRT {self.version} could not deserialize the engine "
                               f"(built with another TensorRT version or for another device?)")
        self.ctx = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.inp = next(n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT)
        self.outn = next(n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT)
        self.output_names = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        fixed = int(tuple(self.engine.get_tensor_shape(self.inp))[0])
        if fixed > 0:
            self.min_batch = self.max_batch = fixed
        else:
            lo, _, hi = self.engine.get_tensor_profile_shape(self.inp, 0)
            self.min_batch, self.max_batch = int(tuple(lo)[0]), int(tuple(hi)[0])
        self.stream = self._ck(cudart.cudaStreamCreate())
        self.bufs: dict[str, tuple[int, int]] = {}

    def _ck(self, ret: Any) -> Any:
        err, *rest = ret if isinstance(ret, tuple) else (ret,)
        if int(err) != 0:
            raise RuntimeError(f"CUDA error {err}")
        return rest[0] if len(rest) == 1 else rest

    def _buf(self, name: str, nbytes: int) -> int:
        ptr, size = self.bufs.get(name, (0, 0))
        if size < nbytes:
            if ptr:
                self._ck(self.cudart.cudaFree(ptr))
            ptr = self._ck(self.cudart.cudaMalloc(nbytes))
            self.bufs[name] = (ptr, nbytes)
        return ptr

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x, dtype=np.float32)
        if self.min_batch <= len(x) <= self.max_batch:
            return self._run(x)
        outs = []
        for i in range(0, len(x), self.max_batch):
            b = x[i : i + self.max_batch]
            n = len(b)
            if n < self.min_batch:  # static engine: pad with the last sample, drop its rows after
                b = np.concatenate([b, np.repeat(b[-1:], self.min_batch - n, axis=0)])
            outs.append(self._run(np.ascontiguousarray(b))[:n])
        return np.concatenate(outs)

    def _run(self, x: np.ndarray) -> np.ndarray:
        cu = self.cudart
        if not self.ctx.set_input_shape(self.inp, tuple(x.shape)):
            raise RuntimeError(f"TensorRT rejected input shape {tuple(x.shape)} (engine batch "
                               f"{self.min_batch}..{self.max_batch})")
        out = np.empty(tuple(self.ctx.get_tensor_shape(self.outn)), dtype=np.float32)
        din, dout = self._buf(self.inp, x.nbytes), self._buf(self.outn, out.nbytes)
        kind_h2d, kind_d2h = cu.cudaMemcpyKind.cudaMemcpyHostToDevice, cu.cudaMemcpyKind.cudaMemcpyDeviceToHost
        self._ck(cu.cudaMemcpyAsync(din, x.ctypes.data, x.nbytes, kind_h2d, self.stream))
        self.ctx.set_tensor_address(self.inp, din)
        self.ctx.set_tensor_address(self.outn, dout)
        if not self.ctx.execute_async_v3(self.stream):
            raise RuntimeError("TensorRT execute_async_v3 failed")
        self._ck(cu.cudaMemcpyAsync(out.ctypes.data, dout, out.nbytes, kind_d2h, self.stream))
        self._ck(cu.cudaStreamSynchronize(self.stream))
        return out

    def run_named(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Every output by name for named float32 inputs of the engine's static shapes (a step
        engine: frame, valid and the state tensors; the same calls as `_run`, one per tensor)."""
        cu = self.cudart
        kind_h2d, kind_d2h = cu.cudaMemcpyKind.cudaMemcpyHostToDevice, cu.cudaMemcpyKind.cudaMemcpyDeviceToHost
        for name, arr in feeds.items():
            arr = np.ascontiguousarray(arr, dtype=np.float32)
            if not self.ctx.set_input_shape(name, tuple(arr.shape)):
                raise RuntimeError(f"TensorRT rejected input {name} of shape {tuple(arr.shape)}")
            ptr = self._buf(name, arr.nbytes)
            self._ck(cu.cudaMemcpyAsync(ptr, arr.ctypes.data, arr.nbytes, kind_h2d, self.stream))
            self.ctx.set_tensor_address(name, ptr)
        outs = {}
        for name in self.output_names:
            out = np.empty(tuple(self.ctx.get_tensor_shape(name)), dtype=np.float32)
            self.ctx.set_tensor_address(name, self._buf(name, out.nbytes))
            outs[name] = out
        if not self.ctx.execute_async_v3(self.stream):
            raise RuntimeError("TensorRT execute_async_v3 failed")
        for name, out in outs.items():
            self._ck(cu.cudaMemcpyAsync(out.ctypes.data, self.bufs[name][0], out.nbytes, kind_d2h, self.stream))
        self._ck(cu.cudaStreamSynchronize(self.stream))
        return outs


_TensorRTInfer = TensorRTInfer  # older name
# The backends this runner can run: per-backend code, one infer class each (its `backend` names it).
RUNTIMES: dict[str, Any] = {cls.backend: cls for cls in (OrtInfer, OpenVinoInfer, TensorRTInfer)}


# ----------------------------------------------------------------------------- streaming
# A step graph (docs/STREAMING.md) takes `stride` raw frames + its states and returns the decision
# for the stream so far + the new states; `streaming.json` beside it says how. The loop below is
# what a deployment runs, so the device numbers are a deployment's: the accuracy of the decision
# at each recorded sequence's last frame (the stream ended and flushed), and the latency of one
# call with its real feeds on recorded frames.


class StreamSession:
    """Drive a step graph from its contract: keep the states, feed `stride` frames per call, swap
    state outputs into state inputs. `run` maps named inputs to named outputs (`run_named` of
    any infer class above), so every backend streams through the same lines."""

    def __init__(self, contract: dict[str, Any], run: Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]):
        self.contract, self.run = contract, run
        self.stride = int(contract["stride"])
        self.batch = int(contract.get("batch", 1))  # streams per call (older contracts: 1)
        self.reset()

    def reset(self) -> None:
        self.states = {s["input"]: np.full(s["shape"], s["initial"], dtype=s["dtype"]) for s in self.contract["state"]}

    def _inputs(self, frames: np.ndarray, valid: Any) -> dict[str, np.ndarray]:
        """frame/valid feeds: (C, S, V, M) frames and one `valid` go to every stream row (a batched
        graph timed or replayed on one stream), (N, C, S, V, M) and (N,) are one row each."""
        x = np.asarray(frames, dtype=np.float32)
        if x.ndim == 4:
            x = np.broadcast_to(x[None], (self.batch, *x.shape))
        v = np.broadcast_to(np.asarray(self.stride if valid is None else valid, np.float32), (self.batch,))
        return {self.contract["frame_input"]: np.ascontiguousarray(x), self.contract["valid_input"]: np.ascontiguousarray(v)}

    def step_rows(self, frames: np.ndarray, valid: Any = None) -> np.ndarray:
        """One call for every stream row -> logits (N, K)."""
        feeds = {**self.states, **self._inputs(frames, valid)}
        out = self.run(feeds)
        for s in self.contract["state"]:
            self.states[s["input"]] = out[s["output"]]
        return np.asarray(out[self.contract["logits_output"]])

    def step(self, frames: np.ndarray, valid: int | None = None) -> np.ndarray:
        """`frames` (C, stride, V, M) raw, `valid` of them real (default all) -> logits (K,) (of
        row 0; a batched graph gets the same frames in every row)."""
        return self.step_rows(frames, valid)[0]

    def replay(self, frames: np.ndarray, end: bool = False) -> np.ndarray:
        """Raw (C, L, V, M) -> decisions, one per call, from a fresh state: L // stride calls, or
        with `end` the whole calls, the end call with the leftover frames and the flush calls."""
        self.reset()
        s, length = self.stride, frames.shape[1]
        plan = (end_call_plan(length, s, int(self.contract["flush_calls"])) if end
                else [(i * s, s) for i in range(length // s)])
        out = []
        for first, real in plan:
            chunk = np.zeros((frames.shape[0], s) + frames.shape[2:], np.float32)
            chunk[:, :real] = frames[:, first:first + real]
            out.append(self.step(chunk, real))
        return np.stack(out)


def end_call_plan(frames: int, stride: int, flush_calls: int) -> list[tuple[int, int]]:
    """(first frame, real frames) of every call for a stream of `frames` frames that then ends:
    the whole calls, the end call (the r < stride leftover frames, or none), the flush calls."""
    whole = frames // stride
    return ([(i * stride, stride) for i in range(whole)] + [(whole * stride, frames - whole * stride)]
            + [(frames, 0)] * (flush_calls - 1))


def last_decisions(session: StreamSession, seqs: list[np.ndarray]) -> np.ndarray:
    """(len(seqs), K): the decision at each recorded sequence's last frame (ended and flushed),
    `session.batch` sequences per call, each in its own row with its own end (a row whose
    sequence has ended is fed valid 0 until the group's longest one is done)."""
    n, s = session.batch, session.stride
    out = []
    for g in range(0, len(seqs), n):
        group = seqs[g:g + n]
        session.reset()
        plans = [end_call_plan(f.shape[1], s, int(session.contract["flush_calls"])) for f in group]
        last: list[np.ndarray | None] = [None] * len(group)
        for t in range(max(len(p) for p in plans)):
            frames = np.zeros((n, *group[0].shape[:1], s, *group[0].shape[2:]), np.float32)
            valid = np.zeros(n, np.float32)
            for k, (f, p) in enumerate(zip(group, plans, strict=True)):
                if t < len(p):
                    first, real = p[t]
                    frames[k, :, :real] = f[:, first:first + real]
                    valid[k] = real
            logits = session.step_rows(frames, valid)
            for k, p in enumerate(plans):
                if t == len(p) - 1:
                    last[k] = logits[k]
        out += last
    return np.stack(out)


class StatefulStreamSession(StreamSession):
    """A stateful graph (OpenVINO's ReadValue/Assign form, streaming.json `openvino_stateful`):
    the runtime keeps the states between calls, so a call feeds only the frames and `valid`;
    `reset` starts a stream. Same decisions as StreamSession on the stateless graph."""

    def __init__(self, contract: dict[str, Any], run: Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]],
                 reset_state: Callable[[], None]):
        self.reset_state = reset_state
        super().__init__(contract, run)

    def reset(self) -> None:
        self.reset_state()

    def step_rows(self, frames: np.ndarray, valid: Any = None) -> np.ndarray:
        return np.asarray(self.run(self._inputs(frames, valid))[self.contract["logits_output"]])


def stream_session(infer: Any, contract: dict[str, Any], stateful: bool = False) -> StreamSession:
    """The session a deployment runs on `infer`: states fed and swapped by the caller, or kept
    by the runtime (`stateful`)."""
    if stateful:
        return StatefulStreamSession(contract, infer.run_named, infer.reset_state)
    return StreamSession(contract, infer.run_named)


class StreamCaller:
    """One step call per `__call__` on successive recorded frames, the state carried across
    calls (a running stream, restarted at the end of the recording): what latency times. The
    argument is ignored, so a stream joins `time_round_robin` beside windowed variants."""

    def __init__(self, session: StreamSession, frames: np.ndarray):
        self.session, self.frames, self.pos = session, frames, 0

    def __call__(self, _x: Any = None) -> np.ndarray:
        s = self.session.stride
        if self.pos + s > self.frames.shape[1]:
            self.pos = 0
            self.session.reset()
        out = self.session.step(self.frames[:, self.pos:self.pos + s])
        self.pos += s
        return out


def stream_sequences(bundle: Path, meta: dict[str, Any]) -> tuple[list[np.ndarray], np.ndarray]:
    """The bundle's recorded test sequences (raw frames (C, L, V, M) each) and their labels."""
    d = (meta.get("data") or {}).get("stream")
    if not d:
        raise RuntimeError("this bundle has streaming variants but no recorded sequences (data.stream)")
    frames = np.load(bundle / d["frames"])
    lengths = np.load(bundle / d["lengths"]).astype(np.int64)
    ends = np.cumsum(lengths)
    seqs = [frames[:, e - n:e] for n, e in zip(lengths, ends, strict=True)]
    return seqs, np.load(bundle / d["labels"])


def stream_info(contract: dict[str, Any]) -> dict[str, Any]:
    """What a stream costs besides time: the state a deployment keeps per stream (a batched
    graph's states hold `batch` streams)."""
    batch = int(contract.get("batch", 1))
    state = sum(int(np.prod(s["shape"])) * np.dtype(s["dtype"]).itemsize for s in contract["state"]) // batch
    frame = int(np.prod(contract.get("frame_shape") or [0])) * 4 // batch
    return {"stride": int(contract["stride"]), "window": int(contract["window"]), "batch": int(contract.get("batch", 1)),
            "valid_from": int(contract["valid_from"]), "flush_calls": int(contract["flush_calls"]),
            "stride_mode": contract.get("stride_mode"), "states": len(contract["state"]),
            "state_bytes": state, "io_bytes_per_call": 2 * state + frame}


def stream_infer(bundle: Path, meta: dict[str, Any], v: dict[str, Any], log: Callable[[str], None]) -> tuple[Any, dict[str, Any]]:
    """(infer, contract) of a streaming variant: the step graph's session (a TensorRT step
    engine is built here first, batch 1) and its streaming.json."""
    contract = json.loads((bundle / v["contract"]).read_text())
    opts = v.get("options") or {}
    if v["backend"] == "tensorrt":
        _check_tensorrt_version(meta)
        engines = build_engines(bundle, v, log)["engines"]
        return TensorRTInfer(engines[min(engines)], v["precision"], meta.get("threads"), opts), contract
    return RUNTIMES[v["backend"]](bundle / v["artifact"], v["precision"], meta.get("threads"), opts), contract


def measure_stream(bundle: Path, meta: dict[str, Any], v: dict[str, Any], res: dict[str, Any],
                   log: Callable[[str], None], timing: bool = True) -> None:
    """Streaming top-1 (the decision at each recorded sequence's last frame, stream ended and
    flushed), the per-call latency on recorded frames (timing) and the state a stream keeps."""
    infer, contract = stream_infer(bundle, meta, v, log)
    session = stream_session(infer, contract, bool(v.get("stateful")))
    seqs, y = stream_sequences(bundle, meta)
    log(f"  {v['name']}: replaying {len(seqs)} recorded sequences frame by frame ({session.batch} per call)")
    s, flush = session.stride, int(contract["flush_calls"])
    calls = sum(f.shape[1] // s + flush for f in seqs)  # per stream: whole calls, the end call, the flushes
    res["accuracy"] = accuracy_stats(last_decisions(session, seqs), y)
    res["streaming"] = {**stream_info(contract), "sequences": len(seqs), "calls": calls,
                        "frames": int(sum(f.shape[1] for f in seqs)),
                        "graph": "stateful (states kept by the runtime)" if v.get("stateful") else "states as inputs/outputs"}
    res["latency_ms"] = {}
    if timing:
        m = meta.get("measure", {})
        log(f"  {v['name']}: timing step calls")
        caller = StreamCaller(session, np.concatenate(seqs, axis=1))
        res["latency_ms"][str(session.batch)] = latency_stats(
            time_infer(caller, None, int(m.get("warmup", 10)), int(m.get("runs", 100)), m.get("max_seconds")), session.batch)
    if v["backend"] == "tensorrt":
        res["tensorrt"] = {"route": (v.get("build") or {}).get("route"), "runtime": infer.version
                           + (" (contract double, not TensorRT)" if _is_double() else ""), "engines": {}, "layers": None}


def layer_placement(log_text: str) -> dict[str, int] | None:
    """Layers trtexec's build log lists as running on DLA and on GPU (TensorRT prints
    "---------- Layers Running on DLA/GPU ----------" sections with one `[DlaLayer]` / `[GpuLayer]`
    line per layer after fusion; a DLA line is one DLA subgraph). None if the log has no such list."""
    if "Layers Running on" not in log_text and "[DlaLayer]" not in log_text and "[GpuLayer]" not in log_text:
        return None
    return {"dla": log_text.count("[DlaLayer]"), "gpu": log_text.count("[GpuLayer]")}


def tensorrt_engines(v: dict[str, Any]) -> dict[int, str]:
    """{batch: engine path in the bundle} of a TensorRT variant (bundle.json `build.engines`)."""
    build = v.get("build") or {}
    if build.get("engines"):
        return {int(b): p for b, p in build["engines"].items()}
    if str(v["artifact"]).endswith((".engine", ".plan")):
        return {int(max(v.get("batch_sizes") or [1])): v["artifact"]}
    raise RuntimeError(f"variant {v['name']!r}: bundle.json lists no TensorRT engines (build.engines); "
                       f"re-create the bundle with this edgeskel version")


def build_engines(bundle: Path, v: dict[str, Any], log: Callable[[str], None]) -> dict[str, Any]:
    """Build the variant's TensorRT engines on this device with the bundle's build script unless
    they all exist. Returns {engines: {batch: Path}, build_s, placement: {batch: {dla, gpu}}}.
    A script that exits 0 without writing an engine bundle.json names is an error naming it."""
    build = v.get("build") or {}
    engines = {b: bundle / p for b, p in tensorrt_engines(v).items()}
    info: dict[str, Any] = {"engines": engines, "build_s": None, "placement": {}}
    if not all(p.is_file() for p in engines.values()):
        if not build.get("script"):
            raise RuntimeError(f"variant {v['name']!r}: engines missing and no build script in the bundle")
        cmd = ["bash", str(bundle / build["script"])]
        log(f"building TensorRT engines for {v['name']}: {build['script']} (batch {', '.join(map(str, engines))})")
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, cwd=bundle, capture_output=True, text=True)
        info["build_s"] = round(time.perf_counter() - t0, 2)
        missing = [str(p.relative_to(bundle)) for p in engines.values() if not p.is_file()]
        if proc.returncode != 0 or missing:
            tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
            what = f"; it wrote no {', '.join(missing)} (bundle.json build.engines)" if missing else ""
            raise RuntimeError(f"engine build failed (build script exit {proc.returncode}{what}):\n{tail}")
    for b, rel in (build.get("logs") or {}).items():
        p = bundle / rel
        info["placement"][str(b)] = layer_placement(p.read_text(errors="replace")) if p.is_file() else None
    return info


# ----------------------------------------------------------------------------- driver


def backend_info(meta: dict[str, Any] | None, backend: str) -> dict[str, Any]:
    """What the bundle says `backend` needs: {runtime_modules, dists, interleavable} (bundle.json
    `backends`; LEGACY_BACKENDS for older bundles). An unknown backend needs a module of its name."""
    table = (meta or {}).get("backends")
    table = table if isinstance(table, dict) else LEGACY_BACKENDS
    return {"runtime_modules": [backend], "dists": [backend], "interleavable": False, **(table.get(backend) or {})}


def load_bundle(bundle: Path) -> dict[str, Any]:
    path = bundle / "bundle.json"
    if not path.is_file():
        raise SystemExit(f"error: {path}: not an edgeskel bundle (bundle.json missing)")
    try:
        meta = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise SystemExit(f"error: {path}: corrupt bundle.json: {exc}") from None
    fmt = meta.get("format") if isinstance(meta, dict) else None
    if fmt != BUNDLE_FORMAT:
        raise SystemExit(f"error: {path}: unsupported bundle format {fmt!r} (want {BUNDLE_FORMAT})")
    return meta


def run_variant(bundle: Path, meta: dict[str, Any], v: dict[str, Any], log: Callable[[str], None],
                timing: bool = True) -> dict[str, Any]:
    """Accuracy + latency + peak RSS of one variant in this process. timing=False leaves the
    latency to the interleaved pass (`time_interleaved`); TensorRT engines are always timed here."""
    res: dict[str, Any] = {k: v.get(k) for k in ("name", "backend", "precision")}
    res.update(status="ok", error=None)
    try:
        for module in backend_info(meta, v["backend"])["runtime_modules"]:
            __import__(module)
        if v["backend"] not in RUNTIMES:
            raise RuntimeError(f"backend {v['backend']!r} cannot run in the standalone device runner")
        baseline = peak_rss_mb()
        data = meta["data"]
        m = meta.get("measure", {})
        streaming = v.get("form") == "streaming"  # a step graph: recorded sequences, frame by frame
        x = None if streaming else np.load(bundle / data["val_x"])
        y = None if streaming else np.load(bundle / data["val_y"])
        ref = np.load(bundle / data["ref_logits"]) if data.get("ref_logits") and not streaming else None
        if streaming:
            measure_stream(bundle, meta, v, res, log, timing)
        elif v["backend"] == "tensorrt":
            _measure_tensorrt(bundle, meta, v, x, y, ref, res, log)
        else:
            infer = RUNTIMES[v["backend"]](bundle / v["artifact"], v["precision"], meta.get("threads"),
                                           v.get("options") or {})
            static = v.get("static_batch")
            eval_bs = int(static or m.get("eval_batch_size", 16))
            res["accuracy"], _ = evaluate(infer, x, y, eval_bs, ref, pad_to_batch=static is not None)
            res["latency_ms"] = {}
            for bs in _batch_sizes(meta, v) if timing else []:
                log(f"  {v['name']}: timing batch {bs}")
                res["latency_ms"][str(bs)] = latency_stats(_time(infer, x, int(bs), m), int(bs))
        peak = peak_rss_mb()
        res["memory"] = {"peak_rss_mb": round(peak, 1), "baseline_rss_mb": round(baseline, 1),
                         "model_rss_mb": round(peak - baseline, 1), "method": "VmHWM of the runner process (host RSS high-water mark)"}
    except Exception as exc:  # report per variant; the other variants still run
        res.update(status="error", error=f"{type(exc).__name__}: {exc}")
    return res


def _batch_sizes(meta: dict[str, Any], v: dict[str, Any]) -> list[int]:
    static = v.get("static_batch")
    return [int(static)] if static else [int(b) for b in (v.get("batch_sizes") or meta.get("batch_sizes") or [1])]


def interleavable(v: dict[str, Any], meta: dict[str, Any] | None = None) -> bool:
    """Whether the variant's sessions may share one process with others (the bundle's `backends`:
    ORT and OpenVINO can; TensorRT engines, one per batch size, built on the device, a crash
    taking the process down, are timed in their own process)."""
    return bool(backend_info(meta, str(v.get("backend"))).get("interleavable")) and v.get("backend") in RUNTIMES


def time_interleaved(bundle: Path, meta: dict[str, Any], variants: list[dict[str, Any]],
                     log: Callable[[str], None]) -> dict[str, dict[str, Any]]:
    """Load every variant's session in THIS process and time them round-robin per batch size
    (`time_round_robin`). Returns {variant: {str(batch): latency_stats}}; a variant whose
    session fails to load is left out (its own process already reported the error)."""
    x = np.load(bundle / meta["data"]["val_x"])
    m = meta.get("measure", {})
    infers: dict[str, Callable[[np.ndarray], np.ndarray]] = {}
    for v in variants:
        try:
            if v.get("form") == "streaming":  # a running stream's step calls, timed beside the windows
                infer, contract = stream_infer(bundle, meta, v, log)
                seqs, _ = stream_sequences(bundle, meta)
                infers[v["name"]] = StreamCaller(stream_session(infer, contract, bool(v.get("stateful"))),
                                                 np.concatenate(seqs, axis=1))
                continue
            infers[v["name"]] = RUNTIMES[v["backend"]](bundle / v["artifact"], v["precision"], meta.get("threads"),
                                                       v.get("options") or {})
        except Exception as exc:  # noqa: BLE001 - reported by the variant's own process
            log(f"  {v['name']}: not timed interleaved ({type(exc).__name__}: {exc})")
    out: dict[str, dict[str, Any]] = {n: {} for n in infers}
    by_batch: dict[int, list[str]] = {}
    for v in variants:
        if v["name"] in infers:
            for bs in _batch_sizes(meta, v):
                by_batch.setdefault(bs, []).append(v["name"])
    for bs, names in sorted(by_batch.items()):
        import textwrap  # a log line per 78 columns, however many variants

        for line in textwrap.wrap(f"timing batch {bs} interleaved ({len(names)}): {', '.join(names)}", 76,
                                  initial_indent="  ", subsequent_indent="    "):
            log(line)
        times = time_round_robin({n: infers[n] for n in names}, make_batch(x[0], bs), int(m.get("warmup", 10)),
                                 int(m.get("runs", 100)), m.get("max_seconds"))
        for n, t in times.items():
            out[n][str(bs)] = latency_stats(t, bs)
    return out


def run_layer_bundle(bundle: Path, meta: dict[str, Any], variants: list[dict[str, Any]],
                     log: Callable[[str], None]) -> list[dict[str, Any]]:
    """A layer-timing bundle (`kind: layers`, written by the latency table): every variant is one
    form of one layer (dense or factorized, an ONNX of that layer alone) with its `input_shape`.
    The forms of a `group` (one layer at one batch size) are timed round-robin on a random input
    of that shape; no accuracy (a layer's output is not logits). A group whose session fails to
    load reports the error on each of its forms; the other groups still run."""
    m = meta.get("measure", {})
    groups: dict[str, list[dict[str, Any]]] = {}
    for v in variants:
        groups.setdefault(str(v["group"]), []).append(v)
    results: dict[str, dict[str, Any]] = {}
    for g, forms in groups.items():
        shape = [int(d) for d in forms[0]["input_shape"]]
        x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
        try:
            infers = {v["name"]: RUNTIMES[v["backend"]](bundle / v["artifact"], v["precision"], meta.get("threads"),
                                                        v.get("options") or {}) for v in forms}
            log(f"  layer group {g} {tuple(shape)}: {len(forms)} forms interleaved")
            times = time_round_robin(infers, x, int(m.get("warmup", 5)), int(m.get("runs", 30)), m.get("max_seconds"),
                                     rounds=int(m.get("rounds", 3)))
            for n, t in times.items():
                results[n] = {"name": n, "status": "ok", "error": None, "latency_ms": {str(shape[0]): latency_stats(t, shape[0])}}
        except Exception as exc:  # noqa: BLE001 - reported per form; other layers still run
            for v in forms:
                results[v["name"]] = {"name": v["name"], "status": "error", "error": f"{type(exc).__name__}: {exc}"}
    return [{**results[v["name"]], "backend": v["backend"], "precision": v["precision"], "timing": "interleaved"}
            for v in variants]


def host_info(threads: int | None = None) -> dict[str, Any]:
    """The CPU that ran the measurement (model, logical cores, cores this process may use), the
    runtime threads asked for, and the 1/5/15-minute load average: a loaded host explains
    slow or noisy numbers. No hostname."""
    model = None
    try:
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            key, _, val = line.partition(":")
            if key.strip() in ("model name", "Model", "Hardware", "cpu model") and val.strip():
                model = val.strip()[:120]
                break
    except OSError:
        pass
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = os.cpu_count()
    try:
        load = [round(v, 2) for v in os.getloadavg()]
    except (AttributeError, OSError):
        load = None
    return {"cpu_model": model or platform.processor() or platform.machine(), "logical_cores": os.cpu_count(),
            "usable_cores": usable, "threads": threads, "load_avg_1_5_15": load}


def emulation(machine: str | None = None, cpuinfo: str | None = None,
              environ: dict[str, str] | None = None) -> str | None:
    """How this process's CPU is emulated (e.g. "qemu-user:cortex-a76"), or None on real
    hardware. Latency and memory measured under emulation are the emulator's, not the
    device's: edgeskel labels them and never gates them. Signals: EDGESKEL_EMULATOR (set by
    the wrapper scripts/aarch64-userland.sh makes), else a /proc/cpuinfo of another
    architecture than the process's (qemu-user, e.g. a docker --platform linux/arm64
    container, passes the host's through)."""
    environ = os.environ if environ is None else environ
    if environ.get("EDGESKEL_EMULATOR"):
        return environ["EDGESKEL_EMULATOR"][:80]
    machine = (machine or platform.machine()).lower()
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text(errors="replace")
        except OSError:
            return None
    arm, x86 = "CPU implementer" in cpuinfo, "vendor_id" in cpuinfo
    if machine in ("aarch64", "arm64") and x86 and not arm:
        return "user-mode emulation (arm64 process, x86 /proc/cpuinfo)"
    if machine in ("x86_64", "amd64") and arm and not x86:
        return "user-mode emulation (x86_64 process, Arm /proc/cpuinfo)"
    return None


def _time(infer: Callable[[np.ndarray], np.ndarray], x: np.ndarray, bs: int, m: dict[str, Any]) -> list[float]:
    return time_infer(infer, make_batch(x[0], bs), int(m.get("warmup", 10)), int(m.get("runs", 100)),
                      m.get("max_seconds"))


def _measure_tensorrt(bundle: Path, meta: dict[str, Any], v: dict[str, Any], x: np.ndarray, y: np.ndarray,
                      ref: np.ndarray | None, res: dict[str, Any], log: Callable[[str], None]) -> None:
    """Build the engines (one per batch size) if needed; accuracy on the largest engine (the last
    batch padded), latency of each batch size on the engine built for it; where layers ran."""
    _check_tensorrt_version(meta)
    built = build_engines(bundle, v, log)
    opts = v.get("options") or {}
    engines: dict[int, Path] = built["engines"]
    m = meta.get("measure", {})
    trt_info: dict[str, Any] = {"route": (v.get("build") or {}).get("route"), "dla_core": opts.get("dla_core"),
                                "engines": {}, "layers": built["placement"] or None}
    if built["build_s"] is not None:
        res["engine_build_s"] = built["build_s"]
    res["latency_ms"] = {}
    for i, bs in enumerate(sorted(engines, reverse=True)):
        infer = TensorRTInfer(engines[bs], v["precision"], meta.get("threads"), opts)
        trt_info["runtime"] = infer.version + (" (contract double, not TensorRT)" if _is_double() else "")
        trt_info["engines"][str(bs)] = {"file": str(engines[bs].relative_to(bundle)), "batch": [infer.min_batch, infer.max_batch]}
        if i == 0:
            res["accuracy"], _ = evaluate(infer, x, y, infer.max_batch, ref, pad_to_batch=True)
        log(f"  {v['name']}: timing batch {bs} on {engines[bs].name}")
        res["latency_ms"][str(bs)] = latency_stats(_time(infer, x, bs, m), bs)
        del infer
    res["tensorrt"] = trt_info


def _check_tensorrt_version(meta: dict[str, Any]) -> None:
    """The bundle's build route was chosen for the profile's TensorRT major version (10.x:
    --stronglyTyped, 11.x: no precision flags): on another major it would build something else
    or fail, so say which profile to export with instead."""
    import tensorrt

    want = str((meta.get("tensorrt") or {}).get("version") or "")
    have = str(getattr(tensorrt, "__version__", ""))
    if want and have and want.split(".")[0] != have.split(".")[0]:
        raise RuntimeError(f"this bundle's TensorRT route is for TensorRT {want} (profile tensorrt.version), but this "
                           f"device has TensorRT {have}: export again with a profile whose tensorrt.version matches "
                           f"the device (JetPack 6: 10.x, e.g. jetson-orin; JetPack 7: 11.x, jetson-orin-jp7)")


def _is_double() -> bool:
    """The tests' TensorRT stand-in says so (tests/doubles): its numbers are never TensorRT's."""
    mod = sys.modules.get("tensorrt")
    return bool(getattr(mod, "__edgeskel_contract_double__", False))


def environment(meta: dict[str, Any] | None = None) -> dict[str, Any]:
    """What ran the measurement (no hostname, user or paths): the runtime version of every backend
    the bundle lists (`meta["backends"]`; LEGACY_BACKENDS for older bundles or no bundle)."""
    env: dict[str, Any] = {"python": platform.python_version(), "machine": platform.machine(),
                           "system": platform.system(), "numpy": np.__version__, "runtimes": {},
                           "emulation": emulation()}
    from importlib import metadata

    table = (meta or {}).get("backends")
    for backend in (table if isinstance(table, dict) else LEGACY_BACKENDS):
        info = backend_info(meta, backend)
        module = info["runtime_modules"][0]
        version = None
        for dist in info["dists"]:  # package metadata only: importing torch etc. is slow
            try:
                version = metadata.version(dist)
                break
            except metadata.PackageNotFoundError:
                continue
        if version is None and _has_module(module):
            version = "installed (version unknown)"  # e.g. JetPack's apt-installed tensorrt
            try:  # such bindings have no pip metadata, but a __version__
                mod = __import__(module)
                version = str(mod.__version__) + (
                    f" (contract double, not the real {module})" if getattr(mod, "__edgeskel_contract_double__", False) else "")
            except Exception:  # noqa: BLE001 - never fail a run over a version string
                pass
        env["runtimes"][backend] = version
    if _is_double():  # the tests' stand-in: its logits are ONNX Runtime's, its timing is not TensorRT's
        env["emulation"] = env.get("emulation") or "TensorRT contract double (tests): not TensorRT, timing not gated"
    tegra = Path("/etc/nv_tegra_release")
    if tegra.is_file():
        env["l4t"] = tegra.read_text().splitlines()[0][:120]
    return env


def _has_module(name: str) -> bool:
    from importlib import util

    try:
        return util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def write_json_atomic(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(obj, fh, indent=2)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _run_isolated(bundle: Path, name: str, log: Callable[[str], None], timing: bool = True) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as td:
        out = Path(td) / "one.json"
        # --one: this variant alone, no summary and no ERROR line of its own (the parent logs the
        # error once; the child's full run used to log it too, so every error was printed twice)
        cmd = [sys.executable, str(Path(__file__).resolve()), str(bundle), "--variant", name, "--out", str(out),
               "--one"] + ([] if timing else ["--no-timing"])
        proc = subprocess.run(cmd, capture_output=True, text=True)
        sys.stderr.write(proc.stderr)
        if proc.returncode in (EXIT_OK, EXIT_VARIANT_ERRORS) and out.is_file():
            return json.loads(out.read_text())["variants"][0]
        tail = " | ".join(proc.stderr.strip().splitlines()[-5:])
        return {"name": name, "status": "error", "error": f"variant process exited with code {proc.returncode}: {tail}"}


def artifact_hashes(bundle: Path, variants: list[dict[str, Any]]) -> dict[str, str]:
    """sha256 of every file the measured variants were loaded from, hashed here on the device:
    `edgeskel results import` compares them with the bundle's own digests, so results of
    another export (or of edited artifacts) cannot be imported as this run's."""
    import hashlib

    out = {}
    for v in variants:
        for rel in v.get("files") or [v["artifact"]]:
            h = hashlib.sha256()
            with open(bundle / rel, "rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    h.update(block)
            out[rel] = h.hexdigest()
    return out


def _interleaved_isolated(bundle: Path, names: list[str], log: Callable[[str], None]) -> dict[str, Any]:
    """time_interleaved in a child process (a runtime crash there loses the timing, not the run)."""
    with tempfile.TemporaryDirectory() as td:
        out = Path(td) / "timing.json"
        cmd = [sys.executable, str(Path(__file__).resolve()), str(bundle), "--timing-only", "--out", str(out)]
        for n in names:
            cmd += ["--variant", n]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        sys.stderr.write(proc.stderr)
        if proc.returncode == 0 and out.is_file():
            return json.loads(out.read_text())
        tail = " | ".join(proc.stderr.strip().splitlines()[-5:])
        raise RuntimeError(f"interleaved timing process exited with code {proc.returncode}: {tail}")


def run_bundle(bundle: str | Path, out: str | Path | None = None, only: list[str] | None = None,
               isolate: bool = True, log: Callable[[str], None] | None = None,
               interleave: bool = True) -> dict[str, Any]:
    """Measure the bundle's variants here and write results.json atomically; returns it.

    Accuracy and peak memory: each variant in its own process (isolate). Latency: with
    `interleave` and two or more ORT/OpenVINO variants, one more process loads all their
    sessions and times them round-robin (`time_interleaved`), so close variants are compared
    under the same host conditions; if that pass fails, each variant is timed in its own process."""
    bundle = Path(bundle).resolve()
    log = log or (lambda s: print(s, file=sys.stderr, flush=True))
    meta = load_bundle(bundle)
    variants = [v for v in meta["variants"] if not only or v["name"] in only]
    if only and len(variants) != len(only):
        raise SystemExit(f"error: unknown variant(s) {sorted(set(only) - {v['name'] for v in variants})}")
    host_before = host_info(meta.get("threads"))
    if meta.get("kind") == "layers":
        results = run_layer_bundle(bundle, meta, variants, log)
        timing_doc: dict[str, Any] = {"method": "layer forms interleaved round-robin per layer and batch size"}
        return _write_results(bundle, meta, variants, results, timing_doc, host_before, out)
    pooled = [v for v in variants if interleavable(v, meta)] if interleave else []
    pooled = pooled if len(pooled) >= 2 else []
    results = []
    for v in variants:
        log(f"variant {v['name']} ({v['backend']} {v['precision']})")
        timing = v not in pooled
        r = _run_isolated(bundle, v["name"], log, timing) if isolate else run_variant(bundle, meta, v, log, timing)
        for k in ("backend", "precision"):
            r.setdefault(k, v[k])
        r["timing"] = "own process" if timing else "interleaved"
        results.append(r)
        if r["status"] != "ok":
            log(f"  {v['name']}: ERROR {r['error']}")
    ok = [v for v in pooled if next(r for r in results if r["name"] == v["name"])["status"] == "ok"]
    timing_doc = {"method": "one variant after another, each in its own process"}
    if ok:
        log(f"interleaved timing of {len(ok)} variants (round-robin in blocks, start rotated each round)")
        try:
            lat = (_interleaved_isolated(bundle, [v["name"] for v in ok], log) if isolate
                   else time_interleaved(bundle, meta, ok, log))
            timing_doc = {"method": "interleaved round-robin in one process (a block of calls per variant per round, start rotated)",
                          "variants": sorted(lat)}
        except Exception as exc:  # noqa: BLE001 - fall back to timing each variant alone
            log(f"  interleaved timing failed ({exc}); timing each variant in its own process")
            timing_doc["interleaved_error"] = str(exc)[:500]
            lat = {}
        for r in results:
            if r["name"] in lat and lat[r["name"]]:
                r["latency_ms"] = lat[r["name"]]
            elif r["timing"] == "interleaved" and r["status"] == "ok":
                v = next(v for v in ok if v["name"] == r["name"])
                alone = _run_isolated(bundle, v["name"], log) if isolate else run_variant(bundle, meta, v, log)
                r["latency_ms"], r["timing"] = alone.get("latency_ms") or {}, "own process"
    return _write_results(bundle, meta, variants, results, timing_doc, host_before, out)


def _write_results(bundle: Path, meta: dict[str, Any], variants: list[dict[str, Any]], results: list[dict[str, Any]],
                   timing_doc: dict[str, Any], host_before: dict[str, Any], out: str | Path | None) -> dict[str, Any]:
    env = environment(meta)
    env["host"] = {**host_before, "load_avg_after": host_info()["load_avg_1_5_15"]}
    doc = {"format": RESULTS_FORMAT, "kind": meta.get("kind", "model"), "bundle_id": meta["bundle_id"],
           "device": meta.get("device"), "environment": env, "timing": timing_doc, "variants": results,
           "artifact_sha256": artifact_hashes(bundle, variants)}
    write_json_atomic(Path(out) if out else bundle / "results.json", doc)
    return doc


def main(argv: list[str] | None = None) -> int:
    """Exit status: 0 all variants measured, 3 some variant errored (results.json written),
    2 usage or bundle error (see the module docstring)."""
    ap = argparse.ArgumentParser(
        description="Measure an edgeskel bundle's variants on this device.",
        epilog=f"exit status: {EXIT_OK} every variant measured; {EXIT_VARIANT_ERRORS} results.json written but "
               f"some variant errored (status \"error\" in results.json, each error printed once); "
               f"{EXIT_USAGE} usage or bundle error, nothing measured; 1 the runner crashed.")
    ap.add_argument("bundle", help="bundle folder (contains bundle.json)")
    ap.add_argument("--out", default=None, help="results file (default: BUNDLE/results.json)")
    ap.add_argument("--variant", action="append", default=None, help="only this variant (repeatable)")
    ap.add_argument("--no-isolate", action="store_true", help="run variants in this process")
    ap.add_argument("--no-interleave", action="store_true", help="time each variant alone, one after another")
    ap.add_argument("--one", action="store_true", help=argparse.SUPPRESS)  # child: the listed variants, raw results
    ap.add_argument("--no-timing", action="store_true", help=argparse.SUPPRESS)  # child: accuracy + memory only
    ap.add_argument("--timing-only", action="store_true", help=argparse.SUPPRESS)  # child: the interleaved pass
    a = ap.parse_args(argv)  # usage errors: argparse exits 2
    try:
        return _main(a)
    except SystemExit as exc:  # load_bundle / run_bundle: "error: ..." (bundle or usage problem)
        if isinstance(exc.code, str):
            print(exc.code, file=sys.stderr)
            return EXIT_USAGE
        raise


def _main(a: argparse.Namespace) -> int:
    log = lambda s: print(s, file=sys.stderr, flush=True)  # noqa: E731
    if a.timing_only:
        meta = load_bundle(Path(a.bundle).resolve())
        chosen = [v for v in meta["variants"] if v["name"] in (a.variant or [])]
        lat = time_interleaved(Path(a.bundle).resolve(), meta, chosen, log)
        write_json_atomic(Path(a.out), lat)
        return EXIT_OK
    if a.no_timing or a.one:  # a child of run_bundle: its parent reports errors and sets the exit status
        bundle = Path(a.bundle).resolve()
        meta = load_bundle(bundle)
        res = [run_variant(bundle, meta, v, log, timing=not a.no_timing)
               for v in meta["variants"] if v["name"] in (a.variant or [])]
        write_json_atomic(Path(a.out) if a.out else bundle / "results.json", {"format": RESULTS_FORMAT, "variants": res})
        return EXIT_OK
    doc = run_bundle(a.bundle, a.out, a.variant, isolate=not a.no_isolate, interleave=not a.no_interleave)
    bad = [v["name"] for v in doc["variants"] if v["status"] != "ok"]
    print(json.dumps({"ok": len(doc["variants"]) - len(bad), "errors": bad}))
    if bad:
        print(f"error: {len(bad)} of {len(doc['variants'])} variants failed ({', '.join(bad)}); the reasons are in "
              f"{Path(a.out) if a.out else Path(a.bundle) / 'results.json'}", file=sys.stderr)
        return EXIT_VARIANT_ERRORS
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
