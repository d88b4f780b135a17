"""Compression on the real zoo: factorize, save as a self-describing checkpoint, reload
without the recipe, export to ONNX and run in ONNX Runtime with fp32 parity."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch

from edgeskel import models
from edgeskel.checkpoint import ModelSpec, Preprocess, load_checkpoint, save_checkpoint
from edgeskel.compress import CompressionConfig, compress_model
from edgeskel.layouts import get_layout


@pytest.mark.parametrize("name", ["stgcn", "ctrgcn", "hyperformer"])
def test_compressed_zoo_model_round_trips_and_exports(name, tmp_path):
    torch.manual_seed(0)
    layout = get_layout("kinect20")
    kwargs = {"num_person": 1, "width": 1.0, "num_stages": 2}
    net = models.build(name, 5, layout, **kwargs).eval()
    spec = ModelSpec(name=name, num_classes=5, layout=layout, kwargs=kwargs, preprocess=Preprocess(num_frames=16, num_person=1))
    calib = [torch.randn(4, 3, 16, 20, 1) for _ in range(2)]
    cfg = CompressionConfig(policy="fixed", ratio=0.5, data_aware=True, calib_batches=2, min_params=512)
    small, report = compress_model(net, cfg, (1, 3, 16, 20, 1), calib)
    assert report["totals"]["params_after"] < report["totals"]["params_before"]
    assert any(layer["status"] == "factorized" for layer in report["layers"])
    cspec = ModelSpec(**{**spec.__dict__, "compression": {"plan": report["plan"], "policy": report["policy"]}})
    save_checkpoint(tmp_path / "c.ckpt", small, cspec)
    reloaded, rspec, _ = load_checkpoint(tmp_path / "c.ckpt")
    x = torch.randn(2, 3, 16, 20, 1)
    with torch.no_grad():
        ref = small.eval()(x)
        assert torch.equal(reloaded(x), ref)

    from edgeskel.export.onnx import export_onnx
    from edgeskel.runtime import get_runner

    path = export_onnx(reloaded, rspec, tmp_path / "c.onnx")
    assert not [n for n in onnx.load(str(path)).graph.node if n.op_type == "Einsum"]
    with get_runner("ort", path, threads=1) as r:
        out = r.infer(x.numpy())
    np.testing.assert_allclose(out, ref.numpy(), rtol=0, atol=1e-4)
