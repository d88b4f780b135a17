"""INT8 is judged on its agreement with the float model over unlabelled clips too (issue 26
item 3): a small labelled slice that cannot see the damage no longer lets a variant through."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from test_export_quant import SPEC, TinyNet, torch_ref

from edgeskel.export.api import export_variant
from edgeskel.export.onnx import export_onnx
from edgeskel.quantize.int8_search import quantize_with_fallback
from edgeskel.validate.agreement import agreement_gate


def test_agreement_gate_counts_flips_against_the_drop_budget():
    f = np.array([[2.0, 0.0], [0.0, 2.0], [2.0, 0.0], [0.0, 2.0]], np.float32)
    q = f.copy()
    q[0] = [0.0, 2.0]  # one flip in four
    g = agreement_gate(q, f, max_drop=0.25)
    assert g["flip_rate"] == 0.25 and g["agreement"] == 0.75 and g["passed"] and g["samples"] == 4
    assert not agreement_gate(q, f, max_drop=0.2)["passed"]
    q[1, 0] = np.nan
    assert not agreement_gate(q, f, max_drop=1.0)["passed"]  # non-finite INT8 output never passes
    with pytest.raises(ValueError):
        agreement_gate(q[:2], f, 0.1)


@pytest.fixture(scope="module")
def setting(tmp_path_factory):
    """A tiny model whose predictions are close calls on many inputs (sharpened, centred head) and
    whose first input channel spans 30x the range of the others (per-tensor INT8 of the input
    then loses the small channels): INT8 flips a share of the close calls."""
    torch.manual_seed(0)
    model = TinyNet().eval()
    x = np.random.default_rng(0).standard_normal((400, 3, 16, 5, 1)).astype(np.float32)
    with torch.no_grad():
        model.fc.weight *= 50
        model.fc.bias -= torch.from_numpy(torch_ref(model, x).mean(0))
        model.c1.weight[:, 0] /= 30
    x[:, 0] *= 30
    onnx_path = export_onnx(model, SPEC, tmp_path_factory.mktemp("agree") / "m.onnx")
    ref = torch_ref(model, x)
    top2 = np.sort(ref, 1)[:, -2:]
    order = np.argsort(top2[:, 1] - top2[:, 0])  # closest calls first
    return model, x, onnx_path, order


def test_unlabelled_flips_drive_the_fallback_a_small_slice_would_pass(setting, tmp_path):
    """Four clear-cut labelled clips see no damage; 128 unlabelled close calls see INT8 flip
    predictions, so the search keeps going (nodes kept in float) until the flips are within budget."""
    model, x, onnx_path, order = setting
    calib = x[order[200:216]]
    val, ux = x[order[-4:]], x[order[:128]]
    ref, uref = torch_ref(model, val), torch_ref(model, ux)
    small = quantize_with_fallback(onnx_path, tmp_path / "a.onnx", calib, val, ref.argmax(1), ref, max_drop=0.01)
    both = quantize_with_fallback(onnx_path, tmp_path / "b.onnx", calib, val, ref.argmax(1), ref, max_drop=0.01,
                                  unlabelled=(ux, uref))
    first = both["rounds"][0]
    assert first["drop"] == 0.0 and first["unlabelled"]["flip_rate"] > 0.01  # the slice alone would pass
    assert small["status"] == "passed" and len(small["rounds"]) == 1
    assert len(both["rounds"]) > 1 and both["excluded_nodes"]
    u = both["gate"]["unlabelled"]
    assert u["samples"] == 128 and u["flip_rate"] < first["unlabelled"]["flip_rate"]
    assert (both["status"] == "passed") == (u["flip_rate"] <= 0.01)


def test_export_variant_records_the_unlabelled_gate_for_ort_and_openvino(tmp_path):
    torch.manual_seed(0)
    model = TinyNet().eval()  # undamaged: this test is about what export.json records
    x = np.random.default_rng(1).standard_normal((112, 3, 16, 5, 1)).astype(np.float32)
    val = x[16:48]
    labels = torch_ref(model, val).argmax(1)
    for backend in ("ort", "openvino"):
        res = export_variant(model, SPEC, backend, "int8", tmp_path / backend, calib=x[:16], val=(val, labels),
                             options={"threads": 1, "max_drop": 90.0}, unlabelled=x[48:112])
        rec = json.loads((tmp_path / backend / "export.json").read_text())
        gate = rec["accuracy_gate"]
        u = gate["unlabelled"] if backend == "openvino" else gate["gate"]["unlabelled"]
        assert u["samples"] == 64 and u["max_flip_rate"] == 0.9 and u["passed"], u
        assert "_unlabelled" not in rec["options"] and res["status"] == "passed"


def test_pipeline_and_tune_build_the_same_export_options_and_unlabelled_clips():
    """One definition (pipeline/stages.py) for both: the TensorRT route options, the gate, and
    the unlabelled clips only for INT8 and only when export.agreement_samples > 0."""
    from edgeskel.devices import load_profile
    from edgeskel.pipeline import stages, steps
    from edgeskel.recipe import load_recipe, with_overrides

    rec, path = load_recipe("default")
    rec = with_overrides(rec, None, "synthetic?classes=3&per_class=6&test_per_class=2&frames=16", source=path)
    prof = load_profile("jetson-orin")
    dla = next(v for v in prof.variants if v.backend == "tensorrt" and v.precision == "int8"
               and (v.options or {}).get("dla_core") is not None)
    opts = stages.variant_export_options(prof, rec, dla)
    assert opts["dla_core"] == dla.options["dla_core"] and opts["max_drop"] == prof.gates.max_top1_drop
    ds = steps.load_data(rec)
    clips = stages.UnlabelledClips(rec, ds, prof.variants)
    assert clips("fp16") is None
    x = clips("int8")
    assert x is not None and len(x) == rec.export.agreement_samples and clips.info["augmented"] > 0
    off = rec.model_copy(update={"export": rec.export.model_copy(update={"agreement_samples": 0})})
    assert stages.UnlabelledClips(off, ds, prof.variants)("int8") is None
