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
