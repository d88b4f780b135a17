"""PyTorch eager runner: the reference every exported artifact is compared against."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from edgeskel.runtime._common import as_batch, check_file
from edgeskel.runtime.base import Runner, register_runner


@register_runner("torch")
class TorchRunner(Runner):
    """Artifact: an edgeskel checkpoint. Pass `model=` (an nn.Module) to run an in-memory model."""

    def __init__(self, artifact, precision: str = "fp32", threads: int | None = None, **options: Any):
        super().__init__(artifact, precision, threads, **options)
        self.model: torch.nn.Module | None = options.get("model")

    def load(self) -> TorchRunner:
        if self.model is None:
            from edgeskel.checkpoint import load_checkpoint

            check_file(self.artifact, "checkpoint")
            self.model, _, _ = load_checkpoint(self.artifact)
        self.model.eval()
        if self.threads:
            torch.set_num_threads(int(self.threads))
        return self

    def infer(self, batch: np.ndarray) -> np.ndarray:
        if self.model is None:
            self.load()
        x = torch.from_numpy(as_batch(batch, self.artifact))
        with torch.inference_mode():
            return self.model(x).float().cpu().numpy()

    def close(self) -> None:
        self.model = None
