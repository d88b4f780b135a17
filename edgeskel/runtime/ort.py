"""ONNX Runtime CPU runner (fp32 and QDQ INT8 graphs)."""

from __future__ import annotations

import numpy as np

from edgeskel.errors import ExportError
from edgeskel.runtime._common import as_batch, check_onnx, run_chunked
from edgeskel.runtime.base import Runner, register_runner


def cpu_session_options(threads: int | None = None):
    """SessionOptions every edgeskel ORT session uses (runner, op profiler, INT8 study), so what
    the diagnostics time is what the runner runs: all graph optimizations, `threads` intra-op
    threads and one inter-op thread (the box is shared), warnings off."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads:
        so.intra_op_num_threads = int(threads)
        so.inter_op_num_threads = 1
    so.log_severity_level = 3
    return so


@register_runner("ort")
class OrtRunner(Runner):
    """CPUExecutionProvider, all graph optimizations, `threads` intra-op threads."""

    session = None

    def load(self) -> OrtRunner:
        import onnxruntime as ort

        check_onnx(self.artifact)
        try:
            self.session = ort.InferenceSession(str(self.artifact), cpu_session_options(self.threads),
                                                providers=["CPUExecutionProvider"])
        except Exception as exc:  # noqa: BLE001 - ORT raises its own Fail/InvalidGraph types
            raise ExportError(f"{self.artifact}: onnxruntime cannot load the model: {str(exc).splitlines()[0]}") from None
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        first = inp.shape[0]
        self.fixed_batch = first if isinstance(first, int) and first > 0 else None
        return self

    def infer(self, batch: np.ndarray) -> np.ndarray:
        if self.session is None:
            self.load()
        x = as_batch(batch, self.artifact)
        return run_chunked(lambda b: self.session.run(None, {self.input_name: b})[0], x, self.fixed_batch)

    def close(self) -> None:
        self.session = None
