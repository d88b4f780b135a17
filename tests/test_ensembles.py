"""Multi-stream ensembles as one graph (issue 31, docs/ENSEMBLES.md).

The official-fixture tests rebuild the official ensembles from the official sources, reimplemented
here line by line (numpy, cited file and line), and compare with the one-module ensemble that
imports the official checkpoint once per stream (the same weights on every stream: what is
tested is the in-graph input views and the fusion; each stream's forward is tested against the
official logits in test_models_import.py and again here for the joint stream).
Sources: Uason-Chen/CTR-GCN @ e13d758 (the ctrgcn-ntu60 fixture's commit) and
kennymckormick/pyskl @ 3f6795f (the pyskl-* fixtures' commit).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from edgeskel import models
from edgeskel.checkpoint import load_checkpoint, save_checkpoint
from edgeskel.ensembles import StreamSpec, assemble, load_stream
from edgeskel.errors import ConfigError
from edgeskel.layouts import get_layout

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "official"

# ---- the official code, reimplemented ------------------------------------------------------
# CTR-GCN feeders/bone_pairs.py lines 1-5 (1-based (v1, v2); (21, 21) is the root)
CTRGCN_NTU_PAIRS = (
    (1, 2), (2, 21), (3, 21), (4, 3), (5, 21), (6, 5), (7, 6), (8, 7), (9, 21), (10, 9), (11, 10), (12, 11),
    (13, 1), (14, 13), (15, 14), (16, 15), (17, 1), (18, 17), (19, 18), (20, 19), (22, 23), (21, 21), (23, 8),
    (24, 25), (25, 12),
)


def ctrgcn_feeder(x: np.ndarray, bone: bool, vel: bool) -> np.ndarray:
    """CTR-GCN feeders/feeder_ntu.py Feeder.__getitem__ lines 84-92, after valid_crop_resize
    (line 81, the window the graph receives), for one sample (C, T, V, M)."""
    data_numpy = np.array(x)
    if bone:
        bone_data_numpy = np.zeros_like(data_numpy)
        for v1, v2 in CTRGCN_NTU_PAIRS:
            bone_data_numpy[:, :, v1 - 1] = data_numpy[:, :, v1 - 1] - data_numpy[:, :, v2 - 1]
        data_numpy = bone_data_numpy
    if vel:
        data_numpy[:, :-1] = data_numpy[:, 1:] - data_numpy[:, :-1]
        data_numpy[:, -1] = 0
    return data_numpy


def ctrgcn_ensemble_py(r1, r2, r3=None, r4=None, alpha: float = 1.0) -> np.ndarray:
    """CTR-GCN ensemble.py: lines 69/76 (four streams), 85/91 (three), 104 (two); r* are the raw
    scores main.py pickles (lines 448-450: `output = self.model(data)`, line 479-490 score_dict)."""
    if r3 is not None and r4 is not None:
        a = [0.6, 0.6, 0.4, 0.4]
        return r1 * a[0] + r2 * a[1] + r3 * a[2] + r4 * a[3]
    if r3 is not None:
        a = [0.6, 0.6, 0.4]
        return r1 * a[0] + r2 * a[1] + r3 * a[2]
    return r1 + r2 * alpha


# PYSKL pyskl/datasets/pipelines/pose_related.py JointToBone lines 304-312 (0-based (v1, v2))
PYSKL_PAIRS = {
    "nturgb+d": ((0, 1), (1, 20), (2, 20), (3, 2), (4, 20), (5, 4), (6, 5), (7, 6), (8, 20), (9, 8), (10, 9),
                 (11, 10), (12, 0), (13, 12), (14, 13), (15, 14), (16, 0), (17, 16), (18, 17), (19, 18), (21, 22),
                 (20, 20), (22, 7), (23, 24), (24, 11)),
    "coco": ((0, 0), (1, 0), (2, 0), (3, 1), (4, 2), (5, 0), (6, 0), (7, 5), (8, 6), (9, 7), (10, 8), (11, 0),
             (12, 0), (13, 11), (14, 12), (15, 13), (16, 14)),
}


def pyskl_joint_to_bone(keypoint: np.ndarray, dataset: str) -> np.ndarray:
    """JointToBone.__call__ lines 318-332, keypoint (M, T, V, C)."""
    M, T, V, C = keypoint.shape
    bone = np.zeros((M, T, V, C), dtype=np.float32)
    for v1, v2 in PYSKL_PAIRS[dataset]:
        bone[..., v1, :] = keypoint[..., v1, :] - keypoint[..., v2, :]
        if C == 3 and dataset in ["openpose", "coco"]:
            score = (keypoint[..., v1, 2] + keypoint[..., v2, 2]) / 2
            bone[..., v1, 2] = score
    return bone


def pyskl_to_motion(data: np.ndarray, dataset: str) -> np.ndarray:
    """ToMotion.__call__ lines 343-356, data (M, T, V, C)."""
    M, T, V, C = data.shape
    motion = np.zeros_like(data)
    motion[:, :T - 1] = np.diff(data, axis=1)
    if C == 3 and dataset in ["openpose", "coco"]:
        score = (data[:, :T - 1, :, 2] + data[:, 1:, :, 2]) / 2
        motion[:, :T - 1, :, 2] = score
    return motion


def pyskl_gen_ske_feat(keypoint: np.ndarray, feat: str, dataset: str = "nturgb+d") -> np.ndarray:
    """GenSkeFeat (lines 377-401) for one of feats j, b, jm, bm: bones first, motion of j or b."""
    if feat == "j":
        return keypoint
    if feat == "jm":
        return pyskl_to_motion(keypoint, dataset)
    b = pyskl_joint_to_bone(keypoint, dataset)
    return b if feat == "b" else pyskl_to_motion(b, dataset)


def pyskl_comb(scores, coeffs):
    """pyskl/smp.py comb, lines 77-81 (configs/*/README.md: 1:1 for two streams, 2:2:1:1 for four)."""
    ret = [x * coeffs[0] for x in scores[0]]
    for i in range(1, len(scores)):
        ret = [x + y for x, y in zip(ret, [x * coeffs[i] for x in scores[i]])]  # noqa: B905  (as in smp.py)
    return ret


def softmax(x: np.ndarray) -> np.ndarray:
    """pyskl/models/recognizers/base.py average_clip line 105 ('prob', the RecognizerGCN default,
    recognizergcn.py lines 68-69) for one clip."""
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _fixture(name: str) -> Path:
    d = FIXTURES / name
    if not (d / "meta.json").is_file():
        pytest.skip(f"official fixture {d} not present")
    return d


def _run(net: torch.nn.Module, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return net(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))).numpy()


# ---- official ensembles --------------------------------------------------------------------
@pytest.mark.parametrize("views", [("joint", "bone"), ("joint", "bone", "motion"),
                                   ("joint", "bone", "motion", "bone_motion")])
def test_ctrgcn_official_ensemble_reproduces_feeder_and_ensemble_py(views):
    d = _fixture("ctrgcn-ntu60")
    x = np.load(d / "input.npy")  # (N, C, T, V, M), the window the feeder's valid_crop_resize gives
    streams = [load_stream(StreamSpec(d / "checkpoint.pt", input=v, import_from="ctrgcn"), i)
               for i, v in enumerate(views)]
    net, spec = assemble(streams)
    assert spec.kwargs["fusion"] == "logits"
    assert [s["weight"] for s in spec.kwargs["streams"]] == ([1.0, 1.0] if len(views) == 2 else
                                                            [0.6, 0.6, 0.4, 0.4][:len(views)])
    single = streams[0].model
    flags = {"joint": (False, False), "bone": (True, False), "motion": (False, True), "bone_motion": (True, True)}
    scores = [_run(single, np.stack([ctrgcn_feeder(s, *flags[v]) for s in x])) for v in views]
    np.testing.assert_allclose(scores[0], np.load(d / "logits.npy"), rtol=0, atol=1e-4)  # the official joint scores
    official = ctrgcn_ensemble_py(*scores)
    ours = _run(net, x)
    np.testing.assert_allclose(ours, official, rtol=0, atol=1e-4)
    assert (ours.argmax(1) == official.argmax(1)).all()
    with torch.no_grad():
        per_stream = [s.numpy() for s in net.stream_scores(torch.from_numpy(x))]
    for ref, got in zip(scores, per_stream, strict=True):
        np.testing.assert_allclose(got, ref, rtol=0, atol=1e-5)


@pytest.mark.parametrize("feats", [("j", "b"), ("j", "b", "jm", "bm")])
def test_pyskl_official_ensemble_reproduces_gen_ske_feat_and_comb(feats):
    """PYSKL: softmax scores (recognizer test mode, one clip) fused by smp.comb, 1:1 / 2:2:1:1.
    The views are computed on the clip the graph receives; PYSKL computes them before
    UniformSample, which is the same only for a contiguous clip (docs/ENSEMBLES.md)."""
    d = _fixture("pyskl-ctrgcn-ntu60")
    kp = np.load(d / "input.npy")  # (N, M, T, V, C): one contiguous clip per sample
    streams = [load_stream(StreamSpec(d / "checkpoint.pth", input=f, import_from="pyskl"), i)
               for i, f in enumerate(feats)]
    net, spec = assemble(streams)
    assert spec.kwargs["fusion"] == "softmax"
    coeffs = [1, 1] if len(feats) == 2 else [2, 2, 1, 1]
    assert [s["weight"] for s in spec.kwargs["streams"]] == coeffs
    single = streams[0].model
    probs = []
    for f in feats:
        feat = np.stack([pyskl_gen_ske_feat(s, f) for s in kp])  # per sample (M, T, V, C)
        probs.append(softmax(_run(single, feat.transpose(0, 4, 2, 3, 1))))
    np.testing.assert_allclose(probs[0], np.load(d / "recognizer_test_scores.npy"), rtol=0, atol=1e-5)
    official = np.stack(pyskl_comb(probs, coeffs))
    ours = _run(net, kp.transpose(0, 4, 2, 3, 1))
    np.testing.assert_allclose(ours, official, rtol=0, atol=1e-5)


def test_pyskl_coco_views_with_score_channel_match_joint_to_bone_and_to_motion():
    """PYSKL 2D (x, y, score) COCO: its own bone pairs (hips from the nose) and mean scores."""
    from edgeskel.models.ensemble import PYSKL_BONE_PAIRS, Views, parent_index

    lay = get_layout("coco17")
    views = Views(parent_index(lay, PYSKL_BONE_PAIRS["coco17"]), score_channel=True)
    kp = np.random.default_rng(0).standard_normal((2, 2, 9, 17, 3)).astype(np.float32)  # (N, M, T, V, C)
    got = views(torch.from_numpy(kp.transpose(0, 4, 2, 3, 1).copy()), ["bone", "motion", "bone_motion"])
    for feat, view in (("b", "bone"), ("jm", "motion"), ("bm", "bone_motion")):
        ref = np.stack([pyskl_gen_ske_feat(s, feat, "coco") for s in kp]).transpose(0, 4, 2, 3, 1)
        np.testing.assert_allclose(got[view].numpy(), ref, rtol=0, atol=1e-6)


def test_layout_bones_are_the_official_pairs_for_ntu():
    from edgeskel.models.ensemble import Views, parent_index

    x = np.random.default_rng(1).standard_normal((2, 3, 7, 25, 2)).astype(np.float32)
    got = Views(parent_index(get_layout("ntu25")))(torch.from_numpy(x), ["bone"])["bone"].numpy()
    np.testing.assert_array_equal(got, np.stack([ctrgcn_feeder(s, True, False) for s in x]))
    ref = np.stack([pyskl_joint_to_bone(s, "nturgb+d")
                    for s in x.transpose(0, 4, 2, 3, 1)]).transpose(0, 4, 2, 3, 1)
    np.testing.assert_array_equal(got, ref)


# ---- checkpoints and errors ----------------------------------------------------------------
def _tiny_stream(tmp_path: Path, name: str, view: str, classes: int = 4, layout: str = "ntu25", seed: int = 0):
    from edgeskel.checkpoint import ModelSpec, Preprocess

    torch.manual_seed(seed)
    kw = {"width": 0.125, "num_stages": 5, "num_person": 2}
    net = models.build("stgcn", classes, layout, **kw).eval()
    spec = ModelSpec("stgcn", classes, get_layout(layout), kw, preprocess=Preprocess(16, 2, view))
    return save_checkpoint(tmp_path / f"{name}.ckpt", net, spec)


def test_ensemble_checkpoint_is_self_describing_and_weights_only(tmp_path):
    paths = [_tiny_stream(tmp_path, v, v, seed=i) for i, v in enumerate(("joint", "bone", "motion", "bone_motion"))]
    streams = [load_stream(StreamSpec(p), i) for i, p in enumerate(paths)]
    assert [s.view for s in streams] == ["joint", "bone", "motion", "bone_motion"]  # from each checkpoint
    net, spec = assemble(streams)
    assert spec.kwargs["fusion"] == "softmax" and [s["weight"] for s in spec.kwargs["streams"]] == [2, 2, 1, 1]
    assert spec.preprocess.streams == "joint" and spec.preprocess.num_frames == 16
    out = save_checkpoint(tmp_path / "ens.ckpt", net, spec)
    payload = torch.load(out, map_location="cpu", weights_only=True)
    assert payload["spec"]["name"] == "ensemble"
    again, spec2, _ = load_checkpoint(out)
    x = torch.randn(3, 3, 16, 25, 2)
    with torch.no_grad():
        torch.testing.assert_close(again(x), net(x), rtol=0, atol=0)
        ref = sum(w * s.model(v).softmax(-1) for s, v, w in zip(
            streams, (x, net.transform.bone(x), net.transform.motion(x), net.transform.motion(net.transform.bone(x))),
            (2, 2, 1, 1), strict=True))
        torch.testing.assert_close(net(x), ref, rtol=0, atol=1e-6)
    assert json.dumps(spec2.to_dict())  # plain data


def test_streams_that_do_not_fit_are_refused_naming_the_files(tmp_path):
    a = _tiny_stream(tmp_path, "a", "joint")
    b = _tiny_stream(tmp_path, "b", "bone", classes=5)
    c = _tiny_stream(tmp_path, "c", "bone", layout="kinect20")
    with pytest.raises(ConfigError, match=r"b\.ckpt.*different class counts \(5 vs 4\)"):
        assemble([load_stream(StreamSpec(a), 0), load_stream(StreamSpec(b), 1)])
    with pytest.raises(ConfigError, match=r"c\.ckpt.*different layouts"):
        assemble([load_stream(StreamSpec(a), 0), load_stream(StreamSpec(c), 1)])
    with pytest.raises(ConfigError, match=r"b\.ckpt.*trained on 'bone' input.*'motion'"):
        load_stream(StreamSpec(b, input="motion"), 1)
    with pytest.raises(ConfigError, match="used twice"):
        assemble([load_stream(StreamSpec(a), 0), load_stream(StreamSpec(a), 1)])
    with pytest.raises(ConfigError, match="unknown input view 'velocity'"):
        load_stream(StreamSpec(a, input="velocity"), 0)


# ---- edgeskel import of several checkpoints ------------------------------------------------
def test_import_several_official_checkpoints_into_one_ensemble(tmp_path, capsys):
    from edgeskel.cli import main

    d = _fixture("ctrgcn-ntu60")
    ck = str(d / "checkpoint.pt")
    out = tmp_path / "ens.ckpt"
    rc = main(["import", ck, ck, ck, ck, "--inputs", "joint,bone,jm,bm", "--out", str(out), "--json"])
    assert rc == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["fusion"] == "logits" and [s["weight"] for s in summary["streams"]] == [0.6, 0.6, 0.4, 0.4]
    assert [s["input"] for s in summary["streams"]] == ["joint", "bone", "motion", "bone_motion"]
    assert {s["source"] for s in summary["streams"]} == {"ctrgcn"}
    assert torch.load(out, map_location="cpu", weights_only=True)["extra"]["streams"][0]["sha256"]
    net, spec, _ = load_checkpoint(out)
    x = np.load(d / "input.npy")
    scores = [_run(net.streams["joint"], np.stack([ctrgcn_feeder(s, b, m) for s in x]))
              for b, m in ((False, False), (True, False), (False, True), (True, True))]
    np.testing.assert_allclose(_run(net, x), ctrgcn_ensemble_py(*scores), rtol=0, atol=1e-4)


def test_import_ensemble_errors_are_one_line(tmp_path, capsys):
    from edgeskel.cli import main

    a = _tiny_stream(tmp_path, "a", "joint")
    b = _tiny_stream(tmp_path, "b", "bone", classes=5)
    rc = main(["import", str(a), str(b), "--out", str(tmp_path / "e.ckpt")])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("error:") == 1 and "b.ckpt" in err and "class counts" in err and "Traceback" not in err
    rc = main(["import", str(a), str(a), "--inputs", "joint", "--out", str(tmp_path / "e.ckpt")])
    err = capsys.readouterr().err
    assert rc == 2 and "--inputs 'joint': give 2 comma-separated values" in err
    d = _fixture("ctrgcn-ntu60")
    rc = main(["import", str(d / "checkpoint.pt"), str(a), "--out", str(tmp_path / "e.ckpt")])
    err = capsys.readouterr().err
    assert rc == 2 and "does not say which input" in err
