"""Config errors (issue 8): unknown keys, wrong types, bad values and missing files in recipes
and device profiles name the file, the key path and what is allowed; the CLI prints one
`error:` line per problem and exits 2, never a traceback."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from edgeskel.cli import main
from edgeskel.devices import list_profiles, load_profile
from edgeskel.errors import ConfigError, DataError
from edgeskel.recipe import load_recipe, with_overrides

GOOD_RECIPE = {"name": "r", "model": {"name": "stgcn", "width": 0.25},
               "data": {"spec": "synthetic?classes=4&per_class=2&test_per_class=1&frames=8"},
               "train": {"epochs": 1}, "compress": {"policy": "fixed", "ratio": 0.5}}


def _recipe(tmp_path: Path, mutate) -> Path:  # noqa: ANN001
    import copy

    d = copy.deepcopy(GOOD_RECIPE)
    mutate(d)
    p = tmp_path / "recipe.yaml"
    p.write_text(yaml.safe_dump(d))
    return p


@pytest.mark.parametrize("mutate, key, expect", [
    (lambda d: d["train"].update(epocs=3), "train.epocs", ["unknown key", "allowed: epochs, batch_size"]),
    (lambda d: d.update(finetuning={}), "finetuning", ["unknown key", "allowed: name, description, model"]),
    (lambda d: d["model"].update(chekpoint="x.ckpt"), "model.chekpoint", ["unknown key", "checkpoint"]),
    (lambda d: d["train"].update(epochs="ten"), "train.epochs", ["given: 'ten'", "allowed: int"]),
    (lambda d: d["train"].update(lr=[0.1]), "train.lr", ["given: [0.1]", "allowed: float"]),
    (lambda d: d["compress"].update(policy="magic"), "compress.policy", ["'magic' is not one of: fixed, energy, budget, latency"]),
    (lambda d: d["compress"].update(budget=1.5), "compress.budget", ["given: 1.5", "allowed: <= 1"]),
    (lambda d: d["model"].update(width=0), "model.width", ["allowed: > 0"]),
    (lambda d: d["data"].update(streams="angles"), "data.streams", ["is not one of: joint, bone, motion, bone_motion"]),
    (lambda d: d["model"].pop("name"), "model.name", ["required key is missing"]),
    (lambda d: d["export"].update(opset=12) if "export" in d else d.update(export={"opset": 12}), "export.opset",
     ["allowed: >= 17"]),
    (lambda d: d.update(export={"nncf_ranges": ["minmax", "p99"]}), "export.nncf_ranges", ["histogram", "'p99'"]),
    (lambda d: d.update(export={"calibration": "percentile", "percentiles": [99.9, 101]}), "export.percentiles",
     ["values in (50, 100]", "[99.9, 101"]),
], ids=["nested-unknown", "top-unknown", "typo", "type-int", "type-float", "literal", "range", "gt", "streams",
        "missing", "opset", "nncf-ranges", "percentiles"])
def test_recipe_errors_name_file_key_and_allowed(tmp_path, mutate, key, expect):
    p = _recipe(tmp_path, mutate)
    with pytest.raises(ConfigError) as ei:
        load_recipe(p)
    msg = str(ei.value)
    assert msg.count("\n") == 0, msg  # one problem, one line
    assert msg.startswith(f"{p}: invalid recipe: {key}: "), msg
    for e in expect:
        assert e in msg, msg


def test_several_problems_are_all_listed(tmp_path):
    p = _recipe(tmp_path, lambda d: (d["train"].update(epochs=-1, optimiser="sgd"), d["model"].update(width="big")))
    with pytest.raises(ConfigError) as ei:
        load_recipe(p)
    lines = str(ei.value).splitlines()
    assert lines[0] == f"{p}: invalid recipe (3 problems):"
    assert sorted(ln.split(":")[0].strip(" -") for ln in lines[1:]) == ["model.width", "train.epochs", "train.optimiser"]


@pytest.mark.parametrize("content, expect", [
    ("name: [unclosed", "invalid YAML"),
    ("- a\n- b\n", "must be a YAML mapping, got list"),
    ("", "must be a YAML mapping, got NoneType"),
    (b"\xff\xfe\x00garbage", "cannot read recipe"),
])
def test_unreadable_recipe_files(tmp_path, content, expect):
    p = tmp_path / "r.yaml"
    p.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(ConfigError) as ei:
        load_recipe(p)
    assert str(p) in str(ei.value) and expect in str(ei.value) and "\n" not in str(ei.value)


def test_missing_files_referenced_by_a_recipe(tmp_path):
    with pytest.raises(ConfigError, match=r"recipe file not found"):
        load_recipe(tmp_path / "nope.yaml")
    from edgeskel.recipe import list_recipes

    with pytest.raises(ConfigError, match=re.escape(f"unknown recipe 'nope'; available: {', '.join(list_recipes())} ")):
        load_recipe("nope")
    p = _recipe(tmp_path, lambda d: d["model"].update(checkpoint="missing/ref.ckpt"))
    rec, path = load_recipe(p)
    with pytest.raises(ConfigError) as ei:
        with_overrides(rec, source=path)
    msg = str(ei.value)
    assert msg.startswith(f"{p}: model.checkpoint: file missing/ref.ckpt not found") and "allowed:" in msg
    with pytest.raises(ConfigError, match=r"--checkpoint /no/such.ckpt: file /no/such.ckpt not found"):
        with_overrides(rec, checkpoint="/no/such.ckpt", source=path)


def test_bad_data_path_in_a_recipe_names_data_and_recipe(tmp_path):
    from edgeskel.pipeline import run_pipeline

    p = _recipe(tmp_path, lambda d: d["data"].update(spec=f"nw-ucla:{tmp_path / 'no-such-dir'}"))
    with pytest.raises(DataError) as ei:
        run_pipeline("cpu", recipe=str(p), out_root=tmp_path / "runs", quiet=True, log=lambda s: None)
    msg = str(ei.value)
    assert str(tmp_path / "no-such-dir") in msg and f"dataset of {p}: data.spec" in msg
    assert not (tmp_path / "runs" / "r" / "cpu" / "data").exists()  # nothing was recorded as done


# ------------------------------------------------------------------------------ device profiles
def _profile(tmp_path: Path, mutate) -> Path:  # noqa: ANN001
    from edgeskel.devices import profiles_dir

    d = yaml.safe_load((profiles_dir() / "cpu.yaml").read_text())
    mutate(d)
    p = tmp_path / "dev.yaml"
    p.write_text(yaml.safe_dump(d))
    return p


@pytest.mark.parametrize("mutate, key, expect", [
    (lambda d: d.update(measure={"runs": 0}), "measure.runs", ["given: 0", "allowed: >= 1"]),
    (lambda d: d.update(measure={"repeats": 5}), "measure.repeats", ["unknown key", "allowed: warmup, runs"]),
    (lambda d: d.update(ssh={"host": "h", "port": 70000}), "ssh.port", ["given: 70000", "allowed: <= 65535"]),
    (lambda d: d.update(ssh={"host": "h", "identity_file": "/no/such/key"}), "ssh.identity_file",
     ["file /no/such/key not found", "allowed: an existing file"]),
    (lambda d: d.update(ssh={"host": "h", "known_hosts_file": "/no/such/known_hosts"}), "ssh.known_hosts_file",
     ["not found"]),
    (lambda d: d.update(arch="riscv"), "arch", ["'riscv' is not one of: x86_64, aarch64"]),
    (lambda d: d.update(tensorrt={"workspace_mb": "lots"}), "tensorrt.workspace_mb", ["allowed: int"]),
    (lambda d: d.update(ssh={"host": "h", "python": "python3; touch /tmp/x"}), "ssh.python", ["must be one path"]),
    (lambda d: d.update(ssh={"host": "h", "workdir": "-rf /"}), "ssh.workdir", ["must be one path"]),
], ids=["runs-0", "measure-unknown", "port", "identity-missing", "known-hosts-missing", "arch", "trt-type",
        "remote-python-command", "remote-workdir-option"])
def test_profile_errors_name_file_key_and_allowed(tmp_path, mutate, key, expect):
    p = _profile(tmp_path, mutate)
    with pytest.raises(ConfigError) as ei:
        load_profile(p)
    msg = str(ei.value)
    assert "\n" not in msg and msg.startswith(f"{p}: invalid device profile: {key}: "), msg
    for e in expect:
        assert e in msg, msg


@pytest.mark.parametrize("name", list_profiles())
def test_shipped_profiles_time_at_least_100_runs(name):
    assert load_profile(name).measure.runs >= 100


def test_measure_block_reaches_the_bundle(tmp_path):
    """`measure:` is what the device runner uses (warm-up calls, timed runs)."""
    import json

    import numpy as np
    from test_devices_common import tiny_data, tiny_onnx

    from edgeskel.devices import profile_from_dict
    from edgeskel.pipeline.validation import validate_variants

    prof = profile_from_dict({"name": "m", "arch": "x86_64", "variants": [{"backend": "ort", "precision": "fp32"}],
                              "measure": {"warmup": 2, "runs": 7}, "threads": 1,
                              "peak": {"gflops_fp32": 1, "memory_bandwidth_gbs": 1, "source": "t"}})
    (tmp_path / "export" / "ort-fp32").mkdir(parents=True)
    w, b = tiny_onnx(tmp_path / "export" / "ort-fp32" / "model.onnx")
    x, y, ref = tiny_data(w, b)
    res = validate_variants(prof, None, tmp_path / "export", {"ort-fp32": {"status": "passed", "artifact": "model.onnx"}},
                            x, y, ref, tmp_path / "validate", host_arch="x86_64", quiet=True)
    meta = json.loads((tmp_path / "validate" / "bundle-m" / "bundle.json").read_text())
    assert meta["measure"]["warmup"] == 2 and meta["measure"]["runs"] == 7
    assert res["measured"]["ort-fp32"]["latency_ms"]["1"]["runs"] == 7
    assert np.isfinite(res["measured"]["ort-fp32"]["latency_ms"]["1"]["p99"])


# ------------------------------------------------------------------------------ CLI
@pytest.mark.parametrize("which", ["recipe-unknown-key", "recipe-type", "profile-unknown-key", "profile-missing",
                                   "checkpoint-missing", "data-missing"])
def test_cli_prints_one_error_line_and_exits_2(tmp_path, capsys, which):
    recipe = _recipe(tmp_path, lambda d: None)
    device = "cpu"
    if which == "recipe-unknown-key":
        recipe = _recipe(tmp_path, lambda d: d["compress"].update(rank=4))
    elif which == "recipe-type":
        recipe = _recipe(tmp_path, lambda d: d["train"].update(batch_size="big"))
    elif which == "profile-unknown-key":
        device = str(_profile(tmp_path, lambda d: d["gates"].update(p99_ms=3)))
    elif which == "profile-missing":
        device = "no-such-device"
    elif which == "checkpoint-missing":
        recipe = _recipe(tmp_path, lambda d: d["model"].update(checkpoint=str(tmp_path / "none.ckpt")))
    else:
        recipe = _recipe(tmp_path, lambda d: d["data"].update(spec=f"ntu:{tmp_path / 'none'}"))
    rc = main(["export", "--device", device, "--recipe", str(recipe), "--out", str(tmp_path / "runs"), "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    assert (str(recipe) in lines[0]) or (device in lines[0]), lines[0]


def test_recipe_export_options_reach_every_caller():
    """Pipeline and benchmark both pass `quant_options()`: the percentile candidates and op types
    of a recipe must be in it (and only for the percentile method)."""
    from edgeskel.recipe import ExportSection

    e = ExportSection(calibration="percentile", percentiles=[99.99, 99.9], int8_op_types=["Conv", "MatMul"])
    assert e.quant_options() == {"calibration": "percentile", "opset": 17, "int8_fallback": True,
                                 "percentiles": [99.99, 99.9], "op_types": ["Conv", "MatMul"],
                                 "nncf_ranges": ["minmax", "histogram"]}
    assert "percentiles" not in ExportSection(calibration="minmax").quant_options()
