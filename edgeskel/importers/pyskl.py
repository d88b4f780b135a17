"""PYSKL (kennymckormick/pyskl @ 3f6795f257): the GCN family behind `RecognizerGCN`.

Checkpoint: `mmcv.runner.save_checkpoint` writes {"meta", "state_dict"[, "optimizer"]} with
keys `backbone.*` and `cls_head.fc_cls.*` (GCNHead: mean over T, V, then persons, then fc).
Our models use the backbone's key names with `backbone.` stripped and the head renamed to
`fc.`. Which backbone it is, and its variant (ST-GCN's adaptive mode, residual GCN, MS-TCN,
graph mode; widths, depth, scales, windows), is read from keys and shapes:

- `stgcn` / `stgcnpp`: `gcn.N.gcn.conv` (+ `PA` for "importance"/"offset" adaptive graphs);
  ST-GCN++ is STGCN with gcn_adaptive="init", gcn_with_res=True, tcn_type="mstcn".
- `pyskl_ctrgcn`: `net.N.gcn1.convs.*` (PYSKL's CTR-GCN, not the official one).
- `aagcn`: `gcn.N.gcn.conv_d.*`.
- `msg3d`: `gcn3d1.*` / `sgcn1.*`.

PYSKL's `nturgb+d` graph hangs the hand tips off the hands (22->8, 23->8, 24->12, 25->12);
that edge list goes into the model kwargs for ntu25, and every stored fixed graph `A` is
compared with ours by the import core.
"""

from __future__ import annotations

from typing import Any

import torch

from edgeskel.importers.base import (
    ImporterAdapter,
    Inferred,
    RawCheckpoint,
    checkpoint_error,
    classifier,
    count_indexed,
    data_bn_persons,
    register_importer,
    shape_of,
)
from edgeskel.layouts import SkeletonLayout
from edgeskel.models.graph import NTU25_HANDS_TO_WRIST_EDGES, edges_to_kwarg


def backbone_model(keys: set[str]) -> str | None:
    """Which PYSKL backbone these (backbone.-stripped) keys belong to."""
    if "gcn3d1.gcn3d.0.gcn3d.1.A" in keys or any(k.startswith("sgcn1.0.") for k in keys):
        return "msg3d"
    if "net.0.gcn1.convs.0.conv4.weight" in keys:
        return "pyskl_ctrgcn"
    if "gcn.0.gcn.conv_d.0.weight" in keys:
        return "aagcn"
    if "gcn.0.gcn.conv.weight" in keys:
        is_pp = ("gcn.0.gcn.PA" not in keys and "gcn.0.gcn.down.0.weight" in keys
                 and "gcn.0.tcn.transform.2.weight" in keys)
        return "stgcnpp" if is_pp else "stgcn"
    return None


@register_importer
class PysklImporter(ImporterAdapter):
    source = "pyskl"
    description = ("PYSKL (kennymckormick/pyskl, mmcv runner): {meta, state_dict}, keys backbone.* and "
                   "cls_head.fc_cls.*")
    models = ("stgcn", "stgcnpp", "pyskl_ctrgcn", "aagcn", "msg3d")
    head = "cls_head.fc_cls."

    def detect(self, ckpt: RawCheckpoint) -> str | None:
        if f"{self.head}weight" not in ckpt.state:
            return None
        return backbone_model({k[len("backbone."):] for k in ckpt.state if k.startswith("backbone.")})

    def map_keys(self, ckpt: RawCheckpoint, model: str) -> dict[str, torch.Tensor]:
        out = {}
        for k, v in ckpt.state.items():
            if k.startswith("backbone."):
                k = k[len("backbone."):]
            elif k.startswith(self.head):
                k = "fc." + k[len(self.head):]
            out[k] = v
        return out

    def to_source_keys(self, state: dict[str, torch.Tensor], model: str) -> dict[str, Any]:
        sd = {(self.head + k[3:]) if k.startswith("fc.") else "backbone." + k: v for k, v in state.items()}
        return {"meta": {"epoch": 1}, "state_dict": sd}

    def infer(self, state: dict[str, torch.Tensor], model: str, where: str) -> Inferred:
        k = classifier(state, "fc.weight", where)
        if model in ("stgcn", "stgcnpp"):
            return _infer_stgcn(state, model, k, where)
        if model == "pyskl_ctrgcn":
            return _infer_ctrgcn(state, k, where)
        if model == "aagcn":
            return _infer_aagcn(state, k, where)
        return _infer_msg3d(state, k, where)

    def graph_kwargs(self, model: str, layout: SkeletonLayout) -> dict[str, Any]:
        return {"edges": edges_to_kwarg(NTU25_HANDS_TO_WRIST_EDGES)} if layout.name == "ntu25" else {}


def _stages(state: dict[str, torch.Tensor], prefix: str, out: dict[str, Any]) -> None:
    n = count_indexed(state, prefix)
    if n != 10:
        out["num_stages"] = n


def _data_bn(state: dict[str, torch.Tensor], v: int, c: int, where: str, default: str) -> tuple[int | None, dict]:
    """(persons or None, kwargs) from PYSKL's input BN over V*C ("VC": persons not stored) or
    M*V*C ("MVC") channels; `default` is the backbone's default type."""
    m = data_bn_persons(state, "data_bn.weight", v, c, where)
    if default == "VC":
        return (None, {}) if m == 1 else (m, {"data_bn_type": "MVC"})
    return m, {}


def _infer_stgcn(state: dict[str, torch.Tensor], model: str, k: int, where: str) -> Inferred:
    a = state.get("gcn.0.gcn.A")
    if a is None or a.dim() != 3:
        raise checkpoint_error(where, "expected the graph gcn.0.gcn.A (K, V, V)")
    v = int(a.shape[-1])
    conv = shape_of(state, "gcn.0.gcn.conv.weight", 4, where)
    c = conv[1]
    kw: dict[str, Any] = {}
    base = conv[0] // int(a.shape[0])
    if base != 64:
        kw["base_channels"] = base
    _stages(state, "gcn.", kw)
    if c == base:  # PYSKL skips the separate input block when in_channels == base_channels
        kw["num_stages"] = kw.get("num_stages", 10) + 1
    if model == "stgcn":
        if "gcn.0.gcn.PA" in state:
            pa = state["gcn.0.gcn.PA"].float()
            kw["gcn_adaptive"] = "importance" if float(pa.mean()) > 0.5 else "offset"
        else:
            kw["gcn_adaptive"] = "init"
        if "gcn.0.gcn.down.0.weight" in state or any(".gcn.down." in key for key in state):
            kw["gcn_with_res"] = True
        if "gcn.0.tcn.transform.2.weight" in state:
            kw["tcn_type"] = "mstcn"
        a0 = a[0].float()
        kw["graph"] = "spatial" if float(torch.diagonal(a0).mean()) > 0.75 else "stgcn_spatial"
        kw = {key: val for key, val in kw.items()
              if (key, val) not in (("gcn_adaptive", "importance"), ("graph", "stgcn_spatial"))}
    m, bn_kw = _data_bn(state, v, c, where, "VC")
    return Inferred(k, v, c, m, {**kw, **bn_kw})


def _infer_ctrgcn(state: dict[str, torch.Tensor], k: int, where: str) -> Inferred:
    v = shape_of(state, "net.0.gcn1.A", 3, where)[-1]
    conv3 = shape_of(state, "net.0.gcn1.convs.0.conv3.weight", 4, where)
    kw: dict[str, Any] = {}
    if conv3[0] != 64:
        kw["base_channels"] = conv3[0]
    _stages(state, "net.", kw)
    m, _ = _data_bn(state, v, conv3[1], where, "MVC")
    return Inferred(k, v, conv3[1], m, kw)


def _infer_aagcn(state: dict[str, torch.Tensor], k: int, where: str) -> Inferred:
    conv = shape_of(state, "gcn.0.gcn.conv_d.0.weight", 4, where)
    a = shape_of(state, "gcn.0.gcn.A", 3, where)
    v, c = a[-1], conv[1]
    kw: dict[str, Any] = {}
    if conv[0] != 64:
        kw["base_channels"] = conv[0]
    _stages(state, "gcn.", kw)
    if "gcn.0.gcn.conv_a.0.weight" not in state:
        kw["adaptive"] = False
    if "gcn.0.gcn.conv_ta.weight" not in state:
        kw["attention"] = False
    m, _ = _data_bn(state, v, c, where, "MVC")
    return Inferred(k, v, c, m, kw)


def _infer_msg3d(state: dict[str, torch.Tensor], k: int, where: str) -> Inferred:
    v = shape_of(state, "A", 2, where)[-1]
    gcn_a = shape_of(state, "sgcn1.0.A", 3, where)
    mlp = shape_of(state, "sgcn1.0.mlp.layers.0.weight", 4, where)
    scales = gcn_a[0]
    c = mlp[1] // scales
    kw: dict[str, Any] = {}
    if mlp[0] != 96:
        kw["base_channels"] = mlp[0]
    if scales != 13:
        kw["num_gcn_scales"] = scales
    windows = []
    for i in range(count_indexed(state, "gcn3d1.gcn3d.")):
        g3 = shape_of(state, f"gcn3d1.gcn3d.{i}.gcn3d.1.A", 3, where)
        windows.append(g3[-1] // v)
        if i == 0 and g3[0] != 6:
            kw["num_g3d_scales"] = g3[0]
    if windows != [3, 5]:
        kw["window_sizes"] = windows
    m, _ = _data_bn(state, v, c, where, "MVC")
    return Inferred(k, v, c, m, kw)
