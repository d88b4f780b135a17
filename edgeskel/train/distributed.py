"""torchrun / DDP plumbing: process group, rank-0-writes + barrier, gathering, global batches.

Why: under `torchrun` every rank runs the same command. Only rank 0 may write files; the others
must wait at a barrier before they read what rank 0 wrote (best.ckpt), and every rank must see
the same validation metrics so they agree on "best epoch". `--batch-size` is the *global* batch
(split evenly over ranks) so a recipe means the same thing on 1 or N processes, and the
`GlobalBatchSampler` makes rank r see exactly its slice of the batches a 1-process run sees.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import Sampler

from edgeskel.errors import ConfigError


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init(device: torch.device) -> tuple[int, int]:
    """(rank, world_size); starts the process group (NCCL on GPU, gloo on CPU) under torchrun."""
    if launched_by_torchrun() and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
            dist.init_process_group("nccl", device_id=device, timeout=timedelta(minutes=30))
        else:
            dist.init_process_group("gloo", timeout=timedelta(minutes=30))
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def world() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def is_main() -> bool:
    """True on rank 0 (or without torchrun): the one process that writes files and prints."""
    return rank() == 0 and int(os.environ.get("RANK", "0")) == 0


def barrier() -> None:
    """Everyone waits here until rank 0 has finished writing (no-op without torchrun)."""
    if launched_by_torchrun() and not dist.is_initialized():
        raise RuntimeError("edgeskel bug: barrier() under torchrun before distributed.init()")
    if world() > 1:
        dist.barrier()


def all_true(flag: bool, device: torch.device) -> bool:
    """True only if `flag` holds on every rank (so all ranks take the same branch)."""
    if world() == 1:
        return flag
    t = torch.tensor([1 if flag else 0], dtype=torch.int32, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MIN)
    return bool(t.item())


def all_sum(values: list[float], device: torch.device) -> list[float]:
    """Element-wise sum over ranks (float64)."""
    if world() == 1:
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def shard(n: int) -> np.ndarray:
    """Indices of n items this rank handles (contiguous blocks; rank 0 gets any extra)."""
    bounds = np.linspace(0, n, world() + 1).astype(int)
    return np.arange(bounds[rank()], bounds[rank() + 1])


def gather_rows(local: np.ndarray) -> np.ndarray:
    """Concatenate each rank's rows in rank order (matches `shard`); every rank gets the result."""
    if world() == 1:
        return local
    parts: list[Any] = [None] * world()
    dist.all_gather_object(parts, local)
    return np.concatenate([p for p in parts if len(p)] or [local])


def per_rank_batch(global_batch: int) -> int:
    """The per-process batch for a global batch; it must split evenly over the ranks."""
    w = world()
    if global_batch % w:
        raise ConfigError(f"batch_size {global_batch} is the global batch and must be divisible by the "
                          f"{w} torchrun processes; use a multiple of {w}")
    return global_batch // w


class GlobalBatchSampler(Sampler[list[int]]):
    """Batches of the 1-process run (same sampler, same generator), each cut into `world` equal
    slices; rank r yields slice r. With world=1 this is exactly DataLoader's own BatchSampler."""

    def __init__(self, sampler: Sampler[int], global_batch: int, drop_last: bool, rank_: int, world_: int) -> None:
        self.sampler, self.batch, self.drop_last, self.rank, self.world = sampler, global_batch, drop_last, rank_, world_

    def __iter__(self) -> Iterator[list[int]]:
        step = self.batch // self.world
        buf: list[int] = []
        for i in self.sampler:
            buf.append(i)
            if len(buf) == self.batch:
                yield buf[self.rank * step:(self.rank + 1) * step]
                buf = []
        if buf and not self.drop_last:
            yield np.array_split(np.asarray(buf), self.world)[self.rank].tolist()

    def __len__(self) -> int:
        n = len(self.sampler)  # type: ignore[arg-type]
        return n // self.batch if self.drop_last else -(-n // self.batch)
