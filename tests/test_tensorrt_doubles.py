"""TensorRT routes, DLA and the device loop with CONTRACT DOUBLES of trtexec and the tensorrt
runtime (tests/doubles; TensorRT cannot run here). The doubles accept only the documented flags /
API of the TensorRT version they stand for and compute logits with ONNX Runtime: these tests prove
edgeskel keeps TensorRT's contract (flags, engine files, shapes, runtime calls), never TensorRT's
numbers or speed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from test_devices_common import tiny_data, tiny_onnx
from test_remote_ssh import sshd  # noqa: F401 - the real sshd fixture on 127.0.0.1
from trt_doubles import DOUBLES, install

from edgeskel.devices import load_profile, profile_from_dict
from edgeskel.errors import ConfigError
from edgeskel.quantize.ort_qdq import quantize_ort_int8
from edgeskel.quantize.tensorrt import prepare_tensorrt, read_kit
from edgeskel.quantize.tensorrt_routes import calibration_cache_text, export_options_for, strip_qdq
from edgeskel.remote.bundle import make_bundle

TRTEXEC = [sys.executable, str(DOUBLES / "trtexec_double.py")]


def _trtexec(args: list[str], version: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "TRTEXEC_DOUBLE_VERSION": version}
    return subprocess.run([*TRTEXEC, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    d = tmp_path_factory.mktemp("m")
    w, b = tiny_onnx(d / "m.onnx")
    x, y, ref = tiny_data(w, b)
    quantize_ort_int8(d / "m.onnx", d / "q.onnx", x, symmetric_activations=True, quantize_bias=False)
    return {"dir": d, "fp32": d / "m.onnx", "qdq": d / "q.onnx", "x": x, "y": y, "ref": ref}


# ---- the doubles themselves: documented flags only ---------------------------------------------

def test_trtexec_double_takes_only_the_flags_of_its_version(models, tmp_path):
    onnx_ = str(models["fp32"])
    base = [f"--onnx={onnx_}", "--saveEngine=e.engine", "--minShapes=input:2x3x8x5x1",
            "--optShapes=input:2x3x8x5x1", "--maxShapes=input:2x3x8x5x1"]
    ok = _trtexec([*base, "--fp16"], "10.3.0", tmp_path)
    assert ok.returncode == 0 and "&&&& PASSED" in ok.stdout and (tmp_path / "e.engine").is_file()
    for flag in ("--fp16", "--int8", "--best"):  # TensorRT 11 removed the weakly typed precision flags
        res = _trtexec([*base, flag], "11.4.1", tmp_path)
        assert res.returncode == 1 and f"Unknown option: {flag}" in res.stdout
    assert _trtexec([*base, "--stronglyTyped"], "11.4.1", tmp_path).returncode == 0  # always on in 11
    res = _trtexec([*base, "--stronglyTyped", "--fp16"], "10.3.0", tmp_path)
    assert res.returncode == 1 and "strongly typed" in res.stdout
    assert "Unknown option: --workspace=64" in _trtexec([*base, "--workspace=64"], "10.3.0", tmp_path).stdout
    assert "Unknown option: --fp16 16" in _trtexec([*base, "--fp16 16"], "10.3.0", tmp_path).stdout
    bad = _trtexec([f"--onnx={onnx_}", "--minShapes=input:4x3x8x5x1", "--optShapes=input:2x3x8x5x1",
                    "--maxShapes=input:8x3x8x5x1"], "10.3.0", tmp_path)
    assert bad.returncode == 1 and "min <= opt <= max" in bad.stdout
    dla = _trtexec([*base, "--stronglyTyped", "--useDLACore=0"], "11.2.0", tmp_path)
    assert dla.returncode == 1 and "DLA is not supported in TensorRT 11.2.0" in dla.stdout


# ---- routes by TensorRT version ----------------------------------------------------------------

def _elem_types(path: Path) -> set[int]:
    m = onnx.load(str(path))
    return {i.data_type for i in m.graph.initializer}


@pytest.mark.parametrize("version, typing, precision, want, absent", [
    ("10.3", "strong", "fp16", ["--stronglyTyped"], ["--fp16", "--int8"]),
    ("10.3", "strong", "int8", ["--stronglyTyped"], ["--fp16", "--int8"]),
    ("11.4.1", "strong", "int8", [], ["--stronglyTyped", "--fp16", "--int8"]),
    ("10.3", "weak", "int8", ["--int8", "--fp16"], ["--stronglyTyped"]),
])
def test_kit_route_by_version_builds_with_that_versions_trtexec(models, tmp_path, version, typing, precision, want,
                                                                absent):
    kit = prepare_tensorrt(models["fp32"], tmp_path / "kit", precision, qdq_onnx=models["qdq"], batch_sizes=[1, 4],
                           tensorrt_version=version, typing=typing)
    sh = (tmp_path / "kit" / "build_engine.sh").read_text()
    assert all(f in sh for f in want) and not any(f in sh for f in absent), sh
    model = onnx.load(str(tmp_path / "kit" / "model.onnx"))
    io = {v.type.tensor_type.elem_type for v in [*model.graph.input, *model.graph.output]}
    assert io == {onnx.TensorProto.FLOAT}  # fp32 in and out on every route
    if typing == "strong":  # precision is in the graph: fp16 float tensors, fp16 Q/DQ scales (opset 19)
        assert onnx.TensorProto.FLOAT16 in _elem_types(tmp_path / "kit" / "model.onnx")
        assert onnx.TensorProto.FLOAT not in _elem_types(tmp_path / "kit" / "model.onnx")
        if precision == "int8":
            assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) >= 19
    else:
        assert onnx.TensorProto.FLOAT16 not in _elem_types(tmp_path / "kit" / "model.onnx")
    assert kit["route"].startswith(f"tensorrt{version.split('.')[0]}-")
    dbl = install(tmp_path, version)
    res = subprocess.run(["bash", "build_engine.sh"], cwd=tmp_path / "kit", capture_output=True, text=True,
                         env={**os.environ, **dbl.env}, timeout=120)
    assert res.returncode == 0, res.stderr
    assert sorted(p.name for p in (tmp_path / "kit").glob("*.engine")) == ["model.b1.engine", "model.b4.engine"]


def test_weak_typing_is_refused_for_tensorrt_11(models, tmp_path):
    with pytest.raises(ConfigError, match="TensorRT 11"):
        prepare_tensorrt(models["fp32"], tmp_path / "kit", "fp16", tensorrt_version="11.4", typing="weak")
    data = json.loads(json.dumps(load_profile("jetson-orin-jp7").model_dump(mode="json")))
    data["tensorrt"]["typing"] = "weak"
    with pytest.raises(ConfigError, match="typing: weak needs TensorRT 10.x"):
        profile_from_dict(data)
    # a weakly typed TensorRT 10 script does not build with TensorRT 11's trtexec
    prepare_tensorrt(models["fp32"], tmp_path / "k10", "fp16", tensorrt_version="10.3", typing="weak")
    dbl = install(tmp_path, "11.4.1")
    res = subprocess.run(["bash", "build_engine.sh"], cwd=tmp_path / "k10", capture_output=True, text=True,
                         env={**os.environ, **dbl.env}, timeout=120)
    assert res.returncode != 0 and "Unknown option: --fp16" in res.stderr


# ---- DLA ---------------------------------------------------------------------------------------

def test_dla_variant_keeps_its_core_and_gets_static_shapes(models, tmp_path):
    """Defect: the export stage overwrote the DLA variant's own dla_core with the profile's
    use_dla (false), so the DLA variant was the GPU engine; and the one engine had a 1..16 profile."""
    prof = load_profile("jetson-orin")
    by = {v.key: export_options_for(prof, v) for v in prof.variants if v.backend == "tensorrt"}
    assert by["tensorrt-int8-dla"]["dla_core"] == 0 and by["tensorrt-int8"]["dla_core"] is None
    assert by["tensorrt-int8-dla"]["batch_sizes"] == [1, 16]
    dla = prepare_tensorrt(models["fp32"], tmp_path / "dla", "int8", qdq_onnx=models["qdq"],
                           **{k: v for k, v in by["tensorrt-int8-dla"].items() if k != "workspace_mb"})
    gpu = prepare_tensorrt(models["fp32"], tmp_path / "gpu", "int8", qdq_onnx=models["qdq"],
                           **{k: v for k, v in by["tensorrt-int8"].items() if k != "workspace_mb"})
    for cmd in dla["trtexec"]:
        assert "--useDLACore=0" in cmd and "--allowGPUFallback" in cmd
        shapes = {a.split("=")[1] for a in cmd if a.startswith(("--minShapes", "--optShapes", "--maxShapes"))}
        assert len(shapes) == 1  # min = opt = max: DLA has no dynamic shapes
    assert not any("--useDLACore" in a for cmd in gpu["trtexec"] for a in cmd)
    assert dla["lint"]["dla"]["static_shapes"] and "dla" not in gpu["lint"]


def test_dla_needs_static_shapes_or_falls_back_to_gpu(models, tmp_path):
    # DLA INT8 on TensorRT 10.x: the Q/DQ graph without Q/DQ nodes + its scales as a calibration cache
    scales = strip_qdq(models["qdq"], tmp_path / "noqdq.onnx")["scales"]
    (tmp_path / "calib.cache").write_text(calibration_cache_text(scales, "10.3"))
    base = [f"--onnx={tmp_path / 'noqdq.onnx'}", "--useDLACore=0", "--int8", "--fp16", "--calib=calib.cache",
            "--saveEngine=e.engine"]
    dyn = ["--minShapes=input:1x3x8x5x1", "--optShapes=input:4x3x8x5x1", "--maxShapes=input:16x3x8x5x1"]
    res = _trtexec([*base, *dyn], "10.3.0", tmp_path)
    assert res.returncode == 1 and "dynamic shapes" in res.stdout and "GPU fallback is not enabled" in res.stdout
    res = _trtexec([*base, *dyn, "--allowGPUFallback"], "10.3.0", tmp_path)
    assert res.returncode == 0 and "[DlaLayer]" not in res.stdout  # everything fell back to the GPU
    static = ["--minShapes=input:4x3x8x5x1", "--optShapes=input:4x3x8x5x1", "--maxShapes=input:4x3x8x5x1"]
    res = _trtexec([*base, *static, "--allowGPUFallback"], "10.3.0", tmp_path)
    assert res.returncode == 0 and "[DlaLayer]" in res.stdout


# ---- the loop: bundle -> build -> run -> results.json -------------------------------------------

def _trt_bundle(models, tmp_path: Path, profile_name: str = "jetson-orin", batch_sizes=(1, 16)) -> Path:
    """The jetson profile's TensorRT variants as the pipeline bundles them (validation.artifact_entry)."""
    from edgeskel.pipeline.validation import artifact_entry

    prof = load_profile(profile_name)
    arts = []
    for v in prof.variants:
        if v.backend != "tensorrt":
            continue
        opts = {**export_options_for(prof, v), "batch_sizes": list(batch_sizes)}
        prepare_tensorrt(models["fp32"], tmp_path / "export" / v.key / "tensorrt", v.precision, qdq_onnx=models["qdq"],
                         **{k: val for k, val in opts.items() if k != "workspace_mb"})
        a = artifact_entry(v, {"artifact": "tensorrt/model.onnx"}, tmp_path / "export")
        arts.append(a)
    prof = prof.model_copy(update={"batch_sizes": list(batch_sizes)})
    return make_bundle(tmp_path / "run" / "bundle", arts, models["x"], models["y"], models["ref"], prof, runs=20,
                       warmup=2)


def _check_results(doc: dict, bundle: Path, built_here: bool = True) -> dict:
    meta = json.loads((bundle / "bundle.json").read_text())
    assert doc["bundle_id"] == meta["bundle_id"] and doc["format"] == "edgeskel-device-results/1"
    by = {v["name"]: v for v in doc["variants"]}
    for v in meta["variants"]:
        r = by[v["name"]]
        assert r["status"] == "ok", r
        assert r["accuracy"]["num_samples"] == len(np.load(bundle / "val_y.npy"))
        assert r["accuracy"]["agreement"] >= 90.0  # logits of the embedded ONNX (ONNX Runtime in the double)
        if v["backend"] != "tensorrt":
            continue
        for bs, eng in v["build"]["engines"].items():
            assert (bundle / eng).is_file() or not built_here  # over SSH they are on the "device"
            assert r["latency_ms"][bs]["batch_size"] == int(bs)
            assert r["tensorrt"]["engines"][bs]["batch"] == [int(bs), int(bs)]  # timed on its own engine
        assert "contract double" in r["tensorrt"]["runtime"]  # never mistaken for a TensorRT measurement
    return by


def test_bundle_names_the_engines_the_build_writes_and_runs_by_hand(models, tmp_path, monkeypatch):
    """Defects: bundle.json expected artifacts/<v>/model.engine while the script wrote
    model.<precision>.engine (every build "failed (exit 0)"); batch 16 was timed on an engine
    tuned for batch 1; the DLA variant was the GPU engine."""
    bundle = _trt_bundle(models, tmp_path)
    dbl = install(tmp_path, "10.3.0")
    proc = subprocess.run([str(dbl.python), str(bundle / "device_runner.py"), str(bundle), "--out",
                           str(tmp_path / "results.json")], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = json.loads((tmp_path / "results.json").read_text())
    by = _check_results(doc, bundle)
    assert "contract double" in doc["environment"]["runtimes"]["tensorrt"]
    assert by["tensorrt-int8-dla"]["tensorrt"]["layers"]["16"]["dla"] >= 1
    assert by["tensorrt-int8"]["tensorrt"]["layers"]["16"]["dla"] == 0
    assert by["tensorrt-int8-dla"]["tensorrt"]["dla_core"] == 0
    # `edgeskel device-run` does the same (engines exist now: no rebuild)
    for k, v in dbl.env.items():
        monkeypatch.setenv(k, v)
    from edgeskel.cli import main

    assert main(["device-run", str(bundle), "--out", str(tmp_path / "cli.json")]) == 0
    cli = _check_results(json.loads((tmp_path / "cli.json").read_text()), bundle)
    assert "engine_build_s" not in cli["tensorrt-fp16"]


def test_build_script_that_writes_no_engine_is_a_clear_error(models, tmp_path):
    bundle = _trt_bundle(models, tmp_path, batch_sizes=(2,))
    script = bundle / "artifacts" / "tensorrt-fp16" / "build_engine.sh"
    script.write_text(script.read_text().replace("--saveEngine=model.b2.engine", "--saveEngine=elsewhere.engine"))
    dbl = install(tmp_path, "10.3.0")
    env = {**os.environ, **dbl.env}
    subprocess.run([sys.executable, str(bundle / "device_runner.py"), str(bundle), "--variant", "tensorrt-fp16",
                    "--out", str(tmp_path / "r.json")], env=env, capture_output=True, text=True, timeout=120)
    r = json.loads((tmp_path / "r.json").read_text())["variants"][0]
    assert r["status"] == "error" and "wrote no model.b2.engine" in r["error"]


def test_engine_of_another_tensorrt_version_is_refused(models, tmp_path):
    bundle = _trt_bundle(models, tmp_path, batch_sizes=(2,))
    built = install(tmp_path / "a", "10.3.0")
    subprocess.run(["bash", str(bundle / "artifacts/tensorrt-fp16/build_engine.sh")], env={**os.environ, **built.env},
                   check=True, capture_output=True, timeout=120)
    other = install(tmp_path / "b", "10.7.0")  # the device's TensorRT differs from the one that built
    proc = subprocess.run([str(other.python), str(bundle / "device_runner.py"), str(bundle), "--variant",
                           "tensorrt-fp16", "--out", str(tmp_path / "r.json")], capture_output=True, text=True,
                          timeout=120)
    r = json.loads((tmp_path / "r.json").read_text())["variants"][0]
    assert r["status"] == "error" and "could not deserialize the engine" in r["error"]
    assert proc.returncode == 3  # results.json written, a variant errored


def test_bundle_for_tensorrt_11_refused_on_a_tensorrt_10_device(models, tmp_path):
    bundle = _trt_bundle(models, tmp_path, "jetson-orin-jp7", batch_sizes=(2,))
    dbl = install(tmp_path, "10.3.0")
    subprocess.run([str(dbl.python), str(bundle / "device_runner.py"), str(bundle), "--variant", "tensorrt-fp16",
                    "--out", str(tmp_path / "r.json")], capture_output=True, text=True, timeout=120)
    r = json.loads((tmp_path / "r.json").read_text())["variants"][0]
    assert r["status"] == "error" and "route is for TensorRT 11.4.1" in r["error"] and "jetson-orin-jp7" in r["error"]


def test_run_engine_script_handles_more_samples_than_the_engine_batch(models, tmp_path):
    """Defect: run_engine.py's --max-batch defaulted to the whole file, past the engine's batch."""
    kit = tmp_path / "kit"
    prepare_tensorrt(models["fp32"], kit, "fp16", batch_sizes=[16])
    dbl = install(tmp_path, "10.3.0")
    subprocess.run(["bash", "build_engine.sh"], cwd=kit, env={**os.environ, **dbl.env}, check=True,
                   capture_output=True, timeout=120)
    x = models["x"]  # 40 samples, engine batch 16: 16 + 16 + 8 (padded)
    np.save(tmp_path / "x.npy", x)
    res = subprocess.run([str(dbl.python), str(kit / "run_engine.py"), "model.b16.engine", str(tmp_path / "x.npy"),
                          str(tmp_path / "y.npy")], cwd=kit, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    out = np.load(tmp_path / "y.npy")
    assert out.shape == models["ref"].shape
    assert np.abs(out - models["ref"]).max() < 5e-2 * np.abs(models["ref"]).max()


def test_jetpack7_profile_routes_to_tensorrt_11(models, tmp_path):
    prof = load_profile("jetson-orin-jp7")
    assert prof.tensorrt.version.startswith("11.") and prof.tensorrt.typing == "strong"
    bundle = _trt_bundle(models, tmp_path, "jetson-orin-jp7", batch_sizes=(2,))
    meta = json.loads((bundle / "bundle.json").read_text())
    for v in meta["variants"]:
        sh = (bundle / v["build"]["script"]).read_text()
        assert "--fp16" not in sh and "--int8" not in sh and "--stronglyTyped" not in sh
    dbl = install(tmp_path, "11.4.1")
    proc = subprocess.run([str(dbl.python), str(bundle / "device_runner.py"), str(bundle), "--out",
                           str(tmp_path / "r.json")], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    doc = json.loads((tmp_path / "r.json").read_text())
    _check_results(doc, bundle)
    assert read_kit(bundle / "artifacts" / "tensorrt-int8-dla")["dla_core"] == 0


# ---- the whole loop through the pipeline: bundle -> build -> run -> results -> report ---------

def test_jetson_pipeline_loop_by_hand_and_over_ssh(sshd, tmp_path):  # noqa: F811
    """`edgeskel export --device jetson-orin` (TensorRT 10.3 route) without a device ends NOT
    MEASURED; the bundle then runs by hand with the doubles, `edgeskel results import` brings every
    TensorRT variant into the report; the same profile with an ssh block measures over SSH. The
    double's numbers are labelled (environment.emulation) and never gated as TensorRT's."""
    import yaml
    from test_pipeline_e2e import TINY_RECIPE

    from edgeskel.cli import main

    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(yaml.safe_dump(TINY_RECIPE))
    prof = yaml.safe_load((Path(__file__).resolve().parents[1] / "devices" / "jetson-orin.yaml").read_text())
    # this x86 host plays the Jetson: the doubles run here, so the profile says x86_64
    prof.update(arch="x86_64", batch_sizes=[1, 2], rank_multiple=8, measure={"warmup": 2, "runs": 20})
    (tmp_path / "jetson-orin.yaml").write_text(yaml.safe_dump(prof))
    out = tmp_path / "runs"
    rc = main(["export", "--device", str(tmp_path / "jetson-orin.yaml"), "--recipe", str(recipe), "--out", str(out),
               "--quiet"])
    run_dir = out / "tiny" / "jetson-orin"
    rep = json.loads((run_dir / "report.json").read_text())
    trt = [v["name"] for v in rep["variants"] if v["backend"] == "tensorrt"]
    assert trt == ["tensorrt-fp16", "tensorrt-int8", "tensorrt-int8-dla"] and rc != 0  # not measured yet
    bundle = run_dir / rep["bundle"]
    meta = json.loads((bundle / "bundle.json").read_text())
    dla_script = (bundle / meta["variants"][2]["build"]["script"]).read_text()
    assert "--useDLACore=0" in dla_script and "--minShapes=skeleton:2x" in dla_script and "--maxShapes=skeleton:2x" in dla_script
    # DLA INT8 on TensorRT 10.3: implicit quantization from calib.cache, built weakly typed (docs/TENSORRT.md)
    exp = json.loads((run_dir / "export" / "tensorrt-int8-dla" / "export.json").read_text())
    assert exp["tensorrt"]["route"] == "tensorrt10-dla-weakly-typed" and exp["tensorrt"]["quantization"] == "implicit"
    assert exp["lint"]["passed"] and exp["lint"]["calibration"]["with_scales"] >= 1
    assert "--calib=calib.cache" in dla_script and "--stronglyTyped" not in dla_script
    assert (bundle / meta["variants"][2]["build"]["script"]).with_name("calib.cache").is_file()

    dbl = install(tmp_path, "10.3.0")  # by hand: python3 device_runner.py . --out results.json
    proc = subprocess.run([str(dbl.python), "device_runner.py", ".", "--out", str(tmp_path / "results.json")],
                          cwd=bundle, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    _check_results(json.loads((tmp_path / "results.json").read_text()), bundle)
    main(["results", "import", str(run_dir), str(tmp_path / "results.json")])
    rep = json.loads((run_dir / "report.json").read_text())
    by = {v["name"]: v for v in rep["variants"]}
    for name in trt:
        assert by[name]["measured_on"] == "imported://jetson-orin", by[name]
        assert by[name]["status"] in ("pass", "fail", "skipped") and "double" in json.dumps(by[name]), by[name]

    prof["ssh"] = {"host": "testdevice", "config_file": str(sshd["dir"] / "ssh_config"), "python": str(dbl.python),
                   "workdir": str(tmp_path / "remote"), "connect_timeout_s": 5, "command_timeout_s": 600}
    (tmp_path / "jetson-orin.yaml").write_text(yaml.safe_dump(prof))
    main(["export", "--device", str(tmp_path / "jetson-orin.yaml"), "--recipe", str(recipe), "--out", str(out),
          "--quiet"])
    rep = json.loads((run_dir / "report.json").read_text())
    by = {v["name"]: v for v in rep["variants"]}
    for name in trt:
        assert by[name]["measured_on"] == "ssh://jetson-orin", by[name]
        assert "double" in json.dumps(by[name]), by[name]
        # DLA INT8 on TensorRT 10.x is built from a calibration cache (docs/TENSORRT.md, "DLA INT8")
        want = "tensorrt10-dla-weakly-typed" if name.endswith("-dla") else "tensorrt10-strongly-typed"
        assert by[name]["tensorrt"]["route"] == want, by[name]["tensorrt"]
    assert "DLA core 0: batch 1: " in by["tensorrt-int8-dla"]["tensorrt"]["summary"]
    assert by["tensorrt-int8-dla"]["tensorrt"]["layers"]["2"]["dla"] >= 1
    doc = json.loads((run_dir / "validate" / "results.json").read_text())  # what came back over SSH
    res = _check_results(doc, run_dir / rep["bundle"], built_here=False)  # engines were built on the "device"
    assert res["tensorrt-int8-dla"]["tensorrt"]["layers"]["2"]["dla"] >= 1 and res["tensorrt-int8-dla"]["engine_build_s"] >= 0
    assert res["tensorrt-int8"]["tensorrt"]["layers"]["2"]["dla"] == 0
