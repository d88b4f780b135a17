"""ONNX Runtime runner (fp32 and QDQ INT8 graphs): the checks and batching of a Runner around the
device runner's `OrtInfer`, the one ORT implementation here and on devices."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from edgeskel.errors import EdgeskelError, ExportError
from edgeskel.remote.device_runner import OrtInfer
from edgeskel.remote.device_runner import ort_session_options as cpu_session_options  # noqa: F401 - public name
from edgeskel.runtime._common import as_batch, check_onnx, run_chunked
from edgeskel.runtime.base import Runner, register_runner


@register_runner("ort")
class OrtRunner(Runner):
    """CPUExecutionProvider (or options["providers"]), all graph optimizations, `threads` threads."""

    impl: OrtInfer | None = None

    def load(self) -> OrtRunner:
        check_onnx(self.artifact)
        try:
            self.impl = OrtInfer(self.artifact, self.precision, self.threads, self.options)
        except Exception as exc:  # noqa: BLE001 - ORT raises its own Fail/InvalidGraph types
            raise ExportError(f"{self.artifact}: onnxruntime cannot load the model: {str(exc).splitlines()[0]}") from None
        self.fixed_batch = self.impl.fixed_batch
        return self

    def infer(self, batch: np.ndarray) -> np.ndarray:
        if self.impl is None:
            self.load()
        x = as_batch(batch, self.artifact)
        try:
            return run_chunked(self.raw(), x, self.fixed_batch)
        except EdgeskelError:
            raise
        except Exception as exc:  # noqa: BLE001 - a damaged graph that loads can still fail in a kernel
            raise ExportError(f"{self.artifact}: onnxruntime cannot run the model: {str(exc).splitlines()[0]}") from None

    def raw(self) -> Callable[[np.ndarray], np.ndarray]:
        if self.impl is None:
            self.load()
        return self.impl

    def close(self) -> None:
        self.impl = None
