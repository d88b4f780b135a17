"""`edgeskel bench --quick` through the CLI (slow: trains and exports a quarter-width ST-GCN)."""

from __future__ import annotations

import json

import pytest

from edgeskel.cli import main


def test_bench_rejects_unknown_model(tmp_path, capsys):
    assert main(["bench", "--quick", "--models", "stgcn,resnet", "--out", str(tmp_path)]) == 2
    assert "resnet" in capsys.readouterr().err


def test_ort_int8_study_names_the_missing_run_files(tmp_path, capsys):
    assert main(["ort-int8-study", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err
    assert "nope/export/ort-fp32/model.onnx" in err and "not found" in err


@pytest.mark.slow
def test_bench_quick_cli_end_to_end(tmp_path, capsys):
    rc = main(["bench", "--quick", "--models", "stgcn", "--data", "synthetic?classes=4&per_class=12&test_per_class=6",
               "--out", str(tmp_path / "out"), "--cache-dir", str(tmp_path / "cache"), "--runs", "3", "--rounds", "1",
               "--val-samples", "16", "--threads", "1"])
    assert rc == 0
    res = json.loads((tmp_path / "out" / "results.json").read_text())
    assert res["settings"]["quick"] and res["models"]["stgcn"]["best"]
    assert (tmp_path / "out" / "BENCHMARKS.md").read_text().count("<!-- bench:begin -->") == 1
    assert "side by side" in capsys.readouterr().out


@pytest.mark.parametrize("arg, words", [("stgcn", "expected MODEL=FILE"), ("ctrgcn=x.yaml", "not among the benchmarked"),
                                        ("stgcn=recipes/ctrgcn-lortsar.yaml", "recipe for model 'ctrgcn'")])
def test_bench_recipe_option_errors_are_one_line(arg, words, tmp_path, capsys):
    rc = main(["bench", "--quick", "--models", "stgcn", "--recipe", arg, "--out", str(tmp_path / "o"),
               "--cache-dir", str(tmp_path / "c")])
    err = capsys.readouterr().err
    assert rc == 2 and words in err and "Traceback" not in err


def test_bench_takes_a_recipe_without_compression_as_the_uncompressed_model(tmp_path):
    """A recipe `edgeskel tune` wrote for "no compression": the bench's edgeskel rows are edgeskel's
    exports of the reference itself (nothing factorized, nothing fine-tuned)."""
    import yaml

    from edgeskel.bench import quick_settings
    from edgeskel.bench.models import prepare_model
    from edgeskel.recipe import REPO_ROOT

    body = yaml.safe_load((REPO_ROOT / "recipes" / "stgcn-lortsar.yaml").read_text())
    body.pop("compress"), body.pop("finetune", None)
    body["name"] = "stgcn-lortsar-tuned"
    path = tmp_path / "tuned.yaml"
    path.write_text(yaml.safe_dump(body))
    s = quick_settings(models=["stgcn"], data="synthetic?classes=3&per_class=8&test_per_class=3", frames=16,
                       cache_dir=tmp_path / "cache", out=tmp_path / "out", train_epochs=1, recipes={"stgcn": str(path)},
                       threads=1)
    prep = prepare_model("stgcn", s, 8, lambda *_: None)
    assert prep.recipe.name == "stgcn-lortsar-tuned" and prep.recipe.compress is None
    assert prep.compressed_ckpt == prep.reference_ckpt
    c = prep.compression
    assert c["params_after"] == c["params_before"] > 0 and c["selection"]["deployed"] == "uncompressed"
    assert 0 <= c["top1"]["deployed"] <= 100
