"""Where training runs: `--device auto|cpu|cuda[:N]`, mixed precision and data-loader settings.

Why one small module: train, eval, fine-tune (compress) and sweep all take the same `--device`
and must resolve it the same way, including under torchrun, where `auto`/`cuda` means "the GPU
named by LOCAL_RANK". The CPU path never changes numerics (no autocast, no worker processes
unless asked), so CPU results stay bit-identical to a run without these options.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any

import torch

from edgeskel.errors import ConfigError

DEVICE_HELP = "auto (GPU if CUDA is available, else CPU), cpu, cuda or cuda:N; under torchrun auto/cuda use LOCAL_RANK"
_DEVICE_RE = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")


@dataclass(frozen=True)
class Runtime:
    """How to run a training loop; not part of the schedule (a resume may change device).

    device: auto | cpu | cuda | cuda:N. amp: mixed precision on GPU (bf16 where the GPU supports
    it, else fp16 with a GradScaler); ignored on CPU. workers: DataLoader worker processes
    (None: 0 on CPU, min(8, cores per process) on GPU).
    """

    device: str = "auto"
    amp: bool = True
    workers: int | None = None


def check_device_spec(spec: str) -> str:
    """Validate the text of a --device value (raises ConfigError)."""
    spec = (spec or "auto").strip().lower()
    if not _DEVICE_RE.match(spec):
        raise ConfigError(f"--device {spec!r}: expected auto, cpu, cuda or cuda:N")
    return spec


def resolve_device(spec: str = "auto", local_rank: int | None = None) -> torch.device:
    """A torch.device for `spec`; under torchrun `auto` and bare `cuda` pick cuda:LOCAL_RANK."""
    spec = check_device_spec(spec)
    if local_rank is None:
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if spec == "cpu":
        return torch.device("cpu")
    if spec == "auto" and not torch.cuda.is_available():
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise ConfigError(f"--device {spec}: CUDA is not available here (torch {torch.__version__}); use --device cpu")
    count = torch.cuda.device_count()
    index = int(spec.split(":")[1]) if ":" in spec else local_rank % count
    if index >= count:
        raise ConfigError(f"--device {spec}: only {count} CUDA device(s) visible (cuda:0..cuda:{count - 1})")
    return torch.device("cuda", index)


def amp_dtype(device: torch.device, amp: bool = True) -> torch.dtype | None:
    """bf16 on GPUs that support it, fp16 on older ones, None (full fp32) on CPU or amp=False."""
    if not amp or device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def loader_settings(device: torch.device, workers: int | None, world: int = 1) -> dict[str, Any]:
    """DataLoader keyword arguments that keep a GPU fed; on CPU the defaults stay in-process.

    Augmentation is seeded per sample (seed, epoch, index), so workers never change results.
    """
    if workers is None:
        workers = 0 if device.type == "cpu" else max(0, min(8, (os.cpu_count() or 1) // max(1, world) - 1))
    kw: dict[str, Any] = {"num_workers": int(workers), "pin_memory": device.type == "cuda"}
    if workers > 0:
        kw["prefetch_factor"] = 4
    return kw


def describe(device: torch.device, amp: bool = True) -> str:
    """One short line for progress output and JSON: 'cuda:0 (NVIDIA H100, bf16)' or 'cpu'."""
    if device.type != "cuda":
        return "cpu"
    dt = amp_dtype(device, amp)
    return f"{device} ({torch.cuda.get_device_name(device)}, {str(dt).replace('torch.', '') if dt else 'fp32'})"
