"""Any T: every registered model runs any number of frames (PyTorch, and ONNX exported with a
dynamic T axis), and `predict` accepts another T than the checkpoint's preprocessing unless
the registry says the architecture needs a fixed T."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from edgeskel import models
from edgeskel.checkpoint import ModelSpec, Preprocess
from edgeskel.errors import DataError
from edgeskel.layouts import get_layout
from edgeskel.predict import check_input_shape

torch.set_num_threads(1)
NAMES = models.available_models()


def _tiny(name: str, persons: int = 2):
    kw = dict(models.model_entry(name).tiny or {"width": 0.25})
    layout = kw.pop("layout", "ntu25")
    return models.build(name, 4, layout, num_person=persons, **kw).eval(), get_layout(layout)


@pytest.mark.parametrize("name", NAMES)
def test_model_runs_any_number_of_frames(name):
    model, lay = _tiny(name)
    with torch.no_grad():
        for t in (9, 20, 37):
            y = model(torch.randn(2, lay.channels, t, lay.num_joints, 2))
            assert y.shape == (2, 4) and torch.isfinite(y).all()


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_onnx_with_dynamic_frames(name, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    model, lay = _tiny(name)
    x = torch.randn(2, lay.channels, 32, lay.num_joints, 2)
    torch.onnx.export(model, (x,), str(tmp_path / "m.onnx"), input_names=["x"], dynamo=True, verbose=False,
                      dynamic_shapes=({0: torch.export.Dim("batch"), 2: torch.export.Dim("T", min=8, max=1024)},))
    sess = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    for t in (20, 52):
        xi = np.random.default_rng(t).standard_normal((3, lay.channels, t, lay.num_joints, 2)).astype(np.float32)
        with torch.no_grad():
            ref = model(torch.from_numpy(xi)).numpy()
        np.testing.assert_allclose(sess.run(None, {"x": xi})[0], ref, rtol=0, atol=1e-4)


def _spec() -> ModelSpec:
    return ModelSpec(name="stgcn", num_classes=4, layout=get_layout("kinect20"),
                     preprocess=Preprocess(num_frames=64, num_person=1))


def test_predict_shape_check_frees_t_only():
    spec = _spec()
    check_input_shape((2, 3, 52, 20, 1), spec, "x.npy")  # another T: fine
    for bad in [(2, 3, 52, 25, 1), (2, 2, 52, 20, 1), (2, 3, 52, 20, 2), (3, 52, 20, 1)]:
        with pytest.raises(DataError, match=r"expected \(N, 3, T, 20, 1\).*any T"):
            check_input_shape(bad, spec, "x.npy")


def test_fixed_frames_architecture_says_so(monkeypatch):
    real = models.model_entry
    monkeypatch.setattr(models, "model_entry", lambda n: dataclasses.replace(real(n), fixed_frames=True))
    spec = _spec()
    check_input_shape((2, 3, 64, 20, 1), spec, "x.npy")
    with pytest.raises(DataError, match=r"expected \(N, 3, 64, 20, 1\).*needs exactly the T it was built for"):
        check_input_shape((2, 3, 52, 20, 1), spec, "x.npy")
