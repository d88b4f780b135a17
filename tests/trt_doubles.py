"""Put the TensorRT CONTRACT DOUBLES (tests/doubles) on PATH / PYTHONPATH, for tests only.

`trtexec` becomes tests/doubles/trtexec_double.py and `import tensorrt` / `import cuda` the
runtime doubles, both standing for the TensorRT version given. Nothing they produce is a TensorRT
measurement: they check that edgeskel's build scripts, bundles and runner keep TensorRT's
documented contract (flags, engine files, runtime API), with ONNX Runtime computing the logits.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

DOUBLES = Path(__file__).resolve().parent / "doubles"


@dataclass
class TrtDoubles:
    bin_dir: Path  # holds `trtexec`
    env: dict[str, str]  # environment a device process needs to find the doubles
    python: Path  # a python wrapper with that environment (for ssh.python / by-hand runs)
    version: str


def install(tmp: Path, version: str = "10.3.0") -> TrtDoubles:
    bin_dir = tmp / "trt-double-bin"
    bin_dir.mkdir(parents=True, exist_ok=True)
    trtexec = bin_dir / "trtexec"
    trtexec.write_text(f"#!/bin/sh\nexec {sys.executable} {DOUBLES / 'trtexec_double.py'} \"$@\"\n")
    trtexec.chmod(0o755)
    env = {"PATH": f"{bin_dir}:{os.environ.get('PATH', '/usr/bin:/bin')}",
           "PYTHONPATH": str(DOUBLES / "tensorrt_double"),
           "TENSORRT_DOUBLE_VERSION": version, "TRTEXEC_DOUBLE_VERSION": version}
    python = tmp / "python-with-trt-doubles"
    exports = " ".join(f"{k}='{v}'" for k, v in env.items())
    python.write_text(f"#!/bin/sh\nexport {exports}\nexec {sys.executable} \"$@\"\n")
    python.chmod(0o755)
    return TrtDoubles(bin_dir, env, python, version)
