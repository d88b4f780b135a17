"""A user's own GCN that streams (docs/STREAMING.md "Your own module").

Written the way GCN code bases write it -- shapes unpacked from `x.size()`, a data BN over
(persons x joints x channels), `torch.einsum` graph aggregation, a strided temporal conv with a
strided 1x1 residual, a multi-branch temporal block (dilations 1 and 2, concatenated), a max
pool along T, and the usual global average pool -- with nothing written for streaming.
edgeskel traces its forward, finds every op that looks along T by measurement and streams it.
A mean over T inside a block (CTR-GCN's topology, `einsum_gcn.py`) would be refused, naming
that op.
"""

from __future__ import annotations

import torch
import torch.nn as nn


def _adjacency(num_joints: int) -> torch.Tensor:
    """Self, forward and backward neighbours along the joint order, row-normalised."""
    eye = torch.eye(num_joints)
    fwd = torch.diag(torch.ones(num_joints - 1), 1)
    a = torch.stack([eye, fwd, fwd.t()])
    return a / a.sum(-1, keepdim=True).clamp(min=1)


class GraphConv(nn.Module):
    def __init__(self, c_in: int, c_out: int, num_joints: int):
        super().__init__()
        self.register_buffer("A", _adjacency(num_joints))
        self.edge = nn.Parameter(torch.ones(3, num_joints, num_joints))
        self.conv = nn.Conv2d(c_in, c_out * 3, 1)
        self.bn = nn.BatchNorm2d(c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, t, v = x.size()
        y = self.conv(x).view(n, 3, -1, t, v)
        return self.bn(torch.einsum("nkctv,kvw->nctw", y, self.A * self.edge))


class Block(nn.Module):
    """relu(tcn(gcn(x)) + residual(x)); the temporal conv may stride."""

    def __init__(self, c_in: int, c_out: int, num_joints: int, stride: int = 1):
        super().__init__()
        self.gcn = GraphConv(c_in, c_out, num_joints)
        self.tcn = nn.Sequential(nn.ReLU(), nn.Conv2d(c_out, c_out, (9, 1), (stride, 1), (4, 0)), nn.BatchNorm2d(c_out))
        if c_in == c_out and stride == 1:
            self.residual = nn.Identity()
        else:
            self.residual = nn.Sequential(nn.Conv2d(c_in, c_out, 1, (stride, 1)), nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.tcn(self.gcn(x)) + self.residual(x))


class MultiDilation(nn.Module):
    """Two dilated temporal branches and a max-pool branch, concatenated (MS-TCN style)."""

    def __init__(self, channels: int):
        super().__init__()
        c = channels // 4
        self.b1 = nn.Conv2d(channels, c, (3, 1), padding=(1, 0))
        self.b2 = nn.Conv2d(channels, c, (3, 1), padding=(2, 0), dilation=(2, 1))
        self.b3 = nn.Sequential(nn.Conv2d(channels, channels - 2 * c, 1), nn.MaxPool2d((3, 1), 1, (1, 0)))
        self.bn = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.bn(torch.cat([self.b1(x), self.b2(x), self.b3(x)], dim=1)) + x)


class StreamGCN(nn.Module):
    def __init__(self, num_classes: int, num_joints: int, in_channels: int = 3, num_person: int = 2,
                 hidden: int = 32):
        super().__init__()
        self.data_bn = nn.BatchNorm1d(in_channels * num_joints * num_person)
        self.blocks = nn.ModuleList([Block(in_channels, hidden, num_joints), Block(hidden, hidden * 2, num_joints, 2),
                                     Block(hidden * 2, hidden * 2, num_joints)])
        self.multi = MultiDilation(hidden * 2)
        self.fc = nn.Linear(hidden * 2, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, t, v, m = x.size()
        x = x.permute(0, 4, 3, 1, 2).contiguous().view(n, m * v * c, t)
        x = self.data_bn(x)
        x = x.view(n, m, v, c, t).permute(0, 1, 3, 4, 2).contiguous().view(n * m, c, t, v)
        for block in self.blocks:
            x = block(x)
        x = self.multi(x)
        x = nn.functional.avg_pool2d(x, x.size()[2:])
        x = x.view(n, m, -1).mean(1)
        return self.fc(x)


def build(num_classes: int, num_joints: int, in_channels: int, num_person: int = 2, hidden: int = 32) -> nn.Module:
    return StreamGCN(num_classes, num_joints, in_channels, num_person, hidden)
