"""Layouts travel with the model: a model trained with a custom YAML layout goes through
`sweep`, single-variant export and the pipeline from its checkpoint alone (the YAML deleted);
an edited layout file invalidates the pipeline's cached stages; old name-only checkpoints
still load when the layout is given."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from edgeskel.checkpoint import load_checkpoint
from edgeskel.errors import CheckpointError
from edgeskel.layouts import KINECT20
from edgeskel.pipeline import run_pipeline
from edgeskel.train import TrainConfig
from edgeskel.train.api import train

REPO = Path(__file__).resolve().parents[1]
DATA = "synthetic?classes=3&per_class=6&test_per_class=3&frames=16"
TINY = {"width": 0.5, "num_stages": 2}
# kinect20 with the first joints in another order (as UTD-MHAD-style data has): a real custom graph
PERM = [3, 2, 1, 0] + list(range(4, 20))


def utd20(path: Path, bones_from: int = 0) -> Path:
    inv = {old: new for new, old in enumerate(PERM)}
    lay = {"name": "my20", "joints": [KINECT20.joints[i] for i in PERM],
           "bones": [[inv[a], inv[b]] for a, b in KINECT20.bones[bones_from:]],
           "center": inv[KINECT20.center], "parts": [KINECT20.parts[i] for i in PERM]}
    path.write_text(yaml.safe_dump(lay))
    return path


def profile(tmp_path: Path) -> Path:
    prof = yaml.safe_load((REPO / "devices" / "cpu.yaml").read_text())
    prof.update(variants=[{"backend": "ort", "precision": "fp32"}], batch_sizes=[1])
    prof.setdefault("measure", {}).update(warmup=2, runs=100)
    p = tmp_path / "cpu-tiny.yaml"
    p.write_text(yaml.safe_dump(prof))
    return p


@pytest.fixture(scope="module")
def custom_ckpt(tmp_path_factory) -> Path:  # noqa: ANN001
    d = tmp_path_factory.mktemp("utd")
    lay = utd20(d / "my20.yaml")
    cfg = TrainConfig(epochs=1, batch_size=8, optimizer="adamw", lr=3e-3, warmup_epochs=0, threads=1)
    train("stgcn", DATA, d / "train", cfg, layout=str(lay), num_frames=16, model_kwargs=TINY, quiet=True)
    lay.unlink()  # from here on only the checkpoint knows the layout
    return d / "train" / "best.ckpt"


def test_checkpoint_carries_the_full_layout(custom_ckpt: Path) -> None:
    _, spec, _ = load_checkpoint(custom_ckpt)
    assert spec.layout.name == "my20" and spec.layout.joints[0] == "head" and spec.layout != KINECT20


def test_sweep_and_single_export_from_the_checkpoint_alone(custom_ckpt: Path, tmp_path: Path, capsys) -> None:  # noqa: ANN001
    from edgeskel.cli import main

    rc = main(["sweep", "--checkpoint", str(custom_ckpt), "--data", DATA, "--budgets", "0.8", "--rank-multiple", "2", "--out",
               str(tmp_path / "sweep"), "--quiet"])
    assert rc == 0, capsys.readouterr().err
    res = json.loads((tmp_path / "sweep" / "sweep.json").read_text())
    assert res["layout"]["name"] == "my20" and res["accuracy_split"] == "test" and len(res["rows"]) == 2
    rc = main(["export", "--checkpoint", str(custom_ckpt), "--backend", "ort", "--precision", "fp32",
               "--calib-data", DATA, "--out", str(tmp_path / "exp")])
    assert rc == 0, capsys.readouterr().err
    import onnx

    onnx_files = list((tmp_path / "exp").rglob("*.onnx"))
    props = {p.key: p.value for p in onnx.load(str(onnx_files[0])).metadata_props}
    assert json.loads(props["layout_json"])["joints"][0] == "head"


def test_pipeline_from_the_checkpoint_alone_and_bundle_carries_layout(custom_ckpt: Path, tmp_path: Path) -> None:
    recipe = {"name": "utd", "model": {"name": "stgcn", "checkpoint": str(custom_ckpt)}, "data": {"spec": DATA},
              "export": {"calib_samples": 8}}
    rp = tmp_path / "utd.yaml"
    rp.write_text(yaml.safe_dump(recipe))
    rep = run_pipeline(str(profile(tmp_path)), str(rp), out_root=tmp_path / "runs", quiet=True, log=lambda s: None)
    run = tmp_path / "runs" / "utd" / "cpu"
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["inputs"]["layout"]["name"] == "my20" and manifest["inputs"]["layout"]["joints"][0] == "head"
    assert rep["dataset"]["layout_definition"]["joints"][0] == "head"
    v = rep["variants"][0]  # exported and measured (pass/fail may depend on this shared machine's timing)
    assert v["status"] in ("pass", "fail") and v["top1"] is not None and v["agreement"] == 100.0
    bundles = list(run.rglob("bundle.json"))
    assert bundles and json.loads(bundles[0].read_text())["model"]["layout"]["name"] == "my20"


def test_edited_layout_file_invalidates_the_pipeline_cache(tmp_path: Path) -> None:
    lay = utd20(tmp_path / "my20.yaml")
    recipe = {"name": "utdtrain", "model": {"name": "stgcn", "width": 0.125, "kwargs": {"num_stages": 2}},
              "data": {"spec": DATA, "layout": str(lay), "frames": 16},
              "train": {"epochs": 1, "batch_size": 8, "optimizer": "adamw", "lr": 0.003, "warmup_epochs": 0, "threads": 1},
              "export": {"calib_samples": 8}}
    rp = tmp_path / "r.yaml"
    rp.write_text(yaml.safe_dump(recipe))
    prof = profile(tmp_path)
    logs: list[str] = []
    run_pipeline(str(prof), str(rp), out_root=tmp_path / "runs", quiet=True, log=logs.append)
    logs.clear()
    run_pipeline(str(prof), str(rp), out_root=tmp_path / "runs", quiet=True, log=logs.append)
    assert sum("up to date, skipped" in s for s in logs) == 6  # unchanged: all cached (check included, no compress stage)
    utd20(lay, bones_from=1)  # same name, one bone fewer
    logs.clear()
    run_pipeline(str(prof), str(rp), out_root=tmp_path / "runs", quiet=True, log=logs.append)
    assert not any(s.startswith(("[data] up to date", "[reference] up to date", "[shared reference] up to date"))
                   for s in logs), logs
    _, spec, _ = load_checkpoint(tmp_path / "runs" / "utdtrain" / "cpu" / "reference" / "reference.ckpt")
    assert len(spec.layout.bones) == len(KINECT20.bones) - 1


def test_old_name_only_checkpoint_needs_and_takes_the_layout(custom_ckpt: Path, tmp_path: Path) -> None:
    payload = torch.load(custom_ckpt, weights_only=True)
    payload["spec"]["layout"] = "my20"  # as checkpoints that stored only the name
    old = tmp_path / "old.ckpt"
    torch.save(payload, old)
    with pytest.raises(CheckpointError, match="without its definition"):
        load_checkpoint(old)
    lay = utd20(tmp_path / "my20.yaml")
    _, spec, _ = load_checkpoint(old, layout=str(lay))
    assert spec.layout.joints[0] == "head"
    from edgeskel.compress.sweep import sweep

    res = sweep(old, DATA, tmp_path / "sw", [0.8], methods=("plain",), rank_multiple=2, quiet=True, layout=str(lay))
    assert res["layout"]["name"] == "my20"
    with pytest.raises(CheckpointError, match="other joints"):
        load_checkpoint(custom_ckpt, layout="kinect20")
