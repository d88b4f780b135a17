"""A checkpoint paired with data it was not made for is refused before any work (issue 27
item 1): every command that reads a checkpoint and data says what does not match and what to
pass, in one error line; a checkpoint given without --data never runs on the recipe's
unrelated default data (it once reported top-1 0.0 and went on to fine-tune, or ended in an
IndexError traceback from cross_entropy)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from edgeskel import models
from edgeskel.checkpoint import ModelSpec, Preprocess, save_checkpoint
from edgeskel.layouts import get_layout

REPO = Path(__file__).resolve().parents[1]


def _checkpoint(path: Path, num_classes: int, layout: str) -> Path:
    lay = get_layout(layout)
    kwargs = {"num_person": 1, "width": 0.125, "num_stages": 3}
    net = models.build("stgcn", num_classes, lay, **kwargs)
    spec = ModelSpec(name="stgcn", num_classes=num_classes, layout=lay, kwargs=kwargs,
                     class_names=[f"c{i}" for i in range(num_classes)],
                     preprocess=Preprocess(num_frames=16, num_person=1))
    save_checkpoint(path, net, spec, extra={"data": "ntu:/data/ntu60?benchmark=xsub"})
    return path


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    d = tmp_path_factory.mktemp("fit")
    # 7 classes: neither the default recipe's data (12) nor `--data synthetic` (10) fits; the
    # NTU-like one has 25 joints too (synthetic data follows the model's layout, classes differ)
    return {"classes": _checkpoint(d / "seven.ckpt", 7, "kinect20"), "ntu": _checkpoint(d / "ntu.ckpt", 60, "ntu25")}


def _one_error(capsys) -> str:
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.mark.parametrize("command", ["export", "compress", "tune", "eval", "sweep"])
@pytest.mark.parametrize("kind", ["classes", "ntu"])
def test_mismatched_checkpoint_and_data_is_one_error(ckpts, tmp_path, capsys, monkeypatch, command, kind):
    from edgeskel.cli import main

    monkeypatch.chdir(tmp_path)
    c = str(ckpts[kind])
    argv = {
        "export": ["export", "--device", "cpu", "--checkpoint", c, "--out", "runs", "--quiet"],
        "compress": ["compress", "--recipe", "default", "--checkpoint", c, "--out", "comp"],
        "tune": ["tune", "--device", "cpu", "--checkpoint", c, "--out", "runs"],
        "eval": ["eval", "--checkpoint", c],
        "sweep": ["sweep", "--checkpoint", c, "--data", "synthetic", "--out", "sweep"],
    }[command]
    rc = main(argv)
    line = _one_error(capsys)
    assert rc == 2
    assert "does not fit dataset" in line and "--data" in line, line
    assert "trained on 'ntu:/data/ntu60?benchmark=xsub'" in line
    assert f"classes, the model {7 if kind == 'classes' else 60}" in line, line
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").rglob("reference.ckpt"))


def test_matching_data_passes_the_check(ckpts, capsys):
    from edgeskel.cli import main

    rc = main(["eval", "--checkpoint", str(ckpts["classes"]),
               "--data", "synthetic?classes=7&per_class=2&test_per_class=2&frames=16"])
    assert rc == 0, capsys.readouterr().err


# two torch processes (~6 s); the check and its error line are the `compress` case above, torchrun's
# process group around a compress run is test_ddp's
@pytest.mark.slow
def test_mismatch_under_torchrun_is_the_same_error_not_a_traceback(ckpts, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "edgeskel",
           "compress", "--recipe", "default", "--checkpoint", str(ckpts["classes"]), "--out", str(tmp_path / "c"),
           "--device", "cpu"]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode != 0
    assert "does not fit dataset" in proc.stderr and "IndexError" not in proc.stderr, proc.stderr[-3000:]


def test_recipe_whose_data_fits_runs(ckpts, tmp_path):
    """The check is not a blanket refusal: with --data for the checkpoint's classes the compress
    command proceeds past the data stage."""
    from edgeskel.pipeline import steps
    from edgeskel.recipe import load_recipe, with_overrides

    rec, path = load_recipe("default")
    rec = with_overrides(rec, ckpts["classes"], "synthetic?classes=7&per_class=2&test_per_class=2&frames=16",
                         source=path)
    ds = steps.load_data(rec)
    assert len(ds.class_names) == 7
