"""A user's own GCN written the way published GCN code is (README "Bring your own model").

Nothing here is written for export: the graph aggregation uses `torch.einsum` with the
equations of ST-GCN / 2s-AGCN / CTR-GCN / MS-G3D code, the residuals are an in-place add and a
`lambda`, the input goes through `torch.autograd.Variable` and `.contiguous().view` as old
code does. edgeskel exports it unchanged: Einsum stays an ONNX Einsum for ONNX Runtime and
OpenVINO and becomes MatMul/Transpose/Reshape for TensorRT (edgeskel/export/einsum.py).
"""

from __future__ import annotations

import torch
import torch.nn as nn
from torch.autograd import Variable


def _chain_adjacency(num_joints: int, subsets: int) -> torch.Tensor:
    """A fixed, row-normalised neighbour graph per subset (self, forward, backward along the joint order)."""
    eye = torch.eye(num_joints)
    fwd = torch.diag(torch.ones(num_joints - 1), 1)
    parts = [eye, fwd, fwd.t()][:subsets]
    a = torch.stack(parts)
    return a / a.sum(-1, keepdim=True).clamp(min=1)


class EinsumGraphConv(nn.Module):
    """Spatial graph convolution in the styles GCN code bases use."""

    def __init__(self, c_in: int, c_out: int, num_joints: int, subsets: int = 3):
        super().__init__()
        self.subsets = subsets
        self.register_buffer("A", _chain_adjacency(num_joints, subsets))
        self.PA = nn.Parameter(torch.zeros(subsets, num_joints, num_joints))  # 2s-AGCN's learned offsets
        self.conv = nn.Conv2d(c_in, c_out * subsets, 1)
        self.theta = nn.Conv2d(c_in, c_out // 4, 1)  # CTR-GCN-style refinement embedding
        self.mix = nn.Conv2d(c_out // 4, c_out, 1)
        self.bn = nn.BatchNorm2d(c_out)
        self.down = (lambda x: x) if c_in == c_out else nn.Conv2d(c_in, c_out, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, t, v = x.size()
        a = self.A + self.PA
        y = self.conv(x).view(n, self.subsets, -1, t, v)
        y = torch.einsum("nkctv,kvw->nctw", (y, a))  # ST-GCN (tuple form)
        e = self.theta(x).mean(2)  # (n, c', v)
        rel = torch.tanh(e.unsqueeze(-1) - e.unsqueeze(-2))  # (n, c', v, v)
        refine = torch.einsum("ncuv,nctv->nctu", self.mix(rel), y)  # CTR-GCN
        y = y + 0.1 * refine
        glob = torch.einsum("nctv,vw->nctw", y, a[0])  # 2s-AGCN / plain GCN
        y = self.bn(glob)
        y += self.down(x)  # in-place residual add
        return torch.relu(y)


class EinsumGCN(nn.Module):
    """Two graph-conv + temporal-conv blocks, global pooling, a linear head over persons."""

    def __init__(self, num_classes: int, num_joints: int, in_channels: int = 3, hidden: int = 32,
                 num_person: int = 1):
        super().__init__()
        self.data_bn = nn.BatchNorm1d(in_channels * num_joints * num_person)
        self.gcn1 = EinsumGraphConv(in_channels, hidden, num_joints)
        self.tcn1 = nn.Conv2d(hidden, hidden, (9, 1), padding=(4, 0))
        self.gcn2 = EinsumGraphConv(hidden, hidden, num_joints)
        self.tcn2 = nn.Conv2d(hidden, hidden, (9, 1), padding=(4, 0))
        self.residual = lambda x: x
        self.head = nn.Linear(hidden, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = Variable(x)  # pre-0.4 PyTorch code still does this
        n, c, t, v, m = x.size()
        x = x.permute(0, 4, 3, 1, 2).contiguous().view(n, m * v * c, t)
        x = self.data_bn(x)
        x = x.view(n, m, v, c, t).permute(0, 1, 3, 4, 2).contiguous().view(n * m, c, t, v)
        x = torch.relu(self.tcn1(self.gcn1(x)))
        x = torch.relu(self.tcn2(self.gcn2(x))) + self.residual(x)
        feat = torch.einsum("nctv->nc", x) / (t * v)  # pooling as an einsum (one operand)
        feat = feat.view(n, m, -1).mean(1)
        return self.head(feat)


def build(num_classes: int, num_joints: int, in_channels: int, num_person: int = 1, hidden: int = 32) -> nn.Module:
    return EinsumGCN(num_classes, num_joints, in_channels, hidden, num_person)
