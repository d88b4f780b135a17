"""A user's own GCN written with `torch.einsum` (issue 26) reaches every backend: Einsum is
exported as is for ONNX Runtime / OpenVINO and rewritten to MatMul/Transpose/Reshape for
TensorRT (each rewrite checked against torch.einsum), and a model a backend cannot take stops a
recipe run in seconds, before training, with one error line naming the op and the fix."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
import yaml

from edgeskel.checkpoint import ModelSpec, Preprocess
from edgeskel.errors import ExportError
from edgeskel.export.einsum import EinsumRewriteError, einsum_as_matmul, matmul_einsum
from edgeskel.export.onnx import export_onnx, iter_nodes
from edgeskel.layouts import get_layout
from edgeskel.models import user

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = "examples.user_model.einsum_gcn:build"
DATA = "synthetic?classes=4&per_class=8&test_per_class=4&frames=16"

torch.set_num_threads(1)

# Equations as GCN code bases write them (ST-GCN, 2s-AGCN, CTR-GCN, MS-G3D, Shift-GCN,
# InfoGCN, attention), plus ellipsis, implicit output, one and three operands.
EQUATIONS = [
    ("nkctv,kvw->nctw", [(2, 3, 4, 5, 6), (3, 6, 7)]),
    ("nctv,vw->nctw", [(2, 3, 4, 5), (5, 6)]),
    ("ncuv,nctv->nctu", [(2, 3, 5, 5), (2, 3, 4, 5)]),
    ("nctu,ncuv->nctv", [(2, 3, 4, 5), (2, 3, 5, 5)]),
    ("nctv,nvw->nctw", [(2, 3, 4, 5), (2, 5, 5)]),
    ("kvu,nctv->nkctu", [(3, 5, 5), (2, 4, 6, 5)]),
    ("nwc,cd->nwd", [(2, 3, 4), (4, 6)]),
    ("bhid,bhjd->bhij", [(2, 3, 4, 5), (2, 3, 6, 5)]),
    ("nsctv,svw->nctw", [(2, 3, 4, 5, 6), (3, 6, 7)]),
    ("...ij,...jk->...ik", [(2, 3, 4, 5), (2, 3, 5, 6)]),
    ("ij,jk", [(3, 4), (4, 5)]),
    ("nctv->nc", [(2, 3, 4, 5)]),
    ("nctv,vw,wx->nctx", [(2, 3, 4, 5), (5, 6), (6, 7)]),
    ("nctv,ctv->n", [(2, 3, 4, 5), (3, 4, 5)]),
    ("nct,nct->nc", [(2, 3, 4), (2, 3, 4)]),
    ("i,j->ij", [(3,), (4,)]),
]


@pytest.fixture(autouse=True)
def _repo_cwd(monkeypatch):
    monkeypatch.setattr(user, "_TRUSTED", set())
    monkeypatch.delenv(user.ENV_TRUSTED, raising=False)
    monkeypatch.chdir(REPO)


@pytest.mark.parametrize(("equation", "shapes"), EQUATIONS, ids=[e for e, _ in EQUATIONS])
def test_rewrite_matches_torch_einsum(equation, shapes):
    g = torch.Generator().manual_seed(0)
    ops = [torch.randn(*s, generator=g) for s in shapes]
    want = torch.einsum(equation, *ops)
    got = matmul_einsum(equation, *ops)
    assert got.shape == want.shape
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    with einsum_as_matmul() as seen:  # the mode routes torch.einsum (list form too) to the rewrite
        torch.testing.assert_close(torch.einsum(equation, ops), want, rtol=1e-5, atol=1e-5)
    assert seen == [equation]


def test_unrewritable_equation_is_named():
    with pytest.raises(EinsumRewriteError, match=r"'ii->i'.*torch.diagonal"):
        matmul_einsum("ii->i", torch.randn(3, 3))


def _einsum_model(num_classes: int = 4, persons: int = 1):
    from examples.user_model.einsum_gcn import build

    torch.manual_seed(0)
    net = build(num_classes, 20, 3, persons, hidden=16).eval()
    spec = ModelSpec(name="user", num_classes=num_classes, layout=get_layout("kinect20"), kwargs={},
                     preprocess=Preprocess(num_frames=16, num_person=persons))
    return net, spec


def test_export_keeps_einsum_for_ort_openvino_and_rewrites_it_for_tensorrt(tmp_path):
    import onnxruntime as ort
    import openvino as ov

    from edgeskel.quantize.tensorrt import lint_tensorrt

    net, spec = _einsum_model(persons=2)
    x = torch.randn(3, 3, 16, 20, 2)
    with torch.no_grad():
        ref = net(x).numpy()
    keep = export_onnx(net, spec, tmp_path / "keep.onnx", einsum="keep")
    info: dict = {}
    rew = export_onnx(net, spec, tmp_path / "rewrite.onnx", einsum="rewrite", info=info)
    ops_keep = [n.op_type for n in iter_nodes(onnx.load(str(keep)).graph)]
    ops_rew = [n.op_type for n in iter_nodes(onnx.load(str(rew)).graph)]
    assert ops_keep.count("Einsum") == 7 and "Einsum" not in ops_rew and "MatMul" in ops_rew
    assert set(info["einsum_rewritten"]) == {"nkctv,kvw->nctw", "ncuv,nctv->nctu", "nctv,vw->nctw", "nctv->nc"}
    for path in (keep, rew):
        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        np.testing.assert_allclose(sess.run(None, {"skeleton": x.numpy()})[0], ref, rtol=0, atol=1e-4)
    core = ov.Core()
    compiled = core.compile_model(core.read_model(str(keep)), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    np.testing.assert_allclose(compiled(x.numpy())[0], ref, rtol=0, atol=1e-4)
    lint_keep, lint_rew = lint_tensorrt(keep), lint_tensorrt(rew, dla=True, batch_sizes=[1])
    assert any("Einsum" in w for w in lint_keep["warnings"])
    assert lint_rew["passed"] and not any("Einsum" in w for w in lint_rew["warnings"])


def _write_recipe(tmp_path: Path, model: dict, name: str = "einsum-user", train: dict | None = None,
                  compress: bool = True) -> Path:
    recipe = {
        "name": name, "model": model,
        "data": {"spec": DATA, "frames": 16},
        "export": {"calib_samples": 16},
    }
    if compress:
        recipe["compress"] = {"policy": "fixed", "ratio": 0.5, "min_params": 256, "rank_multiple": 4}
        recipe["finetune"] = {"epochs": 1, "batch_size": 8, "optimizer": "adamw", "lr": 0.001, "warmup_epochs": 0,
                              "kd_weight": 0.5, "threads": 1}
    if train:
        recipe["train"] = train
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


def _profile(tmp_path: Path, device: str, **update) -> Path:
    prof = yaml.safe_load((REPO / "devices" / f"{device}.yaml").read_text())
    prof.update(batch_sizes=[1], **update)
    prof.setdefault("measure", {})
    prof["measure"].update(runs=5, warmup=1)
    path = tmp_path / f"{device}.yaml"
    path.write_text(yaml.safe_dump(prof))
    return path


def _user_checkpoint(tmp_path: Path) -> dict:
    net, _ = _einsum_model()
    torch.save(net.state_dict(), tmp_path / "weights.pt")
    return {"entrypoint": EXAMPLE, "kwargs": {"hidden": 16}, "checkpoint": str(tmp_path / "weights.pt")}


def test_einsum_user_model_through_the_cpu_pipeline(tmp_path, capsys):
    """Done-when of issue 26, CPU half: entrypoint + checkpoint of an einsum GCN through `export
    --device cpu`: every variant of the profile exported (Einsum kept for ONNX Runtime) and
    measured. No compression here (the Jetson half compresses; here it would export every
    variant twice, the uncompressed baseline too)."""
    from edgeskel.cli import main

    recipe = _write_recipe(tmp_path, _user_checkpoint(tmp_path), compress=False)
    out = tmp_path / "runs"
    rc = main(["export", "--device", str(_profile(tmp_path, "cpu")), "--recipe", str(recipe), "--out", str(out)])
    log = capsys.readouterr().out
    run = out / "einsum-user" / "cpu"
    # 4 validation clips: one clip is 25 points, far above the 1-point gate; the log and the report say so
    assert "warning: validation is too small" in " ".join(log.split())
    assert "**Warning:** validation is too small for the 1-point accuracy gates" in (run / "report.md").read_text()
    rep = json.loads((run / "report.json").read_text())
    cpu_profile = yaml.safe_load((REPO / "devices" / "cpu.yaml").read_text())
    assert {v["name"] for v in rep["variants"]} == {f"{v['backend']}-{v['precision']}" for v in cpu_profile["variants"]}
    assert all(v["status"] == "pass" and v["latency_ms"] for v in rep["variants"]), rep["variants"]
    assert rc in (0, 1)  # measured; a gate may fail on 16 test clips, an export may not
    ort_onnx = onnx.load(str(run / "export" / "ort-fp32" / "model.onnx"))
    assert any(n.op_type == "Einsum" for n in ort_onnx.graph.node)  # ORT runs Einsum: kept
    int8 = json.loads((run / "export" / "ort-int8" / "export.json").read_text())
    # INT8 also judged on unlabelled training clips (held out of calibration, then augmented views)
    assert int8["accuracy_gate"]["gate"]["unlabelled"]["samples"] == 512
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["stages"]["export"]["result"]["unlabelled"]["augmented"] > 0
    check = json.loads((run / "check" / "check.json").read_text())
    assert check["passed"] and check["source"].startswith("user model")


def test_einsum_user_model_through_the_jetson_pipeline_and_tensorrt_doubles(tmp_path):
    """Done-when of issue 26, Jetson half: `export --device jetson-orin` of the same entrypoint +
    checkpoint, compressed and fine-tuned, writes a bundle whose TensorRT ONNX (GPU fp16, GPU INT8
    and DLA INT8, of the compressed model and of its uncompressed baseline) has no Einsum, lints
    clean, and is built and run by the TensorRT contract doubles. The profile has no ORT fallback
    (ORT's Einsum route is the CPU half's)."""
    from trt_doubles import install

    from edgeskel.cli import main

    recipe = _write_recipe(tmp_path, _user_checkpoint(tmp_path))
    prof = yaml.safe_load((REPO / "devices" / "jetson-orin.yaml").read_text())
    variants = [v for v in prof["variants"] if v["backend"] == "tensorrt"]
    assert len(variants) == 3  # fp16, INT8, DLA INT8
    out = tmp_path / "runs"
    rc = main(["export", "--device", str(_profile(tmp_path, "jetson-orin", variants=variants)), "--recipe",
               str(recipe), "--out", str(out), "--quiet"])
    assert rc == 3  # NOT MEASURED: no device attached
    run = out / "einsum-user" / "jetson-orin"
    bundle = run / "validate" / "bundle-jetson-orin"
    names = sorted(v.get("name", f"tensorrt-{v['precision']}") for v in variants)
    trt_dirs = sorted((bundle / "artifacts").iterdir())
    assert [d.name for d in trt_dirs] == sorted(names + [f"baseline-{n}" for n in names])
    for d in trt_dirs:
        onnx_files = list(d.rglob("*.onnx"))
        assert onnx_files, d
        for f in onnx_files:
            assert not any(n.op_type == "Einsum" for n in iter_nodes(onnx.load(str(f)).graph)), f
        exp = json.loads((run / ("baseline" if d.name.startswith("baseline-") else "export") / d.name /
                          "export.json").read_text())
        assert exp["lint"]["passed"] and not any("Einsum" in w for w in exp["lint"]["warnings"])
        assert "nkctv,kvw->nctw" in exp["onnx"]["einsum_rewritten"]
    dbl = install(tmp_path, "10.3.0")
    proc = subprocess.run([str(dbl.python), str(bundle / "device_runner.py"), str(bundle), "--out",
                           str(tmp_path / "results.json")], capture_output=True, text=True, timeout=600)
    doc = json.loads((tmp_path / "results.json").read_text())
    trt = {r["name"]: r for r in doc["variants"] if r["backend"] == "tensorrt"}
    assert len(trt) == 6 and all(r["status"] == "ok" for r in trt.values()), (proc.stderr[-2000:], trt)
    assert all("contract double" in r["tensorrt"]["runtime"] for r in trt.values())


def _write_module(tmp_path: Path, monkeypatch, body: str, name: str) -> str:
    (tmp_path / f"{name}.py").write_text(
        "import torch\nimport torch.nn as nn\n\n"
        "class Net(nn.Module):\n"
        "    def __init__(self, num_classes):\n"
        "        super().__init__()\n        self.conv = nn.Conv2d(3, 8, 1)\n        self.head = nn.Linear(8, num_classes)\n"
        "    def forward(self, x):\n"
        "        n, c, t, v, m = x.shape\n        y = self.conv(x.mean(-1))\n"
        f"        {body}\n"
        "        return self.head(y.mean((2, 3)))\n\n"
        "def build(num_classes):\n    return Net(num_classes)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    return f"{name}:build"


@pytest.mark.parametrize(("device", "body", "match"), [
    ("jetson-orin", "y = y + torch.isinf(y).float()", r"cannot be exported for tensorrt: .*IsInf.*fix: replace those ops"),
    ("cpu", "y = torch.cumprod(y, 2)", r"cannot be exported for ort: .*aten::cumprod.*fix: replace that operator"),
])
def test_unexportable_model_fails_before_training(tmp_path, monkeypatch, capsys, device, body, match):
    from edgeskel.cli import main

    entry = _write_module(tmp_path, monkeypatch, body, f"odd_ops_{device.replace('-', '_')}")
    recipe = _write_recipe(tmp_path, {"entrypoint": entry}, name="odd",
                           train={"epochs": 30, "batch_size": 4, "threads": 1})
    t0 = time.perf_counter()
    rc = main(["export", "--device", str(_profile(tmp_path, device)), "--recipe", str(recipe),
               "--out", str(tmp_path / "runs"), "--quiet"])
    elapsed = time.perf_counter() - t0
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and __import__("re").search(match, lines[0]), err
    run = tmp_path / "runs" / "odd" / device
    assert not (run / "reference").exists()  # no training happened
    assert elapsed < 60
    # `edgeskel check` says the same on its own, and passes the einsum model
    capsys.readouterr()
    assert main(["check", "--device", str(_profile(tmp_path, device)), "--recipe", str(recipe)]) == 2
    assert "FAILED" in capsys.readouterr().out


def test_check_command_passes_the_einsum_model(tmp_path, capsys):
    from edgeskel.cli import main

    user.trust_entrypoint(EXAMPLE)
    recipe = _write_recipe(tmp_path, {"entrypoint": EXAMPLE, "kwargs": {"hidden": 16}})
    assert main(["check", "--device", "jetson-orin", "--recipe", str(recipe), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["passed"] and doc["source"] == "untrained"
    trt = doc["routes"]["tensorrt"]
    assert trt["einsum"] == "rewrite" and "ncuv,nctv->nctu" in trt["einsum_rewritten"]
    assert doc["routes"]["ort"]["einsum"] == "keep"


def test_export_error_names_the_einsum_when_rewrite_is_impossible(tmp_path):
    class Diag(torch.nn.Module):
        def forward(self, x):
            a = x.mean((0, 1, 4))[:16, :16]  # (T, V) -> a square slice
            return x.flatten(1)[:, :4] + torch.einsum("ii->i", a)[:4]

    spec = ModelSpec(name="user", num_classes=4, layout=get_layout("kinect20"), kwargs={},
                     preprocess=Preprocess(num_frames=16, num_person=1))
    with pytest.raises(ExportError, match=r"'ii->i'"):
        export_onnx(Diag(), spec, tmp_path / "d.onnx", einsum="rewrite", batch=None)


def test_pool_sized_by_the_input_exports_with_a_dynamic_batch(tmp_path):
    """`F.avg_pool2d(x, x.size()[2:])` (the official ST-GCN's global pool; stream_gcn.py) exports
    with edgeskel's dynamic batch axis and runs on ONNX Runtime at batch 1 and 3."""
    import onnxruntime as ort

    from examples.user_model.stream_gcn import build

    torch.manual_seed(0)
    net = build(4, 20, 3, 2, hidden=16).eval()
    spec = ModelSpec(name="user", num_classes=4, layout=get_layout("kinect20"), kwargs={},
                     preprocess=Preprocess(num_frames=16, num_person=2))
    path = export_onnx(net, spec, tmp_path / "m.onnx")
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for n in (1, 3):
        x = torch.randn(n, 3, 16, 20, 2)
        with torch.no_grad():
            ref = net(x).numpy()
        got = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0]
        assert np.abs(got - ref).max() <= 1e-4 * max(1.0, np.abs(ref).max())
    import torch.nn.functional as F

    assert F.avg_pool2d is torch._C._nn.avg_pool2d  # restored after the export
