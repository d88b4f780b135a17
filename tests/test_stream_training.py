"""Training for streams (issue 29 item 3): native-rate clips, length-bucketed batches, exact
per-length evaluation, fine-tuning a checkpoint -- and the link to the stream: what training
scores on a clip is what the step model decides when that clip is streamed and ended."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from edgeskel import models
from edgeskel.checkpoint import Preprocess, load_checkpoint
from edgeskel.data.preprocess import native_window, preprocess_list, preprocess_set
from edgeskel.data.torch_dataset import LengthBatchSampler
from edgeskel.train.metrics import predict_logits


def test_native_window_is_a_window_at_the_source_rate():
    x = np.arange(40, dtype=np.float32).reshape(1, 40, 1, 1)
    assert native_window(x, 64).shape[1] == 40  # shorter clips stay whole
    assert np.array_equal(native_window(x, 16)[0, :, 0, 0], np.arange(24, 40))  # eval: the last window
    w = native_window(x, 16, train=True, rng=np.random.default_rng(3))[0, :, 0, 0]
    assert len(w) == 16 and np.array_equal(np.diff(w), np.ones(15))  # consecutive frames, no resampling


def test_length_batches_group_similar_lengths_and_cover_every_clip():
    lengths = np.random.default_rng(0).integers(1, 60, size=101)
    gen = torch.Generator().manual_seed(0)
    batches = list(LengthBatchSampler(lengths, 8, False, 0, 1, gen))
    flat = sorted(i for b in batches for i in b)
    assert flat == list(range(101)) and len(batches) == 13
    spread = [int(lengths[b].max() - lengths[b].min()) for b in batches]
    assert max(spread) <= 12, spread  # sorted buckets: a batch spans few lengths (random order: ~59)
    again = list(LengthBatchSampler(lengths, 8, False, 0, 1, gen))
    assert again != batches  # reshuffled each epoch
    halves = [list(LengthBatchSampler(lengths, 8, True, r, 2, torch.Generator().manual_seed(1))) for r in (0, 1)]
    assert all(len(a) == len(b) == 4 for a, b in zip(*halves, strict=True))  # each rank half of each batch


def test_ragged_predictions_equal_each_clip_alone():
    from edgeskel import models
    from edgeskel.layouts import get_layout

    torch.manual_seed(0)
    net = models.build("stgcn", 3, get_layout("kinect20"), num_person=1, width=0.125).eval()
    rng = np.random.default_rng(0)
    clips = [rng.normal(size=(3, t, 20, 1)).astype(np.float32) for t in (5, 9, 5, 17, 9)]
    got = predict_logits(net, clips, batch_size=2)
    with torch.no_grad():
        one = np.stack([net(torch.from_numpy(c)[None])[0].numpy() for c in clips])
    assert np.abs(got - one).max() < 1e-5


@pytest.fixture(scope="module")
def finetuned(tmp_path_factory):
    from edgeskel.train.api import train
    from edgeskel.train.config import TrainConfig

    out = tmp_path_factory.mktemp("native")
    data = "synthetic?classes=4&per_class=8"
    cfg = TrainConfig(epochs=1, batch_size=8, optimizer="adamw", lr=1e-3, threads=1)
    base = train("stgcn", data, out / "base", cfg, num_frames=24, model_kwargs={"width": 0.125}, quiet=True)
    res = train(None, data, out / "ft", cfg, num_frames=128, native_rate=True, init=base["best_checkpoint"], quiet=True)
    return res, data


def test_finetune_from_a_checkpoint_at_native_rate(finetuned):
    res, _ = finetuned
    model, spec, extra = load_checkpoint(res["best_checkpoint"])
    assert spec.preprocess.native_rate and spec.preprocess.num_frames == 128
    assert spec.name == "stgcn" and spec.kwargs.get("width") == 0.125 and extra["init"].endswith("best.ckpt")
    assert Preprocess.from_dict(spec.preprocess.to_dict()) == spec.preprocess
    assert "native_rate" not in Preprocess().to_dict()  # default left out: stage keys unchanged


def _training_scores_equal_the_stream(checkpoint: str, data: str) -> None:
    from edgeskel.data import load_dataset
    from edgeskel.stream import build_step_model, run_stream
    from edgeskel.stream.evaluate import as_stream_frames

    model, spec, _ = load_checkpoint(checkpoint)
    test = load_dataset(data, layout=spec.layout).test.subset(range(6))
    up = spec.preprocess.upsample
    assert max(test.lengths()) * up <= spec.preprocess.num_frames  # whole clips: exact equality expected
    clips = preprocess_list(test, spec.layout, spec.preprocess)
    assert [c.shape[1] for c in clips] == [n * up for n in test.lengths()]
    scored = predict_logits(model, clips)
    step = build_step_model(model, spec, "keep")
    assert step.plan.upsample == up
    for i, sample in enumerate(test.samples):
        final = run_stream(step, torch.from_numpy(as_stream_frames(sample, step.plan.persons)), end=True)[-1].numpy()
        assert np.abs(final - scored[i]).max() <= 1e-4 * max(1.0, np.abs(scored[i]).max()), i
    fixed = preprocess_set(test, spec.layout, spec.preprocess)  # the windowed array: zero frames after a short clip
    assert fixed.shape[2] == spec.preprocess.num_frames and np.all(fixed[0, :, clips[0].shape[1]:] == 0)


def test_what_training_scores_is_what_the_stream_decides(finetuned):
    """Native-rate evaluation of a clip (its own length, no resampling) equals the step model's
    final decision when the raw clip is streamed and the stream is ended."""
    res, data = finetuned
    _training_scores_equal_the_stream(res["best_checkpoint"], data)


def test_upsampled_training_is_what_the_upsampling_stream_decides(finetuned, tmp_path):
    """`--native-rate --upsample 2`: the network trains on each source frame made two (linear,
    causal), the checkpoint records it, and the step graph upsamples inside: its ended stream's
    decision on raw frames is what training scores. A fine-tune keeps the upsample unless told."""
    from edgeskel.cli import main

    res, data = finetuned
    common = ["--data", data, "--epochs", "1", "--batch-size", "8", "--optimizer", "adamw", "--threads", "1", "--json"]
    assert main(["train", "--init", res["best_checkpoint"], "--native-rate", "--upsample", "2",
                 "--out", str(tmp_path / "up"), *common]) == 0
    _, spec, _ = load_checkpoint(tmp_path / "up" / "best.ckpt")
    assert spec.preprocess.upsample == 2 and spec.preprocess.to_dict()["upsample"] == 2
    _training_scores_equal_the_stream(str(tmp_path / "up" / "best.ckpt"), data)
    assert main(["train", "--init", str(tmp_path / "up" / "best.ckpt"), "--out", str(tmp_path / "again"), *common]) == 0
    assert load_checkpoint(tmp_path / "again" / "best.ckpt")[1].preprocess.upsample == 2


def test_upsample_without_native_rate_is_refused(capsys):
    from edgeskel.cli import main

    assert main(["train", "--model", "stgcn", "--upsample", "2", "--data", "synthetic?classes=2&per_class=2",
                 "--epochs", "1", "--out", "/nonexistent/never"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "--upsample 2 needs --native-rate" in err


@pytest.mark.parametrize("form", ["--streamable", "trailing"])
def test_streamable_ctrgcn_from_a_windowed_checkpoint(tmp_path, form):
    """CTR-GCN as trained cannot stream (topology from the whole window); `--streamable` fine-tunes
    its causal form from the same weights (default, `static`: one learned topology per layer,
    calibrated from training clips; `--causal-form trailing`: a trailing-mean topology), which then streams, and what training scores is what the
    ended stream decides."""
    from edgeskel.cli import main
    from edgeskel.data import load_dataset
    from edgeskel.stream import NotStreamable, build_step_model, run_stream
    from edgeskel.stream.evaluate import as_stream_frames

    data = "synthetic?classes=3&per_class=6"
    common = ["--data", data, "--epochs", "1", "--batch-size", "6", "--optimizer", "adamw", "--threads", "1", "--json"]
    assert main(["train", "--model", "ctrgcn", "--width", "0.125", "--frames", "24", "--out", str(tmp_path / "w"),
                 *common]) == 0
    windowed, spec_w, _ = load_checkpoint(tmp_path / "w" / "best.ckpt")
    with pytest.raises(NotStreamable, match="--streamable"):
        build_step_model(windowed, spec_w)
    how = ["--streamable"] if form == "--streamable" else ["--causal-form", form]
    assert main(["train", "--init", str(tmp_path / "w" / "best.ckpt"), *how, "--frames", "128",
                 "--out", str(tmp_path / "s"), *common]) == 0
    model, spec, _ = load_checkpoint(tmp_path / "s" / "best.ckpt")
    assert spec.preprocess.native_rate
    if form == "--streamable":  # the default form: static
        assert spec.kwargs["static_topology"] and not spec.kwargs.get("topology_window")
    else:
        assert spec.kwargs["topology_window"] == 128 and not spec.kwargs.get("static_topology")
        # --streamable on a checkpoint already in a causal form keeps that form
        assert main(["train", "--init", str(tmp_path / "s" / "best.ckpt"), "--streamable", "--frames", "128",
                     "--out", str(tmp_path / "s2"), *common]) == 0
        assert load_checkpoint(tmp_path / "s2" / "best.ckpt")[1].kwargs == spec.kwargs
    test = load_dataset(data, layout=spec.layout).test.subset(range(3))
    scored = predict_logits(model, preprocess_list(test, spec.layout, spec.preprocess))
    step = build_step_model(model, spec, "keep")
    for i, sample in enumerate(test.samples):
        final = run_stream(step, torch.from_numpy(as_stream_frames(sample, step.plan.persons)), end=True)[-1].numpy()
        assert np.abs(final - scored[i]).max() <= 1e-4 * max(1.0, np.abs(scored[i]).max()), i


def test_static_topology_starts_at_the_training_sets_mean_sample():
    """calibrate_static sets each layer's learned topology input to the mean, over the clips, of
    what the windowed layer averages: with one clip the static model IS the windowed one on it."""
    from edgeskel.models.ctrgcn import CTRGC, calibrate_static
    from edgeskel.train.api import load_causal_weights, pick_causal_form

    torch.manual_seed(0)
    kw = {"num_person": 1, "width": 0.125, "num_stages": 5}
    windowed = models.build("ctrgcn", 4, "kinect20", **kw).eval()
    for m in windowed.modules():  # a topology that matters (CTR-GCN starts with alpha 0 and a 1e-6 BN)
        if hasattr(m, "alpha"):
            m.alpha.data.fill_(0.5)
            m.bn.weight.data.fill_(1.0)
    form = pick_causal_form("ctrgcn", "static")
    static = models.build("ctrgcn", 4, "kinect20", **form.kwargs(kw, 32)).eval()
    load_causal_weights(static, windowed, form, "test")
    a, b = torch.randn(1, 3, 20, 20, 1), torch.randn(1, 3, 28, 20, 1)
    calibrate_static(static, windowed, [a])
    with torch.no_grad():
        assert torch.allclose(static(a), windowed(a), atol=1e-5)
        assert not torch.allclose(static(b), windowed(b), atol=1e-3)
    seen = []
    first = next(m for m in windowed.modules() if isinstance(m, CTRGC))
    first.register_forward_hook(lambda mod, args, out: seen.append(args[0].mean(2)[0]))
    calibrate_static(static, windowed, [a, b])
    got = next(m for m in static.modules() if isinstance(m, CTRGC)).static_input
    assert torch.allclose(got, (seen[0] + seen[1]) / 2, atol=1e-6)


def test_an_unknown_causal_form_is_one_error_line(capsys):
    from edgeskel.cli import main

    assert main(["train", "--model", "ctrgcn", "--causal-form", "median", "--data", "synthetic?classes=2&per_class=2",
                 "--epochs", "1", "--out", "/nonexistent/never"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "'median'" in err and "static" in err and len(err.strip().splitlines()) == 1


def test_remove_strides_is_recorded_and_streams_every_frame(finetuned, tmp_path):
    """CoST-GCN's second option as a fine-tune: the checkpoint says strides_removed, every load
    rebuilds the stride-1 network, and its stream decides every frame."""
    from edgeskel.models.temporal import temporal_stride
    from edgeskel.stream import build_step_model
    from edgeskel.train.api import train
    from edgeskel.train.config import TrainConfig

    res, data = finetuned
    cfg = TrainConfig(epochs=1, batch_size=8, optimizer="adamw", lr=1e-3, threads=1)
    out = train(None, data, tmp_path / "rs", cfg, init=res["best_checkpoint"], remove_strides=True, quiet=True)
    model, spec, _ = load_checkpoint(out["best_checkpoint"])
    assert spec.strides_removed and spec.to_dict()["strides_removed"] is True
    assert all(temporal_stride(m) == 1 for m in model.modules())
    _, plain, _ = load_checkpoint(res["best_checkpoint"])
    assert "strides_removed" not in plain.to_dict() and not plain.strides_removed
    assert build_step_model(model, spec, "keep").plan.stride == 1


def test_distillation_teacher_sees_the_clip_as_it_was_trained(tmp_path):
    """`--init W --native-rate --distill 0.5`: the student learns native-rate windows while the
    frozen windowed checkpoint, its teacher, is fed the same clip resampled as in its own training
    (same augmentation draw); the checkpoint records how it was distilled."""
    import torch

    from edgeskel.checkpoint import load_checkpoint
    from edgeskel.cli import main
    from edgeskel.data import load_dataset
    from edgeskel.data.preprocess import preprocess_sample
    from edgeskel.data.torch_dataset import SkeletonTorchDataset

    data = "synthetic?classes=3&per_class=6&frames=40"
    common = ["--data", data, "--epochs", "1", "--batch-size", "6", "--optimizer", "adamw", "--threads", "1", "--json"]
    assert main(["train", "--model", "stgcn", "--width", "0.125", "--frames", "16", "--out", str(tmp_path / "w"),
                 *common]) == 0
    assert main(["train", "--init", str(tmp_path / "w" / "best.ckpt"), "--native-rate", "--frames", "24",
                 "--distill", "0.5", "--out", str(tmp_path / "s"), *common]) == 0
    _, spec, extra = load_checkpoint(tmp_path / "s" / "best.ckpt")
    assert spec.preprocess.native_rate and spec.preprocess.num_frames == 24
    assert extra["distill"]["weight"] == 0.5 and extra["distill"]["teacher_view"]["num_frames"] == 16
    assert not extra["distill"]["teacher_view"].get("native_rate")

    _, w_spec, _ = load_checkpoint(tmp_path / "w" / "best.ckpt")
    ds = load_dataset(data, layout=spec.layout)
    train = SkeletonTorchDataset(ds.train, ds.layout, spec.preprocess, train=True, seed=3, rotate_deg=30.0,
                                 teacher_cfg=w_spec.preprocess)
    x, y, xt = train[2]
    assert x.shape[1] <= 24 and xt.shape[1] == 16 and y == int(ds.train.labels[2])
    rng = np.random.default_rng([3, 0, 2])
    want = preprocess_sample(ds.train.samples[2], ds.layout, w_spec.preprocess, train=True, rng=rng, rotate_deg=30.0)
    assert torch.equal(xt, torch.from_numpy(want))  # the teacher's own view, same rotation draw as the student's
    xb, yb, xtb = train.collate([train[0], train[1]])
    assert xtb.shape[0] == 2 and xtb.shape[2] == 16
    assert main(["train", "--model", "stgcn", "--distill", "0.5", "--out", str(tmp_path / "x"), *common]) == 2
    # from scratch, another checkpoint teaches (--teacher): a streaming form learning from a windowed model
    assert main(["train", "--model", "stgcn", "--width", "0.125", "--native-rate", "--frames", "24", "--distill", "0.5",
                 "--teacher", str(tmp_path / "w" / "best.ckpt"), "--out", str(tmp_path / "t"), *common]) == 0
    _, t_spec, t_extra = load_checkpoint(tmp_path / "t" / "best.ckpt")
    assert t_spec.preprocess.native_rate and t_extra["distill"]["teacher"] == str(tmp_path / "w" / "best.ckpt")
    assert t_extra["distill"]["teacher_view"]["num_frames"] == 16 and "init" not in t_extra
    assert main(["train", "--model", "stgcn", "--teacher", str(tmp_path / "w" / "best.ckpt"), "--out",
                 str(tmp_path / "y"), *common]) == 2  # a teacher without --distill: one error line
    other = "synthetic?classes=4&per_class=3&frames=40"  # a teacher for other classes is refused, naming it
    assert main(["train", "--model", "stgcn", "--distill", "0.5", "--teacher", str(tmp_path / "w" / "best.ckpt"),
                 "--out", str(tmp_path / "z"), *common[:0], "--data", other, *common[2:]]) == 2
