"""`edgeskel stream` replays a recorded sequence frame by frame (issue 29 item 5): from a
checkpoint (PyTorch step model) and from an exported streaming artifact (ONNX Runtime, driven by
streaming.json); both give the same decisions, and bad input is one error line."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgeskel import models
from edgeskel.checkpoint import ModelSpec, Preprocess, save_checkpoint
from edgeskel.layouts import get_layout


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    import torch

    torch.manual_seed(0)
    lay = get_layout("kinect20")
    kwargs = {"num_person": 1, "width": 0.125, "num_stages": 3}
    net = models.build("stgcn", 4, lay, **kwargs)
    spec = ModelSpec(name="stgcn", num_classes=4, layout=lay, kwargs=kwargs, class_names=["wave", "clap", "kick", "bow"],
                     preprocess=Preprocess(num_frames=16, num_person=1))
    path = tmp_path_factory.mktemp("stream") / "m.ckpt"
    save_checkpoint(path, net.eval(), spec)
    return path


def test_stream_from_checkpoint_and_from_artifact_agree(ckpt, tmp_path, capsys):
    from edgeskel.cli import main

    seq = np.random.default_rng(0).standard_normal((3, 40, 20, 1)).astype(np.float32)
    np.save(tmp_path / "seq.npy", seq)
    assert main(["stream", "--checkpoint", str(ckpt), "--input", str(tmp_path / "seq.npy"), "--json"]) == 0
    torch_doc = json.loads(capsys.readouterr().out)
    assert main(["export", "--checkpoint", str(ckpt), "--backend", "ort", "--precision", "fp32", "--form", "streaming",
                 "--out", str(tmp_path / "art")]) == 0
    capsys.readouterr()
    assert main(["stream", "--artifact", str(tmp_path / "art"), "--input", str(tmp_path / "seq.npy"), "--json",
                 "--plot", str(tmp_path / "p.png")]) == 0
    ort_doc = json.loads(capsys.readouterr().out)
    assert (tmp_path / "p.png").stat().st_size > 0
    plan_calls = 40 // torch_doc["stride"]
    assert len(torch_doc["decisions"]) == len(ort_doc["decisions"]) > plan_calls  # + the calls that end it
    ending = [d for d in torch_doc["decisions"] if d["ending"]]
    assert ending and all(d["frame"] == 40 for d in ending) and ending[-1]["valid"]
    assert [d["class"] for d in torch_doc["decisions"] if d["valid"]] == [d["class"] for d in ort_doc["decisions"] if d["valid"]]
    assert any(d["valid"] for d in torch_doc["decisions"]) and torch_doc["decisions"][-1]["name"] in ["wave", "clap", "kick", "bow"]
    assert main(["stream", "--checkpoint", str(ckpt), "--input", str(tmp_path / "seq.npy")]) == 0
    text = capsys.readouterr().out
    assert "stream ended, decision to its last frame (frame 40)" in text
    assert all(len(line) <= 80 for line in text.splitlines())
    assert main(["stream", "--checkpoint", str(ckpt), "--input", str(tmp_path / "seq.npy"), "--no-end", "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)["decisions"]) == plan_calls


def test_stream_refuses_bad_input_with_one_line(ckpt, tmp_path, capsys):
    from edgeskel.cli import main

    np.save(tmp_path / "bad.npy", np.zeros((3, 40, 25, 1), np.float32))  # 25 joints for a 20-joint model
    assert main(["stream", "--checkpoint", str(ckpt), "--input", str(tmp_path / "bad.npy")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "V=20" in err and "Traceback" not in err
    assert main(["stream", "--input", str(tmp_path / "bad.npy")]) == 2
    empty = tmp_path / "empty.npy"
    empty.write_bytes(b"")
    np.savez(tmp_path / "two.npz", a=np.zeros((3, 40, 20, 1), np.float32))
    for path, says in ((empty, "not a readable .npy array"), (tmp_path / "two.npz", "archive")):
        capsys.readouterr()
        assert main(["stream", "--checkpoint", str(ckpt), "--input", str(path)]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error:") and says in err and str(path) in err and "Traceback" not in err


@pytest.fixture(scope="module")
def artifact(ckpt, tmp_path_factory):
    from edgeskel.cli import main

    out = tmp_path_factory.mktemp("art") / "a"
    assert main(["export", "--checkpoint", str(ckpt), "--backend", "ort", "--precision", "fp32", "--form", "streaming",
                 "--out", str(out)]) == 0
    return out


def _mutations(c: dict) -> dict:
    s0 = c["state"][0]
    return {
        "stride 0": ({**c, "stride": 0}, "stride must be an integer"),
        "stride text": ({**c, "stride": "4"}, "stride must be an integer"),
        "flush forever": ({**c, "flush_calls": 10**9}, "flush_calls must be an integer"),
        "huge state": ({**c, "state": [{**s0, "shape": [1, 10**9, 10**9]}, *c["state"][1:]]}, "shape must be positive"),
        "nan initial": ({**c, "state": [{**s0, "initial": float("nan")}, *c["state"][1:]]}, "initial must be a finite"),
        "file outside": ({**c, "files": {"onnx": "../../etc/passwd"}}, "must be a file name inside the artifact"),
        "frame shape": ({**c, "frame_shape": [1, 3, 1, 20]}, "frame_shape must be 5 positive integers"),
        "state rank": ({**c, "state": [{**s0, "shape": [1, 2]}, *c["state"][1:]]}, "does not take what"),
        "state name": ({**c, "state": [{**s0, "input": "nope"}, *c["state"][1:]]}, "does not take what"),
        "a state short": ({**c, "state": c["state"][:-1]}, "does not take what"),
    }


def test_a_damaged_or_hostile_streaming_json_is_one_error_line(artifact, tmp_path, capsys):
    """An artifact folder is user input: a streaming.json that is out of range, points outside the
    folder or does not describe its graph is refused in one line before anything runs on it."""
    import shutil

    from edgeskel.cli import main

    seq = tmp_path / "seq.npy"
    np.save(seq, np.random.default_rng(0).standard_normal((3, 12, 20, 1)).astype(np.float32))
    good = json.loads((artifact / "streaming.json").read_text())
    for name, (bad, says) in _mutations(good).items():
        d = tmp_path / name.replace(" ", "-")
        shutil.copytree(artifact, d)
        (d / "streaming.json").write_text(json.dumps(bad))
        capsys.readouterr()
        assert main(["stream", "--artifact", str(d), "--input", str(seq)]) == 2, name
        err = capsys.readouterr().err
        assert err.startswith("error:") and says in err and "Traceback" not in err, (name, err)
