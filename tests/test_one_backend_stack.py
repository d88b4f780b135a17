"""One implementation per backend (issue 28 item 3): the host Runners wrap the device runner's
infer classes, so session options and the OpenVINO precision hint are decided once and what is
judged here is what a device measures (the host ran fp16 IRs with the f16 hint, the device with
f32)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_export_quant import SPEC, TinyNet

from edgeskel.remote import device_runner as dr
from edgeskel.runtime import get_runner


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    from edgeskel.export.onnx import export_onnx
    from edgeskel.quantize.openvino import to_openvino_ir

    torch.manual_seed(0)
    d = tmp_path_factory.mktemp("stack")
    onnx_path = export_onnx(TinyNet().eval(), SPEC, d / "m.onnx")
    return onnx_path, to_openvino_ir(onnx_path, d / "m.fp16.xml", fp16=True)


@pytest.mark.parametrize("precision", ["fp32", "fp16", "bf16", "int8"])
def test_openvino_hint_is_decided_once(artifacts, precision):
    _, xml = artifacts
    with get_runner("openvino", xml, precision=precision, threads=1) as r:
        assert isinstance(r.impl, dr.OpenVinoInfer)
        device = dr.RUNTIMES["openvino"](xml, precision, 1, {})
        assert r.config == device.config
        assert r.config["INFERENCE_PRECISION_HINT"] == ("bf16" if precision == "bf16" else "f32")


def test_ort_runner_is_the_device_runner_session(artifacts):
    onnx_path, _ = artifacts
    x = np.random.default_rng(0).standard_normal((3, 3, 16, 5, 1)).astype(np.float32)
    with get_runner("ort", onnx_path, threads=1) as r:
        assert isinstance(r.impl, dr.OrtInfer) and r.raw() is r.impl
        so = r.impl.sess.get_session_options()
        assert so.intra_op_num_threads == 1 and so.inter_op_num_threads == 1
        np.testing.assert_array_equal(r.infer(x), dr.RUNTIMES["ort"](onnx_path, "fp32", 1, {})(x))
