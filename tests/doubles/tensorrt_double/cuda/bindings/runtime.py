"""CONTRACT DOUBLE of cuda-python's `cuda.bindings.runtime` (cudart) for the tests: NOT CUDA.

Only the calls edgeskel's device runner makes, with cuda-python's calling convention (every call
returns a tuple whose first item is a cudaError_t): cudaStreamCreate, cudaMalloc, cudaFree,
cudaMemcpyAsync (host<->"device"), cudaStreamSynchronize, and the enums cudaError_t and
cudaMemcpyKind. "Device memory" is host bytearrays keyed by fake addresses; host pointers
(numpy's `.ctypes.data`) are really read and written with ctypes, so a wrong size or address in
the caller shows up as wrong numbers or an error, as it would on a GPU.
"""

from __future__ import annotations

import ctypes
import enum
import itertools

__edgeskel_contract_double__ = True


class cudaError_t(enum.IntEnum):  # noqa: N801 - cuda-python's name
    cudaSuccess = 0
    cudaErrorInvalidValue = 1
    cudaErrorMemoryAllocation = 2


class cudaMemcpyKind(enum.IntEnum):  # noqa: N801
    cudaMemcpyHostToHost = 0
    cudaMemcpyHostToDevice = 1
    cudaMemcpyDeviceToHost = 2
    cudaMemcpyDeviceToDevice = 3


_MEM: dict[int, bytearray] = {}
_ADDR = itertools.count(0x7F0000000000, 0x100000000)
_STREAMS = itertools.count(1)


def cudaStreamCreate():  # noqa: N802
    return (cudaError_t.cudaSuccess, next(_STREAMS))


def cudaMalloc(size: int):  # noqa: N802
    if int(size) <= 0:
        return (cudaError_t.cudaErrorInvalidValue, 0)
    ptr = next(_ADDR)
    _MEM[ptr] = bytearray(int(size))
    return (cudaError_t.cudaSuccess, ptr)


def cudaFree(ptr: int):  # noqa: N802
    return (cudaError_t.cudaSuccess,) if _MEM.pop(int(ptr), None) is not None else (cudaError_t.cudaErrorInvalidValue,)


def cudaMemcpyAsync(dst: int, src: int, count: int, kind: cudaMemcpyKind, stream: int):  # noqa: N802
    count = int(count)
    if kind == cudaMemcpyKind.cudaMemcpyHostToDevice:
        buf = _MEM.get(int(dst))
        if buf is None or len(buf) < count:
            return (cudaError_t.cudaErrorInvalidValue,)
        buf[:count] = ctypes.string_at(int(src), count)
    elif kind == cudaMemcpyKind.cudaMemcpyDeviceToHost:
        buf = _MEM.get(int(src))
        if buf is None or len(buf) < count:
            return (cudaError_t.cudaErrorInvalidValue,)
        ctypes.memmove(int(dst), bytes(buf[:count]), count)
    else:
        return (cudaError_t.cudaErrorInvalidValue,)
    return (cudaError_t.cudaSuccess,)


def cudaStreamSynchronize(stream: int):  # noqa: N802
    return (cudaError_t.cudaSuccess,)


def _device_bytes(ptr: int, nbytes: int) -> bytes:
    """For the tensorrt double: the bytes at a "device" address."""
    buf = _MEM.get(int(ptr))
    if buf is None or len(buf) < nbytes:
        raise RuntimeError(f"invalid device address {ptr:#x} for {nbytes} bytes")
    return bytes(buf[:nbytes])


def _device_write(ptr: int, data: bytes) -> None:
    buf = _MEM.get(int(ptr))
    if buf is None or len(buf) < len(data):
        raise RuntimeError(f"invalid device address {ptr:#x} for {len(data)} bytes")
    buf[: len(data)] = data
