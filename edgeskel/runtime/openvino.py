"""OpenVINO CPU runner for IR (.xml + .bin) or ONNX files.

Precision: this CPU runs OpenVINO in bf16 by default (TOOLCHAIN.md), so we always pass an
explicit INFERENCE_PRECISION_HINT: f32 unless `precision` is 'bf16' or 'fp16'. Note that an
IR saved with compressed fp16 weights still computes in f32 with the f32 hint.
"""

from __future__ import annotations

import numpy as np

from edgeskel.errors import ExportError
from edgeskel.runtime._common import as_batch, check_file, check_onnx, run_chunked
from edgeskel.runtime.base import Runner, register_runner

HINTS = {"fp32": "f32", "int8": "f32", "bf16": "bf16", "fp16": "f16"}


@register_runner("openvino")
class OpenVinoRunner(Runner):
    compiled = None

    def load(self) -> OpenVinoRunner:
        import openvino as ov

        suffix = self.artifact.suffix.lower()
        if suffix == ".onnx":
            check_onnx(self.artifact)
        elif suffix == ".xml":
            check_file(self.artifact, "OpenVINO IR")
            check_file(self.artifact.with_suffix(".bin"), "OpenVINO IR weights (.bin)")
        else:
            raise ExportError(f"{self.artifact}: OpenVINO runner needs a .xml IR or an .onnx file")
        if self.precision not in HINTS:
            raise ExportError(f"{self.artifact}: unsupported OpenVINO precision {self.precision!r}; use {sorted(HINTS)}")
        config = {"INFERENCE_PRECISION_HINT": self.options.get("hint", HINTS[self.precision]),
                  "PERFORMANCE_HINT": "LATENCY"}
        if self.threads:
            config["INFERENCE_NUM_THREADS"] = int(self.threads)
        core = ov.Core()
        try:
            model = core.read_model(str(self.artifact))
            self.compiled = core.compile_model(model, "CPU", config)
        except Exception as exc:  # noqa: BLE001 - OpenVINO raises RuntimeError subclasses
            raise ExportError(f"{self.artifact}: OpenVINO cannot load the model: {str(exc).splitlines()[0]}") from None
        self.request = self.compiled.create_infer_request()
        shape = self.compiled.input(0).get_partial_shape()
        self.fixed_batch = shape[0].get_length() if shape[0].is_static else None
        self.config = config
        return self

    def infer(self, batch: np.ndarray) -> np.ndarray:
        if self.compiled is None:
            self.load()
        x = as_batch(batch, self.artifact)

        def run(b: np.ndarray) -> np.ndarray:
            res = self.request.infer({0: b})
            return np.array(res[self.compiled.output(0)], dtype=np.float32)

        return run_chunked(run, x, self.fixed_batch)

    def close(self) -> None:
        self.compiled = None
        self.request = None
