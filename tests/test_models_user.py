"""Bring your own model: a recipe naming the user's entrypoint goes through the whole pipeline
(reference from the user's weights, generic low-rank compression, fine-tuning, export,
validation, report); a checkpoint alone never makes edgeskel import code."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from edgeskel import models
from edgeskel.checkpoint import ModelSpec, Preprocess, load_checkpoint, save_checkpoint
from edgeskel.errors import CheckpointError, ConfigError
from edgeskel.layouts import get_layout
from edgeskel.models import user
from edgeskel.recipe import load_recipe

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = "examples.user_model.tiny_gcn:build"

torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _clean_trust(monkeypatch):
    """Each test starts with nothing trusted, from the repo root (where `examples` lives)."""
    monkeypatch.setattr(user, "_TRUSTED", set())
    monkeypatch.delenv(user.ENV_TRUSTED, raising=False)
    monkeypatch.chdir(REPO)


def _example(num_classes: int = 4, layout: str = "kinect20") -> torch.nn.Module:
    user.trust_entrypoint(EXAMPLE)
    return models.build("user", num_classes, layout, num_person=1, entrypoint=EXAMPLE, kwargs={"hidden": 32})


def test_checkpoint_alone_never_imports_code(tmp_path, monkeypatch):
    """A checkpoint naming an entrypoint nobody trusted is refused BEFORE its module is imported."""
    (tmp_path / "planted_mod.py").write_text(
        "from pathlib import Path\nPath(__file__).with_name('IMPORTED').write_text('x')\n"
        "def build(**kw):\n    raise SystemExit('ran')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    net = _example()
    spec = ModelSpec(name="user", num_classes=4, layout=get_layout("kinect20"),
                     kwargs={"entrypoint": "planted_mod:build", "kwargs": {}, "num_person": 1},
                     preprocess=Preprocess(num_frames=16, num_person=1))
    save_checkpoint(tmp_path / "planted.ckpt", net, spec)
    with pytest.raises(CheckpointError, match="never imports code named by a checkpoint"):
        load_checkpoint(tmp_path / "planted.ckpt")
    assert not (tmp_path / "IMPORTED").exists() and "planted_mod" not in sys.modules


def test_trusted_entrypoint_checkpoint_round_trip(tmp_path, monkeypatch):
    net = _example()
    spec = ModelSpec(name="user", num_classes=4, layout=get_layout("kinect20"),
                     kwargs={"entrypoint": EXAMPLE, "kwargs": {"hidden": 32}, "num_person": 1},
                     preprocess=Preprocess(num_frames=16, num_person=1))
    save_checkpoint(tmp_path / "u.ckpt", net, spec)
    monkeypatch.setattr(user, "_TRUSTED", set())
    monkeypatch.setenv(user.ENV_TRUSTED, EXAMPLE)  # trusted by the user's environment, not by the file
    again, spec2, _ = load_checkpoint(tmp_path / "u.ckpt")
    x = torch.randn(2, 3, 16, 20, 1)
    with torch.no_grad():
        np.testing.assert_allclose(again(x).numpy(), net.eval()(x).numpy(), rtol=0, atol=1e-6)
    assert spec2.kwargs["entrypoint"] == EXAMPLE


@pytest.mark.parametrize(
    ("model", "match"),
    [
        ({"entrypoint": "../evil.py:build"}, "must look like 'package.module:function'"),
        ({"name": "stgcn", "entrypoint": EXAMPLE}, "name must be 'user' or omitted"),
        ({"name": "user"}, "needs model.entrypoint"),
    ],
)
def test_recipe_user_model_is_validated(tmp_path, model, match):
    p = tmp_path / "r.yaml"
    p.write_text(yaml.safe_dump({"name": "r", "model": model}))
    with pytest.raises(ConfigError, match=match) as err:
        load_recipe(p)
    assert str(p) in str(err.value)


def test_bad_user_modules_get_clear_errors(tmp_path, monkeypatch):
    (tmp_path / "wrong_out.py").write_text(
        "import torch.nn as nn\n"
        "def build(num_classes):\n    return nn.Flatten()\n"
        "def not_a_module():\n    return 3\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    user.trust_entrypoint("wrong_out:not_a_module")
    with pytest.raises(ConfigError, match="returned int, not a torch.nn.Module"):
        models.build("user", 3, "kinect20", entrypoint="wrong_out:not_a_module")
    user.trust_entrypoint("wrong_out:missing")
    with pytest.raises(ConfigError, match="has no attribute 'missing'"):
        models.build("user", 3, "kinect20", entrypoint="wrong_out:missing")
    user.trust_entrypoint("wrong_out:build")
    net = models.build("user", 3, "kinect20", entrypoint="wrong_out:build")
    with pytest.raises(ConfigError, match=r"must return logits \(N, 3\)"):
        user.check_user_model(net, 3, (3, 16, 20, 1), "test")


def test_recipe_pipeline_with_the_users_weights(tmp_path):
    """The user's module and weights (a plain state_dict) through `edgeskel export --device`:
    reference = their weights, Conv/Linear layers factorized, fine-tuned, exported to ORT and
    OpenVINO, validated, reported."""
    from edgeskel.cli import main

    net = _example(num_classes=4)
    torch.save(net.state_dict(), tmp_path / "weights.pt")
    recipe = {
        "name": "byom",
        "model": {"entrypoint": EXAMPLE, "kwargs": {"hidden": 32}, "checkpoint": str(tmp_path / "weights.pt")},
        "data": {"spec": "synthetic?classes=4&per_class=8&test_per_class=4&frames=16", "frames": 16},
        "compress": {"policy": "fixed", "ratio": 0.25, "min_params": 256, "rank_multiple": 4},
        "finetune": {"epochs": 1, "batch_size": 8, "optimizer": "adamw", "lr": 0.001, "warmup_epochs": 0,
                     "kd_weight": 0.5, "threads": 1},
        "export": {"calib_samples": 16},
    }
    (tmp_path / "byom.yaml").write_text(yaml.safe_dump(recipe))
    prof = yaml.safe_load((REPO / "devices" / "cpu.yaml").read_text())
    prof.update(variants=[{"backend": "ort", "precision": "fp32"}, {"backend": "openvino", "precision": "fp32"}],
                batch_sizes=[1])
    (tmp_path / "cpu.yaml").write_text(yaml.safe_dump(prof))
    out = tmp_path / "runs"
    rc = main(["export", "--device", str(tmp_path / "cpu.yaml"), "--recipe", str(tmp_path / "byom.yaml"),
               "--out", str(out), "--quiet"])
    assert rc == 0
    run = out / "byom" / "cpu"
    rep = json.loads((run / "report.json").read_text())
    comp = json.loads((run / "compress" / "compression.json").read_text())
    assert comp["totals"]["params_after"] < comp["totals"]["params_before"]
    assert [v["name"] for v in rep["variants"]] == ["ort-fp32", "openvino-fp32"]
    assert rep["variants"][0]["agreement"] == 100.0
    ref, spec, extra = load_checkpoint(run / "reference" / "reference.ckpt")
    assert spec.name == "user" and extra["user_weights"].endswith("weights.pt")
    torch.testing.assert_close(ref.state_dict()["temporal.weight"], net.state_dict()["temporal.weight"])


def test_cli_import_entrypoint_then_predict_needs_trust(tmp_path, monkeypatch, capsys):
    """`edgeskel import W --entrypoint ...` wraps the user's weights; a later `predict` on that
    checkpoint runs only when the user trusts the entrypoint again (environment variable)."""
    from edgeskel.cli import main

    net = _example(num_classes=4).eval()
    torch.save(net.state_dict(), tmp_path / "w.pt")
    monkeypatch.setattr(user, "_TRUSTED", set())
    ckpt = tmp_path / "u.ckpt"
    assert main(["import", str(tmp_path / "w.pt"), "--entrypoint", EXAMPLE, "--model-kwargs", '{"hidden": 32}',
                 "--layout", "kinect20", "--num-classes", "4", "--num-person", "1", "--frames", "16",
                 "--out", str(ckpt)]) == 0
    x = np.random.default_rng(0).standard_normal((3, 3, 16, 20, 1)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    monkeypatch.setattr(user, "_TRUSTED", set())  # a new process: nothing trusted
    capsys.readouterr()
    rc = main(["predict", "--checkpoint", str(ckpt), "--input", str(tmp_path / "x.npy"), "--out", str(tmp_path / "y.npy")])
    err = capsys.readouterr().err
    assert rc != 0 and "error:" in err and "never imports code named by a checkpoint" in err and "Traceback" not in err
    monkeypatch.setenv(user.ENV_TRUSTED, EXAMPLE)
    assert main(["predict", "--checkpoint", str(ckpt), "--input", str(tmp_path / "x.npy"),
                 "--out", str(tmp_path / "y.npy")]) == 0
    with torch.no_grad():
        np.testing.assert_allclose(np.load(tmp_path / "y.npy"), net(torch.from_numpy(x)).numpy(), rtol=0, atol=1e-5)


def test_user_entry_is_not_a_zoo_model():
    """`edgeskel models` and every "all models" loop build each zoo entry without arguments."""
    assert "user" not in models.available_models() and models.model_entry("user").family == "user"
    assert {"shiftgcn", "efficientgcn"} <= set(models.available_models())


def test_recipe_training_a_broken_user_model_fails_with_one_error_line(tmp_path, monkeypatch, capsys):
    from edgeskel.cli import main

    (tmp_path / "broken_mod.py").write_text(
        "import torch.nn as nn\n"
        "def build(num_classes):\n    return nn.Linear(3, num_classes)  # wrong input layout\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    recipe = {"name": "broken", "model": {"entrypoint": "broken_mod:build"},
              "data": {"spec": "synthetic?classes=3&per_class=4&test_per_class=2&frames=16", "frames": 16},
              "train": {"epochs": 1, "batch_size": 4, "threads": 1}}
    (tmp_path / "broken.yaml").write_text(yaml.safe_dump(recipe))
    rc = main(["compress", "--recipe", str(tmp_path / "broken.yaml"), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert rc != 0 and "error:" in err and "entrypoint 'broken_mod:build'" in err and "Traceback" not in err, err
