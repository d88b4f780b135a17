"""File format of the engines the TensorRT CONTRACT DOUBLES write and read (tests only).

A double "engine" is NOT a TensorRT engine: a magic line, one JSON header line (what the
trtexec double was asked to build: TensorRT version, typing, input profile, DLA placement) and
the ONNX model it was built from, which the runtime double runs with ONNX Runtime. Real engines
are opaque, GPU- and version-specific plans; only the contract around them is imitated here.
"""

from __future__ import annotations

import json
from typing import Any

MAGIC = b"EDGESKEL-CONTRACT-DOUBLE-ENGINE/1\n"


def write_engine(path: str, header: dict[str, Any], onnx_bytes: bytes) -> None:
    with open(path, "wb") as fh:
        fh.write(MAGIC + json.dumps(header, sort_keys=True).encode() + b"\n" + onnx_bytes)


def read_engine(data: bytes) -> tuple[dict[str, Any], bytes] | None:
    if not data.startswith(MAGIC):
        return None
    rest = data[len(MAGIC):]
    line, _, onnx_bytes = rest.partition(b"\n")
    try:
        return json.loads(line), onnx_bytes
    except json.JSONDecodeError:
        return None


def major_minor(version: str) -> tuple[int, int]:
    parts = [int(p) for p in str(version).split(".")[:2]]
    return (parts + [0])[0], (parts + [0, 0])[1]
