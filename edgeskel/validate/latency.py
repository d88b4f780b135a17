"""Latency/throughput of a runner, and the peak memory of running it.

Latency is the host wall-clock time of one `runner.infer(batch)` call (input copy, compute,
output copy), after `warmup` calls, over `runs` calls; reported per batch size as
p50/p90/p99/mean/std/min/max in ms plus throughput (samples/s = batch / mean). Dict keys
are batch sizes as strings ("1", "16") so local results and device results.json (JSON) are
the same structure. The timing and statistics code is shared with the device runner.

Peak memory: psutil is not available and tracemalloc cannot see native (ORT/OpenVINO)
allocations, so `measure_peak_memory` runs the runner in a FRESH child process and reads
the kernel's high-water mark of its resident set (VmHWM; ru_maxrss survives fork+exec) twice: after the
runtime is imported (baseline) and after load + inference. It reports both and their
difference (what the model itself costs). On Jetson, CUDA/unified allocations may not all
appear in host RSS; use tegrastats there for the GPU side.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from edgeskel.backends import registry
from edgeskel.errors import EdgeskelError
from edgeskel.remote.device_runner import latency_stats, make_batch, time_infer
from edgeskel.runtime.base import Runner


def measure_latency(
    runner: Runner,
    sample: np.ndarray,
    batch_sizes: list[int] | tuple[int, ...] = (1,),
    warmup: int = 10,
    runs: int = 100,
    max_seconds: float | None = None,
    progress: bool = True,
) -> dict[str, dict[str, Any]]:
    """Time `runner` on `sample` (C, T, V, M) repeated to each batch size.

    Returns {str(batch): {p50, p90, p99, mean, std, min, max, runs, batch_size,
    throughput_fps, samples_ms}}. `max_seconds` caps the timed loop per batch size (at
    least 10 runs are always taken; `runs` reports how many were).
    """
    sample = np.asarray(sample, dtype=np.float32)
    if sample.ndim != 4:
        raise EdgeskelError(f"latency sample must be one (C, T, V, M) sample, got shape {sample.shape}")
    out: dict[str, dict[str, Any]] = {}
    with Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        disable=not progress, transient=True,
    ) as bar:
        for bs in batch_sizes:
            task = bar.add_task(f"latency {runner.backend or type(runner).__name__} {runner.precision} b={bs}", total=runs)
            times = time_infer(runner.infer, make_batch(sample, int(bs)), warmup, runs, max_seconds,
                               on_step=lambda t=task: bar.advance(t))
            out[str(bs)] = latency_stats(times, int(bs))
    return out


def _runtime_module(backend: str) -> str | None:
    spec = registry().get(backend)
    return spec.runtime_modules[0] if spec is not None else None


_CHILD = r"""
import importlib, json, resource, sys
import numpy as np
spec = json.loads(sys.argv[1])
from edgeskel.remote.device_runner import peak_rss_mb as rss
mod = importlib.import_module(spec["module"])
cls = mod
for part in spec["qualname"].split("."):
    cls = getattr(cls, part)
if spec["runtime"]:
    try:
        importlib.import_module(spec["runtime"])  # count the runtime library in the baseline
    except ImportError:
        pass
runner = cls(spec["artifact"], precision=spec["precision"], threads=spec["threads"], **spec["options"])
base = rss()
runner.load()
x = np.load(spec["input"])
for _ in range(spec["repeats"]):
    runner.infer(x)
peak = rss()
runner.close()
print("EDGESKEL_MEMORY " + json.dumps({"baseline_rss_mb": base, "peak_rss_mb": peak}))
"""


def measure_peak_memory(runner: Runner, sample: np.ndarray, batch_size: int = 1, repeats: int = 3,
                        timeout_s: float = 600) -> dict[str, Any]:
    """Peak RSS (MB) of loading `runner`'s artifact and running `repeats` inferences at
    `batch_size`, measured in a fresh child process (see module docstring)."""
    cls = type(runner)
    with tempfile.TemporaryDirectory() as td:
        inp = Path(td) / "x.npy"
        np.save(inp, make_batch(sample, batch_size))
        spec = {"module": cls.__module__, "qualname": cls.__qualname__, "artifact": str(runner.artifact),
                "precision": runner.precision, "threads": runner.threads, "options": runner.options,
                "input": str(inp), "repeats": repeats, "runtime": _runtime_module(runner.backend)}
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
        try:
            proc = subprocess.run([sys.executable, "-c", _CHILD, json.dumps(spec)], capture_output=True, text=True,
                                  timeout=timeout_s, env=env)
        except subprocess.TimeoutExpired:
            raise EdgeskelError(f"{runner.artifact}: memory measurement timed out after {timeout_s:.0f} s") from None
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("EDGESKEL_MEMORY ")), None)
    if proc.returncode != 0 or line is None:
        tail = " | ".join(proc.stderr.strip().splitlines()[-3:])
        raise EdgeskelError(f"{runner.artifact}: memory measurement process failed (exit {proc.returncode}): {tail}")
    d = json.loads(line.split(" ", 1)[1])
    return {"peak_rss_mb": round(d["peak_rss_mb"], 1), "baseline_rss_mb": round(d["baseline_rss_mb"], 1),
            "model_rss_mb": round(d["peak_rss_mb"] - d["baseline_rss_mb"], 1), "batch_size": batch_size,
            "method": "child process VmHWM (host RSS high-water mark)"}


# ---- interleaved timing of several variants (bench, tune, the layer latency table) ----------

def batch_from(x: np.ndarray, n: int) -> np.ndarray:
    """The first n test samples (wrapping around), so every variant sees the same inputs."""
    idx = np.arange(n) % len(x)
    return np.ascontiguousarray(x[idx], dtype=np.float32)


def progress_bar(enabled: bool) -> Progress:
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    disable=not enabled, transient=True)


def interleaved_latency(infers: dict[str, Callable[[np.ndarray], np.ndarray]], batches: dict[int, np.ndarray],
                        rounds: int, runs: int, warmup: int, max_seconds: float | None, progress: bool = True,
                        label: str = "latency", only: dict[str, list[int]] | None = None) -> dict[str, dict[str, dict[str, Any]]]:
    """{variant: {str(batch): latency_stats over all rounds + per-round p50s}}. `only`: the batch
    sizes of some variants (a stream's step call runs at batch 1 only); the others run at all."""
    names = list(infers)
    sizes = {n: [b for b in batches if only is None or n not in only or b in only[n]] for n in names}
    samples: dict[str, dict[int, list[float]]] = {n: {b: [] for b in sizes[n]} for n in names}
    round_p50: dict[str, dict[int, list[float]]] = {n: {b: [] for b in sizes[n]} for n in names}
    with progress_bar(progress) as bar:
        task = bar.add_task(label, total=rounds * sum(len(v) for v in sizes.values()))
        for r in range(rounds):
            order = names[r % len(names):] + names[: r % len(names)]  # rotate: no variant always runs first
            for b, x in batches.items():
                for n in (n for n in order if b in sizes[n]):
                    t = time_infer(infers[n], x, warmup=warmup, runs=runs, max_seconds=max_seconds,
                                   min_runs=min(10, runs), warmup_seconds=None if max_seconds is None else max_seconds / 4)
                    samples[n][b] += t
                    round_p50[n][b].append(float(np.median(t)))
                    bar.advance(task)
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for n in names:
        out[n] = {}
        for b in sizes[n]:
            st = latency_stats(samples[n][b], b)
            st.pop("samples_ms", None)
            st["round_p50"] = [round(v, 4) for v in round_p50[n][b]]
            st["rounds"] = rounds
            out[n][str(b)] = st
    return out
