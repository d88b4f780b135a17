"""OpenVINO runner for IR (.xml + .bin) or ONNX files: the checks and batching of a Runner around
the device runner's `OpenVinoInfer`, the one OpenVINO implementation here and on devices (which
decides the precision hint: see its docstring)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from edgeskel.errors import ExportError
from edgeskel.remote.device_runner import OpenVinoInfer
from edgeskel.runtime._common import as_batch, check_file, check_onnx, run_chunked
from edgeskel.runtime.base import Runner, register_runner

HINTS = OpenVinoInfer.HINTS


@register_runner("openvino")
class OpenVinoRunner(Runner):
    impl: OpenVinoInfer | None = None

    def load(self) -> OpenVinoRunner:
        suffix = self.artifact.suffix.lower()
        if suffix == ".onnx":
            check_onnx(self.artifact)
        elif suffix == ".xml":
            check_file(self.artifact, "OpenVINO IR")
            check_file(self.artifact.with_suffix(".bin"), "OpenVINO IR weights (.bin)")
        else:
            raise ExportError(f"{self.artifact}: OpenVINO runner needs a .xml IR or an .onnx file")
        if self.precision not in HINTS:
            raise ExportError(f"{self.artifact}: unsupported OpenVINO precision {self.precision!r}; "
                              f"use one of {', '.join(sorted(HINTS))}")
        options = dict(self.options)
        if "hint" in options:  # an explicit hint for one study (bench), never the default
            options["config"] = {**(options.get("config") or {}), "INFERENCE_PRECISION_HINT": options.pop("hint")}
        try:
            self.impl = OpenVinoInfer(self.artifact, self.precision, self.threads, options)
        except Exception as exc:  # noqa: BLE001 - OpenVINO raises RuntimeError subclasses
            raise ExportError(f"{self.artifact}: OpenVINO cannot load the model: {str(exc).splitlines()[0]}") from None
        self.fixed_batch, self.config = self.impl.fixed_batch, self.impl.config
        return self

    def infer(self, batch: np.ndarray) -> np.ndarray:
        if self.impl is None:
            self.load()
        run = self.raw()
        return run_chunked(lambda b: np.array(run(b), dtype=np.float32), as_batch(batch, self.artifact), self.fixed_batch)

    def raw(self) -> Callable[[np.ndarray], np.ndarray]:
        if self.impl is None:
            self.load()
        return self.impl

    def close(self) -> None:
        self.impl = None
