"""Honest splits in the pipeline: the best epoch (training and fine-tuning), the INT8 gates and
calibration never see a test sample; the report's accuracy is on the test split; a fine-tuned
model that does not beat the factorized one on validation is not deployed."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from test_pipeline_e2e import TINY_RECIPE, tiny_profile

import edgeskel.export as export_pkg
import edgeskel.train.trainer as trainer
from edgeskel.checkpoint import load_checkpoint
from edgeskel.pipeline import run_pipeline, steps
from edgeskel.recipe import Recipe
from edgeskel.report.lines import selection_lines
from edgeskel.train.metrics import accuracy_summary, predict_logits


def _rows(x: np.ndarray) -> set[bytes]:
    return {np.ascontiguousarray(r).tobytes() for r in x}


def test_selection_gates_and_calibration_never_read_the_test_split(tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    seen: dict[str, list] = {"fit_val": [], "fit_train_names": [], "gate_val": [], "calib": []}
    real_fit, real_export = trainer.fit, export_pkg.export_variant

    def spy_fit(model, spec, train_set, val, *a, **k):  # noqa: ANN001, ANN002, ANN003
        seen["fit_val"].append(val[0])
        seen["fit_train_names"].append(list(train_set.set.names))
        return real_fit(model, spec, train_set, val, *a, **k)

    def spy_export(*a, **k):  # noqa: ANN002, ANN003
        seen["gate_val"].append(k["val"][0])
        seen["calib"].append(k["calib"])
        return real_export(*a, **k)

    monkeypatch.setattr(trainer, "fit", spy_fit)
    monkeypatch.setattr(export_pkg, "export_variant", spy_export)
    rp = tmp_path / "tiny.yaml"
    rp.write_text(yaml.safe_dump(TINY_RECIPE))
    prof = tiny_profile(tmp_path, variants=[{"backend": "ort", "precision": "fp32"}, {"backend": "ort", "precision": "int8"}],
                        batch_sizes=[1])
    rep = run_pipeline(str(prof), str(rp), out_root=tmp_path / "runs", quiet=True, log=lambda s: None)
    run = tmp_path / "runs" / "tiny" / "cpu"
    test_x, test_y = np.load(run / "data" / "test_x.npy"), np.load(run / "data" / "test_y.npy")
    test_rows = _rows(test_x)
    # reference training + fine-tune; two variants, and the same two of the uncompressed baseline
    assert len(seen["fit_val"]) == 2 and len(seen["gate_val"]) == 4
    for arr in seen["fit_val"] + seen["gate_val"] + seen["calib"]:
        assert not _rows(arr) & test_rows
    from edgeskel.data import load_dataset

    test_names = set(load_dataset(TINY_RECIPE["data"]["spec"]).test.names)
    val_names = set(steps.holdout_names(load_dataset(TINY_RECIPE["data"]["spec"])))
    for names in seen["fit_train_names"]:
        assert not set(names) & test_names and not set(names) & val_names
    # the report's accuracy is the test split's
    ref, _, _ = load_checkpoint(run / "reference" / "reference.ckpt")
    assert rep["reference"]["top1"] == pytest.approx(accuracy_summary(predict_logits(ref, test_x), test_y)["top1"])
    assert rep["dataset"]["accuracy_split"] == "test" and rep["dataset"]["num_samples"] == len(test_y)
    assert rep["dataset"]["validation"]["source"] == "stratified slice of train"
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["inputs"]["validation"]["seed"] == 0
    assert "Accuracy is on the test split only" in (run / "report.md").read_text()


def test_worse_fine_tune_is_not_deployed(tmp_path: Path) -> None:
    rec = copy.deepcopy(TINY_RECIPE)
    rec["finetune"].update(lr=10.0, kd_weight=0.0)  # a destructive fine-tune: must not ship
    recipe = Recipe.model_validate(rec)
    ds = steps.load_data(recipe)
    steps.get_reference(recipe, ds, tmp_path / "ref", quiet=True)
    _, spec, _ = load_checkpoint(tmp_path / "ref" / "reference.ckpt")
    arrays = steps.split_arrays(ds, spec.preprocess, 16, None)
    res = steps.compress_and_finetune(tmp_path / "ref" / "reference.ckpt", recipe, ds, arrays["val_x"], arrays["val_y"],
                                      arrays["calib_x"], tmp_path / "c", quiet=True,
                                      test=(arrays["test_x"], arrays["test_y"]))
    sel = res["selection"]
    assert sel["top1_finetuned"] <= sel["top1_factorized"], sel
    assert sel["deployed"] == "factorized" and "did not beat the factorized model" in sel["note"]
    deployed, _, _ = load_checkpoint(tmp_path / "c" / "compressed.ckpt")
    top1 = accuracy_summary(predict_logits(deployed, arrays["test_x"]), arrays["test_y"])["top1"]
    assert top1 == pytest.approx(res["top1"]["deployed"]) == pytest.approx(res["top1"]["after_compression"])
    tuned, _, _ = load_checkpoint(tmp_path / "c" / "finetune" / "best.ckpt")  # what fine-tuning produced
    assert not np.allclose(predict_logits(deployed, arrays["test_x"]), predict_logits(tuned, arrays["test_x"]))
    lines = selection_lines({"compressed": {"selection": sel}})
    assert lines and "Deployed model: **factorized**" in lines[0]


def test_deploy_choice_keeps_the_better_model() -> None:
    assert steps.deploy_choice(50.0, 60.0)["deployed"] == "fine-tuned"
    assert steps.deploy_choice(50.0, 50.0)["deployed"] == "factorized"
    assert steps.deploy_choice(50.0, None)["deployed"] == "factorized"
