"""Trainer: learns, keeps the best checkpoint, resumes after an interruption bit-for-bit,
distils, and the README's train/eval commands work."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from edgeskel.checkpoint import load_checkpoint
from edgeskel.cli import main
from edgeskel.train import TrainConfig
from edgeskel.train.api import evaluate, train

TINY = "synthetic?classes=4&per_class=8&test_per_class=4&frames=16"
TINY_MODEL = {"width": 0.125, "num_stages": 2}


def _cfg(**kw):
    base = dict(epochs=2, batch_size=8, optimizer="adamw", lr=3e-3, warmup_epochs=0, seed=0, threads=1)
    base.update(kw)
    return TrainConfig(**base)


def test_train_writes_self_describing_best_checkpoint(tmp_path):
    res = train("stgcn", TINY, tmp_path, _cfg(), num_frames=16, model_kwargs=TINY_MODEL, quiet=True)
    assert res["best_epoch"] in (1, 2)
    assert len(res["history"]) == 2
    model, spec, extra = load_checkpoint(tmp_path / "best.ckpt")
    assert spec.name == "stgcn" and spec.num_classes == 4 and spec.preprocess.num_frames == 16
    assert spec.class_names[:2] == ["waving", "clapping"]
    assert extra["val"]["top1"] == pytest.approx(res["best_top1"])
    ev = evaluate(tmp_path / "best.ckpt", TINY)
    assert set(ev) >= {"top1", "top5", "num_samples"} and ev["num_samples"] == 16
    assert ev["top1"] == pytest.approx(res["test_top1"])  # selection on validation, report on test
    assert res["val_top1"] == pytest.approx(res["best_top1"]) and res["validation"]["samples"] == 4


def test_resume_after_interruption_matches_uninterrupted(tmp_path):
    full = train("stgcn", TINY, tmp_path / "full", _cfg(epochs=3), num_frames=16, model_kwargs=TINY_MODEL, quiet=True)

    class Stop(Exception):
        pass

    from edgeskel.train import trainer

    calls = {"n": 0}
    orig = trainer.fit

    def fit_then_die(*a, **k):
        def on_epoch(row):
            calls["n"] += 1
            if calls["n"] == 2:
                raise Stop  # dies after epoch 2 was saved
        return orig(*a, **{**k, "on_epoch": on_epoch})

    import edgeskel.train.api as api

    api_fit = api.fit
    api.fit = fit_then_die
    try:
        with pytest.raises(Stop):
            train("stgcn", TINY, tmp_path / "part", _cfg(epochs=3), num_frames=16, model_kwargs=TINY_MODEL, quiet=True)
    finally:
        api.fit = api_fit
    assert (tmp_path / "part" / "last.pt").is_file()
    resumed = train("stgcn", TINY, tmp_path / "part", _cfg(epochs=3), num_frames=16, model_kwargs=TINY_MODEL, quiet=True)
    assert [r["val_top1"] for r in resumed["history"]] == [r["val_top1"] for r in full["history"]]
    assert [round(r["loss"], 6) for r in resumed["history"]] == [round(r["loss"], 6) for r in full["history"]]
    a, _, _ = load_checkpoint(tmp_path / "full" / "best.ckpt")
    b, _, _ = load_checkpoint(tmp_path / "part" / "best.ckpt")
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert ka == kb and torch.equal(va, vb), ka


def test_distillation_pulls_student_towards_teacher(tmp_path):
    from edgeskel.train.trainer import distillation_loss

    s = torch.tensor([[2.0, 0.0, -1.0]])
    assert distillation_loss(s, s.clone(), 4.0).item() == pytest.approx(0.0, abs=1e-7)
    assert distillation_loss(s, torch.tensor([[-1.0, 0.0, 2.0]]), 4.0).item() > 0.01


def test_cli_train_then_eval_json(tmp_path, capsys):
    out = tmp_path / "run"
    rc = main(["train", "--model", "stgcn", "--data", TINY, "--epochs", "1", "--batch-size", "8", "--width", "0.125",
               "--frames", "16", "--optimizer", "adamw", "--lr", "0.003", "--out", str(out), "--json"])
    assert rc == 0
    printed = capsys.readouterr().out
    summary = json.loads(printed[printed.index("{"):])
    assert summary["model"] == "stgcn" and summary["best_epoch"] == 1
    assert (out / "best.ckpt").is_file()
    rc = main(["eval", "--checkpoint", str(out / "best.ckpt"), "--data", TINY, "--json"])
    assert rc == 0
    printed = capsys.readouterr().out
    res = json.loads(printed[printed.index("{"):])
    assert set(res) >= {"top1", "top5", "num_samples"} and res["num_samples"] == 16
    assert res["top1"] == pytest.approx(summary["test_top1"])


def test_eval_rejects_dataset_that_does_not_fit(tmp_path, capsys):
    train("stgcn", TINY, tmp_path, _cfg(epochs=1), num_frames=16, model_kwargs=TINY_MODEL, quiet=True)
    rc = main(["eval", "--checkpoint", str(tmp_path / "best.ckpt"), "--data", "synthetic?classes=5&per_class=4&test_per_class=2"])
    assert rc == 2
    err = capsys.readouterr().err
    assert "5 classes" in err and "4" in err and "Traceback" not in err


def test_bad_checkpoint_file_is_a_clear_error(tmp_path, capsys):
    bad = tmp_path / "x.ckpt"
    bad.write_bytes(b"not a checkpoint")
    rc = main(["eval", "--checkpoint", str(bad), "--data", TINY])
    assert rc == 2
    assert str(bad) in capsys.readouterr().err


def test_small_model_learns_synthetic_well_above_chance(tmp_path):
    """The built-in default must be learnable quickly (issue: well above chance in < 1 min)."""
    spec = "synthetic?classes=10&per_class=24&test_per_class=8&frames=32"
    res = train("stgcn", spec, tmp_path, _cfg(epochs=6, batch_size=16), num_frames=32,
                model_kwargs={"width": 0.25}, quiet=True)
    assert res["best_top1"] >= 50.0, res["history"]  # chance is 10%
    assert np.isfinite(res["history"][-1]["loss"])


def test_half_checkpoint_reloads_close_to_fp32(tmp_path):
    train("stgcn", TINY, tmp_path, _cfg(epochs=1), num_frames=16, model_kwargs=TINY_MODEL, quiet=True)
    assert main(["half", str(tmp_path / "best.ckpt"), str(tmp_path / "half.ckpt")]) == 0
    a, spec, _ = load_checkpoint(tmp_path / "best.ckpt")
    b, _, extra = load_checkpoint(tmp_path / "half.ckpt")
    assert extra["stored_dtype"] == "float16"
    assert (tmp_path / "half.ckpt").stat().st_size < 0.75 * (tmp_path / "best.ckpt").stat().st_size
    x = torch.randn(3, *spec.input_shape)
    with torch.no_grad():
        assert next(b.parameters()).dtype == torch.float32
        torch.testing.assert_close(b(x), a(x), rtol=0, atol=5e-2)


def test_compression_sweep_table_and_plot(tmp_path):
    train("stgcn", TINY, tmp_path, _cfg(epochs=1), num_frames=16, model_kwargs={"width": 0.5, "num_stages": 3}, quiet=True)
    rc = main(["sweep", "--checkpoint", str(tmp_path / "best.ckpt"), "--data", TINY, "--budgets", "0.9,0.6",
               "--finetune-epochs", "1", "--out", str(tmp_path / "sw"), "--quiet"])
    assert rc == 0
    res = json.loads((tmp_path / "sw" / "sweep.json").read_text())
    assert len(res["rows"]) == 4
    for r in res["rows"]:
        assert r["param_ratio"] <= r["budget"] + 0.05
        assert (r["top1_finetuned"] is not None) == (r["method"] == "data-aware")
    assert (tmp_path / "sw" / "sweep.png").read_bytes()[:4] == b"\x89PNG"
    # both methods fine-tuned on request; a bad method name is a clear error
    rc = main(["sweep", "--checkpoint", str(tmp_path / "best.ckpt"), "--data", TINY, "--budgets", "0.6",
               "--finetune-epochs", "1", "--finetune-methods", "plain,data-aware", "--out", str(tmp_path / "sw2"),
               "--quiet"])
    rows = json.loads((tmp_path / "sw2" / "sweep.json").read_text())["rows"]
    assert rc == 0 and all(r["top1_finetuned"] is not None for r in rows)
    assert main(["sweep", "--checkpoint", str(tmp_path / "best.ckpt"), "--data", TINY,
                 "--finetune-methods", "svd++"]) != 0


def test_atomic_writes_produce_ordinary_file_permissions(tmp_path):
    import os

    from edgeskel.io import atomic_write_text

    p = atomic_write_text(tmp_path / "r.md", "x")
    mask = os.umask(0)
    os.umask(mask)
    assert (p.stat().st_mode & 0o777) == (0o666 & ~mask)


def test_nonfinite_loss_stops_with_epoch_and_step_and_keeps_last_good_checkpoint(tmp_path, capsys, monkeypatch):
    """Issue 17 item 5: a NaN loss is one `error:` line naming epoch and step; best.ckpt/last.pt
    from the last good epoch stay as they were (the bad step is never applied)."""
    from edgeskel import models

    build = models.build
    calls = {"n": 0}

    def build_then_diverge(*a, **k):
        net = build(*a, **k)

        def poison(module, inputs, output):
            if module.training:
                calls["n"] += 1
                if calls["n"] >= 5:  # 3 steps per epoch: epoch 2, step 2
                    return output * float("nan")
            return output

        net.register_forward_hook(poison)
        return net

    monkeypatch.setattr(models, "build", build_then_diverge)
    out = tmp_path / "run"
    rc = main(["train", "--model", "stgcn", "--data", TINY, "--epochs", "3", "--batch-size", "8", "--width", "0.125",
               "--frames", "16", "--optimizer", "adamw", "--lr", "0.003", "--threads", "1", "--device", "cpu",
               "--out", str(out), "--json"])
    err = capsys.readouterr().err
    assert rc == 2, err
    lines = [x for x in err.splitlines() if x.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith("error: training diverged at epoch 2, step 2/3: loss is NaN"), lines[0]
    assert f"{out / 'best.ckpt'} (epoch 1)" in lines[0] and "lower the learning rate" in lines[0]
    model, spec, extra = load_checkpoint(out / "best.ckpt")
    assert extra["epoch"] == 1
    state = torch.load(out / "last.pt", weights_only=True)
    assert state["epoch"] == 1 and len(state["history"]) == 1
    with torch.no_grad():
        assert torch.isfinite(model(torch.randn(2, *spec.input_shape))).all()
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())


def test_resume_with_other_threads_continues_instead_of_starting_over(tmp_path, monkeypatch):
    """--threads changes speed, not what is computed: rerunning an interrupted training with
    another thread count must continue it (it used to start over, losing every epoch)."""
    import edgeskel.train.api as api

    class Stop(Exception):
        pass

    orig, seen = api.fit, []

    def fit_watched(*a, stop_at=None, **k):
        def on_epoch(row):
            seen.append(row["epoch"])
            if row["epoch"] == stop_at:
                raise Stop
        return orig(*a, **{**k, "on_epoch": on_epoch})

    monkeypatch.setattr(api, "fit", lambda *a, **k: fit_watched(*a, stop_at=2, **k))
    with pytest.raises(Stop):
        train("stgcn", TINY, tmp_path, _cfg(epochs=3, threads=1), num_frames=16, model_kwargs=TINY_MODEL, quiet=True)
    assert seen == [1, 2]
    monkeypatch.setattr(api, "fit", fit_watched)
    res = train("stgcn", TINY, tmp_path, _cfg(epochs=3, threads=2), num_frames=16, model_kwargs=TINY_MODEL, quiet=True)
    assert seen == [1, 2, 3], f"epochs run again after the rerun: {seen}"
    assert len(res["history"]) == 3
