"""An example of bringing your own model to edgeskel (see README "Bring your own model").

Any function returning a torch.nn.Module that maps (N, C, T, V, M) skeletons to (N, K) logits
works. edgeskel passes the recipe's `model.kwargs`, plus whichever of `num_classes`,
`num_joints`, `in_channels`, `num_person`, `layout` the function's signature names.
Avoid Python that depends on input values in forward (the ONNX trace freezes it);
`torch.einsum` is fine (see einsum_gcn.py), and `edgeskel check` tells in seconds whether every
backend of a device takes the model.
"""

from __future__ import annotations

import torch
import torch.nn as nn


class TinyGCN(nn.Module):
    """Pointwise embedding, learnable joint mixing (a dense "graph"), a 9x1 temporal conv,
    global pooling over T, V and persons, a linear head."""

    def __init__(self, num_classes: int, num_joints: int, in_channels: int = 3, hidden: int = 64):
        super().__init__()
        self.embed = nn.Conv2d(in_channels, hidden, 1)
        self.joint_mix = nn.Linear(num_joints, num_joints)  # acts on the last axis (V)
        self.temporal = nn.Conv2d(hidden, hidden, (9, 1), padding=(4, 0))
        self.bn = nn.BatchNorm2d(hidden)
        self.head = nn.Linear(hidden, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, t, v, m = x.shape
        x = x.permute(0, 4, 1, 2, 3).reshape(n * m, c, t, v)
        x = torch.relu(self.joint_mix(torch.relu(self.embed(x))))
        x = torch.relu(self.bn(self.temporal(x)))
        return self.head(x.reshape(n, m, x.shape[1], t * v).mean(3).mean(1))


def build(num_classes: int, num_joints: int, in_channels: int, hidden: int = 64) -> nn.Module:
    return TinyGCN(num_classes, num_joints, in_channels, hidden)
