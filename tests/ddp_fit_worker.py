"""Run `edgeskel.train.trainer.fit` on a tiny BatchNorm-free model (for tests/test_ddp.py).

Usage: python ddp_fit_worker.py OUT_DIR [--device cpu]   (also under torchrun). Without
BatchNorm every rank computes exactly its share of the 1-process gradient, so a W-process run
must reproduce the 1-process weights to float rounding: this pins the sampler, the gradient
averaging and the gathering of validation metrics, independently of the models' BN layers.
"""

from __future__ import annotations

import sys

import numpy as np
import torch
import torch.nn as nn

from edgeskel.checkpoint import ModelSpec, Preprocess
from edgeskel.layouts import get_layout
from edgeskel.train.config import TrainConfig
from edgeskel.train.device import Runtime
from edgeskel.train.trainer import fit


class PairDataset(torch.utils.data.Dataset):
    def __init__(self, x: np.ndarray, y: np.ndarray) -> None:
        self.x, self.y = x, y

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return torch.from_numpy(self.x[i]), int(self.y[i])


def main(out: str, device: str = "cpu") -> None:
    rng = np.random.default_rng(0)
    layout = get_layout("ntu25")
    shape = (3, 8, layout.num_joints, 1)
    x = rng.standard_normal((40, *shape)).astype(np.float32)
    y = rng.integers(0, 4, 40)
    x[np.arange(40), 0, 0, 0, 0] += 2.0 * y  # learnable signal
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(int(np.prod(shape)), 16), nn.ReLU(), nn.Linear(16, 4))
    spec = ModelSpec(name="mlp-test", num_classes=4, layout=layout, preprocess=Preprocess(num_frames=8, num_person=1))
    cfg = TrainConfig(epochs=3, batch_size=8, optimizer="sgd", lr=0.05, warmup_epochs=0, label_smoothing=0.0,
                      threads=1)
    fit(model, spec, PairDataset(x[:32], y[:32]), (x[32:], y[32:]), cfg, out, quiet=True, resume=False,
        runtime=Runtime(device))


if __name__ == "__main__":
    main(sys.argv[1], *(sys.argv[3:4] if "--device" in sys.argv else []))
