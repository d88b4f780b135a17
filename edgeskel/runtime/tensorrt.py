"""TensorRT runner for serialized engines (.engine/.plan), built on the device by trtexec.

Safety: without a GPU `trt.Builder()` fails and `trt.Runtime()` segfaults the whole process
(TOOLCHAIN.md), so no TensorRT object is created before `gpu_unavailable_reason()` says a
CUDA device answers. Inference is the device runner's `TensorRTInfer` (TensorRT 10 API +
cuda-python), so the export-time engine check and the device measurement run the same code,
including chunking/padding inputs to the engine's static batch.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np

from edgeskel.errors import ExportError
from edgeskel.runtime._common import as_batch, check_file
from edgeskel.runtime.base import Runner, register_runner

_DEVICE_NODES = ("/dev/nvidia0", "/dev/nvhost-ctrl-gpu", "/dev/nvgpu/igpu0/ctrl")


def gpu_unavailable_reason() -> str | None:
    """None when an NVIDIA GPU answers through the CUDA driver, else why not (one line)."""
    nodes = [p for p in _DEVICE_NODES if os.path.exists(p)]
    smi = shutil.which("nvidia-smi")
    if not nodes and smi is None:
        return "no NVIDIA device nodes (/dev/nvidia*, /dev/nvhost-*) and no nvidia-smi"
    if not nodes and smi is not None:
        try:
            out = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=20).stdout
        except (OSError, subprocess.SubprocessError) as exc:
            return f"nvidia-smi failed: {exc}"
        if "GPU" not in out:
            return "nvidia-smi lists no GPU"
    for name in ("libcuda.so.1", "libcuda.so"):
        try:
            cuda = ctypes.CDLL(name)
            break
        except OSError:
            continue
    else:
        return "CUDA driver library libcuda.so not found"
    count = ctypes.c_int(0)
    if cuda.cuInit(0) != 0 or cuda.cuDeviceGetCount(ctypes.byref(count)) != 0 or count.value < 1:
        return "CUDA driver initialisation failed or found no device"
    return None


def tensorrt_unavailable_reason() -> str | None:
    """None when TensorRT is importable and a GPU exists."""
    reason = gpu_unavailable_reason()
    if reason:
        return reason
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        return "the tensorrt Python package is not installed"
    return None


@register_runner("tensorrt")
class TensorRtRunner(Runner):
    runner = None

    def load(self) -> TensorRtRunner:
        check_file(self.artifact, "TensorRT engine")
        reason = gpu_unavailable_reason()
        if reason:
            raise ExportError(f"TensorRT needs an NVIDIA GPU: {reason} (engine {self.artifact})")
        from edgeskel.remote.device_runner import TensorRTInfer

        try:
            self.runner = TensorRTInfer(self.artifact, self.precision, self.threads,
                                        {"dla_core": self.options.get("dla_core")})
        except ImportError as exc:
            raise ExportError(f"{self.artifact}: running an engine needs tensorrt and cuda-python: {exc}") from None
        except Exception as exc:  # noqa: BLE001
            raise ExportError(f"{self.artifact}: TensorRT cannot load the engine: {str(exc).splitlines()[0]}") from None
        return self

    def infer(self, batch: np.ndarray) -> np.ndarray:
        if self.runner is None:
            self.load()
        return np.asarray(self.runner(as_batch(batch, self.artifact)), dtype=np.float32)

    def close(self) -> None:
        self.runner = None


def trtexec_path() -> Path | None:
    found = shutil.which("trtexec") or next(
        (p for p in ("/usr/src/tensorrt/bin/trtexec", "/usr/local/TensorRT/bin/trtexec") if os.path.exists(p)), None
    )
    return Path(found) if found else None
