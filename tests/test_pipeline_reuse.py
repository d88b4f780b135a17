"""A finished `make export` run is reused by tune (and bench) only when its manifest proves the
same computation (pipeline/reuse.py): tune then copies the fine-tuned model instead of paying
for the fine-tune again, and anything that differs is rebuilt."""

from __future__ import annotations

import json

import pytest
import yaml

from edgeskel.io import sha256_file
from edgeskel.pipeline import run_pipeline
from edgeskel.pipeline.reuse import finished_compress
from edgeskel.recipe import load_recipe
from edgeskel.tune import run_tune
from tests.test_tune_search import TINY, _profile, fake_measure


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """One finished pipeline run of the tiny recipe on a strict profile (gate 0.0: tune must fine-tune)."""
    tmp = tmp_path_factory.mktemp("reuse")
    rec = tmp / "tiny.yaml"
    rec.write_text(yaml.safe_dump(TINY))
    prof = yaml.safe_load(_profile(tmp).read_text())
    prof["gates"]["max_top1_drop"] = 0.0
    strict = tmp / "cpu-strict.yaml"
    strict.write_text(yaml.safe_dump(prof))
    run_pipeline(str(strict), str(rec), out_root=tmp / "runs", quiet=True)
    run = tmp / "runs" / "tiny" / "cpu"
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["stages"]["compress"]["status"] == "done"
    return tmp, rec, strict, run, manifest


def test_finished_compress_matches_only_the_same_computation(finished):
    tmp, rec_path, _, run, manifest = finished
    rec, _ = load_recipe(str(rec_path))
    ref_sha = sha256_file(run / "reference" / "reference.ckpt")
    data = manifest["stages"]["data"]["outputs"]
    found = finished_compress(rec, "cpu", ref_sha, 8, data, root=tmp / "runs")
    assert found is not None and found[0].root == run and "top1" in found[1]
    assert finished_compress(rec, "cpu", "0" * 64, 8, data, root=tmp / "runs") is None  # other reference
    assert finished_compress(rec, "cpu", ref_sha, 16, data, root=tmp / "runs") is None  # other rank rounding
    assert finished_compress(rec, "jetson-orin", ref_sha, 8, data, root=tmp / "runs") is None  # other device
    other_data = {k: ("0" * 64 if k.endswith("val_x.npy") else v) for k, v in data.items()}
    assert finished_compress(rec, "cpu", ref_sha, 8, other_data, root=tmp / "runs") is None  # other validation split
    longer = rec.model_copy(update={"finetune": rec.finetune.model_copy(update={"epochs": 2})})
    assert finished_compress(longer, "cpu", ref_sha, 8, data, root=tmp / "runs") is None  # other fine-tune
    (run / "compress" / "compressed.ckpt").write_bytes((run / "compress" / "compressed.ckpt").read_bytes() + b"x")
    try:  # an output that no longer matches its recorded sha256 is never reused
        assert finished_compress(rec, "cpu", ref_sha, 8, data, root=tmp / "runs") is None
    finally:
        p = run / "compress" / "compressed.ckpt"
        p.write_bytes(p.read_bytes()[:-1])


def test_tune_reuses_the_pipeline_fine_tune_of_the_recipe_budget(finished, monkeypatch):
    """The recipe's own budget (0.8) must be fine-tuned by tune: it copies the pipeline's model
    (same bytes) instead of fine-tuning again; a budget the pipeline did not make is trained."""
    import edgeskel.pipeline.steps as steps
    import edgeskel.tune.search as S

    tmp, rec, strict, run, _ = finished
    orig_export = S._export_option

    def worse_before_finetune(run_, key, *a, **k):  # factorized models miss the gate: both need fine-tuning
        cands = orig_export(run_, key, *a, **k)
        if key.startswith("budget-") and not key.endswith("-ft"):
            for c in cands.values():
                c["top1"] -= 5.0
        return cands

    trained: list[float] = []
    orig_cf = steps.compress_and_finetune

    def counting(ref, rec_k, *a, **k):
        trained.append(rec_k.compress.budget)
        return orig_cf(ref, rec_k, *a, **k)

    monkeypatch.setattr(S, "_export_option", worse_before_finetune)
    monkeypatch.setattr(steps, "compress_and_finetune", counting)
    lines: list[str] = []
    res = run_tune(str(strict), str(rec), out_root=tmp / "runs", budgets=(0.8, 0.75), quiet=True, log=lines.append,
                   measure=fake_measure("budget-", "none/"))
    tune = tmp / "runs" / "tiny" / "tune-cpu"
    assert res["options"]["budget-0.8"]["finetune"] == "done"
    assert any("finetune-budget-0.8: fine-tuned model reused from the finished pipeline run" in s for s in lines)
    assert sha256_file(tune / "finetune-budget-0.8" / "compressed.ckpt") == sha256_file(run / "compress" / "compressed.ckpt")
    assert 0.8 not in trained  # the recipe's budget was copied, not trained again
    assert res["options"]["budget-0.75"]["finetune"] == "done" and trained == [0.75]  # not the recipe's: trained
