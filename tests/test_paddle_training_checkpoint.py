"""A native Paddle *training* checkpoint (issue 26 item 4): what the Paddle EfficientGCN ports
write every epoch (Wuxiao85/paddle_EfficientGCNv `processor.py`: `paddle.save({"model":
model.state_dict(), "opt": optimizer.state_dict(), "epoch": epoch, "best_state": best_state,
"scheduler": scheduler.state_dict()}, "sub/model.pdparams")`). Such a dict is not a plain
state_dict, so `paddle.save` pickles it directly and every tensor in it becomes the tuple
`(tensor.name, ndarray)` (`reduce_varbase` returns `(tuple, ((name, data),))`). Paddle is not
installed here, so `_PaddleTensor` below reduces exactly that way, giving the same pickle
opcodes. The file must import through the restricted unpickler and reproduce the logits of the
model the weights came from; hostile variants get one clear error naming the file."""

from __future__ import annotations

import os
import pickle
import pickletools
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn

from edgeskel import models
from edgeskel.checkpoint import load_checkpoint
from edgeskel.cli import main
from edgeskel.errors import CheckpointError
from edgeskel.importers import import_checkpoint, sniff

torch.set_num_threads(1)
FIXTURE = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "official" / "efficientgcn-b0-ntu60"


class _PaddleTensor:
    """Pickles as `paddle.save` pickles a Paddle Tensor/Parameter (paddle/framework/io.py
    `_pickle_save.reduce_varbase`): `builtins.tuple` applied to (tensor.name, tensor.numpy())."""

    def __init__(self, name: str, data: np.ndarray):
        self.name, self.data = name, data

    def __reduce__(self):
        return (tuple, ((self.name, self.data),))


class _LoDTensor:
    """Paddle's `reduce_LoDTensor`: `(eval, ('data', {'data': array}))`; never run here."""

    def __init__(self, data: np.ndarray):
        self.data = data

    def __reduce__(self):
        return (eval, ("data", {"data": self.data}))


class _Boom:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _tiny_efficientgcn() -> tuple[nn.Module, torch.Tensor]:
    """Three input branches (stem + one block) and a stride-2 main stream; weights and BN
    statistics moved off their init so the logits depend on every entry."""
    torch.manual_seed(0)
    net = models.build("efficientgcn", 6, "ntu25", stem_channel=8, blocks=[[8, 1, 0], [16, 2, 1]], fusion_stage=1)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in net.named_parameters():
            p.add_(torch.randn(p.shape, generator=g) * (0.05 if name.endswith("edge") else 0.2))
        for m in net.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.running_mean.normal_(0, 0.1, generator=g)
                m.running_var.uniform_(0.5, 1.5, generator=g)
    return net.eval(), torch.randn(2, 3, 16, 25, 2, generator=g)


def _paddle_state(state: dict[str, torch.Tensor], plain_every: int = 0) -> OrderedDict:
    """A torch state_dict as a Paddle `model.state_dict()` in a training container: BN stats
    `_mean`/`_variance`, no `num_batches_tracked`, each value `(paddle_name, ndarray)`; with
    `plain_every=n`, every n-th entry a plain ndarray instead (also accepted)."""
    out = OrderedDict()
    for i, (k, v) in enumerate((k, v) for k, v in state.items() if not k.endswith("num_batches_tracked")):
        k = k.replace(".running_mean", "._mean").replace(".running_var", "._variance")
        arr = v.numpy().copy()
        out[k] = arr if plain_every and i % plain_every == 0 else _PaddleTensor(f"create_parameter_{i}.w_0", arr)
    return out


def _write_training_checkpoint(path: Path, model_state: OrderedDict, protocol: int = 4, opt_extra=None) -> bytes:
    """The container the Paddle EfficientGCN port saves each epoch (paddle.save default protocol 4)."""
    opt = OrderedDict()  # Momentum: one velocity accumulator per parameter, plus the LR scheduler state
    for v in model_state.values():
        if isinstance(v, _PaddleTensor):
            opt[f"{v.name}_velocity_0"] = _PaddleTensor(f"{v.name}_velocity_0", np.zeros_like(v.data))
    opt["LR_Scheduler"] = {"last_epoch": 1320, "last_lr": 0.0912}
    opt.update(opt_extra or {})
    obj = {
        "model": model_state,
        "opt": opt,
        "epoch": 4,
        "best_state": {"acc_top1": 0.5, "acc_top5": 0.875, "cm": np.eye(6)},
        "scheduler": {"last_epoch": 1320, "last_lr": np.float64(0.0912)},
    }
    data = pickle.dumps(obj, protocol=protocol)
    path.write_bytes(data)
    return data


def _cli_refusal(path: Path, tmp_path: Path, capsys, *needles: str) -> str:
    with pytest.raises(CheckpointError) as exc:
        import_checkpoint(path)
    msg = str(exc.value)
    assert str(path) in msg, msg
    for n in needles:
        assert n in msg, msg
    rc = main(["import", str(path), "--out", str(tmp_path / "o.ckpt")])  # CLI: one line, exit 2, no traceback
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    assert not (tmp_path / "o.ckpt").exists()
    return msg


@pytest.mark.parametrize(("protocol", "plain_every"), [(4, 0), (2, 0), (4, 3)],
                         ids=["protocol4", "protocol2", "mixed-plain-arrays"])
def test_paddle_training_checkpoint_imports_and_reproduces_logits(tmp_path, protocol, plain_every):
    net, x = _tiny_efficientgcn()
    path = tmp_path / "model.pdparams"
    data = _write_training_checkpoint(path, _paddle_state(net.state_dict(), plain_every), protocol)
    # the file really holds tensors as paddle.save writes them: builtins.tuple REDUCEd over (name, array)
    ops = [(op.name, arg) for op, arg, _ in pickletools.genops(data)]
    assert ("REDUCE", None) in ops and any(arg in ("tuple", "__builtin__ tuple", "builtins tuple") for _, arg in ops)
    assert sniff(path) == "paddle"
    imported, spec, info = import_checkpoint(path)
    assert (info["format"], info["framework"], info["source"], info["model"]) == (
        "paddle", "paddle", "efficientgcn", "efficientgcn")
    assert spec.num_classes == 6 and spec.layout.name == "ntu25"
    with torch.no_grad():
        ref = net(x)
        assert ref.abs().max() > 1e-2
        torch.testing.assert_close(imported(x), ref, atol=1e-5, rtol=0)


def test_cli_import_of_a_paddle_training_checkpoint(tmp_path):
    """`edgeskel import sub/model.pdparams --out FILE`: the saved edgeskel checkpoint gives the
    same logits; optimizer, scheduler, epoch and best_state are not carried over."""
    net, x = _tiny_efficientgcn()
    path = tmp_path / "sub" / "model.pdparams"
    path.parent.mkdir()
    _write_training_checkpoint(path, _paddle_state(net.state_dict()))
    out = tmp_path / "eff.ckpt"
    assert main(["import", str(path), "--out", str(out)]) == 0
    again, spec, _ = load_checkpoint(out)
    assert spec.name == "efficientgcn"
    with torch.no_grad():
        torch.testing.assert_close(again(x), net(x), atol=1e-5, rtol=0)


def test_official_b0_weights_in_a_paddle_training_checkpoint_reproduce_the_official_logits(tmp_path):
    if not (FIXTURE / "checkpoint.pth.tar").is_file():
        pytest.skip(f"official fixture {FIXTURE} not present")
    official = torch.load(FIXTURE / "checkpoint.pth.tar", map_location="cpu", weights_only=True)
    path = tmp_path / "model.pdparams"
    _write_training_checkpoint(path, _paddle_state(official["model"]))
    net, spec, info = import_checkpoint(path)
    assert info["format"] == "paddle" and info["source"] == "efficientgcn" and spec.kwargs["variant"] == "B0"
    with torch.no_grad():
        logits = net(torch.from_numpy(np.load(FIXTURE / "raw_input.npy"))).numpy()
    np.testing.assert_allclose(logits, np.load(FIXTURE / "logits.npy"), rtol=0, atol=1e-4)


# ---- hostile / malformed -----------------------------------------------------------------------
@pytest.mark.parametrize("junk", [("create_parameter_0.w_0", "not an array"), ("w", [0.5, 1.5]), (np.zeros(3), "w")],
                         ids=["str", "list", "swapped"])
def test_tuple_without_an_array_is_one_clear_error(tmp_path, capsys, junk):
    net, _ = _tiny_efficientgcn()
    state = _paddle_state(net.state_dict())
    state["classifier.fc.weight"] = junk
    path = tmp_path / "model.pdparams"
    _write_training_checkpoint(path, state)
    msg = _cli_refusal(path, tmp_path, capsys, "not a state_dict", "'model'", "classifier.fc.weight (tuple (")
    assert "input_branches" not in msg  # only the bad entry is named


def test_disallowed_global_in_optimizer_state_is_refused_without_running_it(tmp_path, capsys):
    marker = tmp_path / "pwned"
    net, _ = _tiny_efficientgcn()
    path = tmp_path / "model.pdparams"
    _write_training_checkpoint(path, _paddle_state(net.state_dict()), opt_extra={"hook": _Boom(marker)})
    _cli_refusal(path, tmp_path, capsys, "Paddle checkpoint", "refused", "system", "numpy arrays only")
    assert not marker.exists()


def test_paddle_lodtensor_eval_form_is_refused(tmp_path, capsys):
    """Paddle pickles a raw LoDTensor as `eval('data', {'data': array})`; `eval` is never
    allowed, so such a file is refused (a dygraph model/optimizer state never holds one)."""
    net, _ = _tiny_efficientgcn()
    path = tmp_path / "model.pdparams"
    _write_training_checkpoint(path, _paddle_state(net.state_dict()), opt_extra={"t": _LoDTensor(np.zeros(2))})
    _cli_refusal(path, tmp_path, capsys, "Paddle checkpoint", "refused to unpickle global builtins.eval")


def test_plain_numbers_arrays_and_dicts_in_optimizer_state_are_fine(tmp_path):
    """Optimizer entries made only of numbers, strings, arrays, lists and nested dicts load (as
    plain data) and are dropped; the weights still come from `model`."""
    net, x = _tiny_efficientgcn()
    path = tmp_path / "model.pdparams"
    extra = {"master_weights": {"w": np.ones(3, np.float32)}, "beta1_pow_acc_0": np.float32(0.9),
             "steps": [1, 2, 3], "note": "momentum", "flags": (True, None)}
    _write_training_checkpoint(path, _paddle_state(net.state_dict()), opt_extra=extra)
    imported, _, _ = import_checkpoint(path)
    with torch.no_grad():
        torch.testing.assert_close(imported(x), net(x), atol=1e-5, rtol=0)
