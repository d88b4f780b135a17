"""Fuzzing the non-dataset readers (issue 8): checkpoints, recipes, device profiles, layout
files, ONNX artifacts and run manifests get random bytes and random structures; only the
documented error type of each may escape (the dataset readers are fuzzed in test_data_fuzz.py).

Examples per test: EDGESKEL_FUZZ_EXAMPLES (default 30; `make fuzz` runs 2000).
"""

from __future__ import annotations

import io
import json
import os
import tempfile
from pathlib import Path

import numpy as np
import torch
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from edgeskel.checkpoint import load_checkpoint
from edgeskel.errors import CheckpointError, ConfigError, ExportError

N = int(os.environ.get("EDGESKEL_FUZZ_EXAMPLES", "30"))
FUZZ = settings(max_examples=N, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

scalars = st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.floats(allow_nan=True) | st.text(max_size=6)
plain = st.recursive(scalars, lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=8), c, max_size=4),
                     max_leaves=20)
tensors = st.builds(lambda shape, v: torch.full(shape, v), st.lists(st.integers(0, 3), max_size=3).map(tuple),
                    st.floats(-2, 2))


def _tmp_file(data: bytes, name: str) -> tuple[tempfile.TemporaryDirectory, Path]:
    d = tempfile.TemporaryDirectory()
    p = Path(d.name) / name
    p.write_bytes(data)
    return d, p


# ------------------------------------------------------------------------------ checkpoints
@FUZZ
@given(st.binary(max_size=600), st.booleans())
def test_fuzz_checkpoint_random_bytes(data: bytes, zip_magic: bool) -> None:
    d, p = _tmp_file((b"PK\x03\x04" if zip_magic else b"") + data, "c.ckpt")
    with d:
        try:
            load_checkpoint(p)
        except CheckpointError as exc:
            assert str(p) in str(exc)


SPEC_KEYS = ["name", "num_classes", "layout", "kwargs", "class_names", "preprocess", "compression"]


@FUZZ
@given(
    st.dictionaries(st.sampled_from(SPEC_KEYS), plain | st.sampled_from(["stgcn", "ctrgcn", "kinect20", "ntu25"]),
                    max_size=7),
    st.dictionaries(st.text(max_size=12), tensors | plain, max_size=4) | plain,
    st.sampled_from(["edgeskel-checkpoint/1", "other", None]),
    st.booleans(),
)
def test_fuzz_checkpoint_structures(spec: dict, state, fmt, real_spec: bool) -> None:  # noqa: ANN001
    """A torch file with the right format tag but random spec / state_dict contents."""
    if real_spec:  # a spec that builds: then only the state_dict is random
        spec = {"name": "stgcn", "num_classes": 3, "layout": "kinect20", "kwargs": {"num_stages": 1, "width": 0.05,
                                                                                   "num_person": 1}}
    buf = io.BytesIO()
    torch.save({"format": fmt, "spec": spec, "state_dict": state, "extra": {}}, buf)
    d, p = _tmp_file(buf.getvalue(), "c.ckpt")
    with d:
        try:
            load_checkpoint(p)
        except CheckpointError as exc:
            assert str(p) in str(exc)


# ------------------------------------------------------------------------------ YAML configs
yaml_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=10), c, max_size=4), max_leaves=25)

RECIPE_KEYS = {"name": st.text(max_size=5), "model": yaml_values, "data": yaml_values, "train": yaml_values,
               "compress": yaml_values, "finetune": yaml_values, "export": yaml_values, "description": yaml_values}
PROFILE_KEYS = {"name": st.text(max_size=5), "arch": st.sampled_from(["x86_64", "aarch64", "mips"]),
                "variants": yaml_values, "batch_sizes": yaml_values, "gates": yaml_values, "peak": yaml_values,
                "ssh": yaml_values, "measure": yaml_values, "tensorrt": yaml_values, "input": yaml_values}


def _yaml_or_bytes(structures: st.SearchStrategy) -> st.SearchStrategy:
    return st.one_of(st.binary(max_size=300), structures.map(lambda d: yaml.safe_dump(d).encode()))


@FUZZ
@given(_yaml_or_bytes(st.fixed_dictionaries({}, optional=RECIPE_KEYS) | yaml_values))
def test_fuzz_recipe(data: bytes) -> None:
    from edgeskel.recipe import load_recipe

    d, p = _tmp_file(data, "r.yaml")
    with d:
        try:
            load_recipe(p)
        except ConfigError as exc:
            assert str(p) in str(exc)


@FUZZ
@given(_yaml_or_bytes(st.fixed_dictionaries({}, optional=PROFILE_KEYS) | yaml_values))
def test_fuzz_device_profile(data: bytes) -> None:
    from edgeskel.devices import load_profile

    d, p = _tmp_file(data, "dev.yaml")
    with d:
        try:
            load_profile(p)
        except ConfigError as exc:
            assert str(p) in str(exc)


LAYOUT_KEYS = {"name": st.text(max_size=5), "joints": yaml_values | st.lists(st.text(max_size=3), max_size=6),
               "bones": yaml_values | st.lists(st.lists(st.integers(-2, 7), max_size=3), max_size=6),
               "center": yaml_values | st.integers(-2, 7), "origin": yaml_values, "parts": yaml_values,
               "channels": yaml_values | st.integers(0, 4)}


@FUZZ
@given(_yaml_or_bytes(st.fixed_dictionaries({}, optional=LAYOUT_KEYS) | yaml_values))
def test_fuzz_layout_file(data: bytes) -> None:
    from edgeskel.layouts import get_layout

    d, p = _tmp_file(data, "layout.yaml")
    with d:
        try:
            lay = get_layout(str(p))
        except ConfigError:
            return
        assert lay.num_joints > 0 and lay.channels in (2, 3)


# ------------------------------------------------------------------------------ ONNX artifacts
_GOOD_ONNX: list[bytes] = []


def _good_onnx() -> bytes:
    if not _GOOD_ONNX:
        from test_devices_common import tiny_onnx

        with tempfile.TemporaryDirectory() as d:
            tiny_onnx(Path(d) / "m.onnx")
            _GOOD_ONNX.append((Path(d) / "m.onnx").read_bytes())
    return _GOOD_ONNX[0]


@FUZZ
@given(st.binary(max_size=400), st.integers(0, 10_000), st.sampled_from(["random", "truncate", "flip"]))
# found by this test: a flipped shape byte that loads but fails in a Reshape / Gemm kernel at run time
@example(b"\x07", 3032, "flip")
@example(b"\x02", 3032, "flip")
def test_fuzz_onnx_artifact(data: bytes, pos: int, mode: str) -> None:
    from edgeskel.runtime import get_runner

    good = _good_onnx()
    if mode == "random":
        blob = data
    elif mode == "truncate":
        blob = good[: pos % len(good)]
    else:  # overwrite some bytes of a valid model
        i = pos % len(good)
        blob = good[:i] + data[:16] + good[i + len(data[:16]):]
    d, p = _tmp_file(blob, "m.onnx")
    with d:
        try:
            with get_runner("ort", p) as r:
                out = r.infer(np.zeros((1, 3, 8, 5, 1), np.float32))
            assert out.ndim == 2
        except ExportError as exc:
            assert str(p) in str(exc)


# ------------------------------------------------------------------------------ run manifests
@FUZZ
@given(st.one_of(st.binary(max_size=300), plain.map(lambda v: json.dumps(v).encode()),
                 st.dictionaries(st.sampled_from(["format", "stages", "inputs"]),
                                 plain | st.just("edgeskel-manifest/1")
                                 | st.dictionaries(st.sampled_from(["data", "x"]), plain, max_size=2),
                                 max_size=3).map(lambda v: json.dumps(v).encode())))
def test_fuzz_run_manifest(data: bytes) -> None:
    """A damaged manifest never crashes a run and never makes a stage look finished."""
    from edgeskel.pipeline.rundir import RunDir

    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        (root / "manifest.json").write_bytes(data)
        with RunDir(root) as run:
            assert run.stage_done("data", "some-hash") is None
            res = run.run_stage("data", {"a": 1}, lambda sd: (sd / "x.txt").write_text("x") and {"outputs": ["x.txt"]},
                                log=lambda s: None)
            assert res == {"outputs": ["x.txt"]}
            assert run.stage_done("data", run.manifest["stages"]["data"]["input_hash"]) is not None


# ------------------------------------------------------------------------------ names and paths (issue 17)
# Names that strangers' recipes and profiles may carry: random text, and path-like strings
# assembled from the pieces attacks use (separators, `..`, leading dash/dot, control characters).
_PIECES = ["..", ".", "/", "\\", "~", "-", "-o", "a", "runs", "tmp", " ", "\n", "\t", "\x00", "é", "$(x)", ";", "*",
           "_shared", "%", ":", "@"]
hostile_names = st.one_of(st.text(max_size=70), st.lists(st.sampled_from(_PIECES), max_size=8).map("".join),
                          st.from_regex(r"[A-Za-z0-9._-]{1,70}", fullmatch=True))


def _below(base: Path, *names: str) -> bool:
    """The folder these names make stays strictly below `base` (lexically and resolved)."""
    p = base.joinpath(*names)
    return base.resolve() in p.resolve().parents and ".." not in p.relative_to(base).parts


def _profile_text(name: str, variant: str, ssh: dict | None = None) -> str:
    doc = {"name": name, "arch": "x86_64", "variants": [{"backend": "ort", "precision": "fp32", "name": variant}],
           "peak": {"gflops_fp32": 1, "memory_bandwidth_gbs": 1, "source": "t"}}
    if ssh is not None:
        doc["ssh"] = ssh
    return yaml.safe_dump(doc)


@FUZZ
@given(hostile_names, hostile_names, hostile_names)
def test_fuzz_names_of_recipes_profiles_variants(recipe_name: str, profile_name: str, variant: str) -> None:
    """A name is either refused with a ConfigError naming the file, or it is a plain folder
    name that keeps `--out/<recipe>/<device>/export/<variant>` below --out."""
    from edgeskel.devices import load_profile
    from edgeskel.names import is_safe_name
    from edgeskel.recipe import load_recipe

    with tempfile.TemporaryDirectory() as d:
        out = Path(d) / "out"
        r = Path(d) / "r.yaml"
        r.write_text(yaml.safe_dump({"name": recipe_name, "model": {"name": "stgcn"}}))
        try:
            rec = load_recipe(r)[0]
        except ConfigError as exc:
            assert str(r) in str(exc) and not is_safe_name(recipe_name)
        else:
            assert is_safe_name(rec.name) and _below(out, rec.name)
        p = Path(d) / "dev.yaml"
        p.write_text(_profile_text(profile_name, variant))
        try:
            prof = load_profile(p)
        except ConfigError as exc:
            assert str(p) in str(exc) and not (is_safe_name(profile_name) and is_safe_name(variant)
                                               and profile_name != "_shared")
        else:
            assert _below(out, "recipe", prof.name, "export", prof.variants[0].key)


@FUZZ
@given(hostile_names, hostile_names)
def test_fuzz_run_folder_names(recipe_name: str, device_name: str) -> None:
    """RunDir below a base: any names either give a RunFolderError or a folder below the base;
    nothing is ever created outside it."""
    from edgeskel.errors import RunFolderError
    from edgeskel.pipeline.rundir import RunDir

    with tempfile.TemporaryDirectory() as d:
        base = Path(d) / "out"
        try:
            with RunDir(base / recipe_name / device_name, base=base) as run:
                assert _below(base, recipe_name, device_name) and run.root.is_dir()
        except RunFolderError as exc:
            assert str(base) in str(exc)
        assert sorted(p.name for p in Path(d).iterdir()) in ([], ["out"])


@FUZZ
@given(hostile_names, st.one_of(st.none(), hostile_names),
       st.dictionaries(st.sampled_from(["ProxyCommand", "LocalCommand", "Compression", "ProxyJump", "Ciphers",
                                        "KnownHostsCommand", "IdentitiesOnly"]) | st.text(max_size=12),
                       hostile_names, max_size=2))
def test_fuzz_ssh_blocks(host: str, user: str | None, options: dict) -> None:
    """A profile's ssh block: ConfigError naming the file, or a command line whose destination
    follows `--` and whose options are all allow-listed."""
    from edgeskel.devices import load_profile
    from edgeskel.remote import SSHTarget
    from edgeskel.ssh_policy import ALLOWED_OPTIONS

    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "dev.yaml"
        p.write_text(_profile_text("dev", "v", {"host": host, "user": user, "options": options}))
        try:
            args = SSHTarget.from_profile(load_profile(p)).ssh_args()
        except ConfigError as exc:
            assert str(p) in str(exc)
            return
        assert args[-2:] == ["--", host] and not host.startswith("-") and not any(c.isspace() for c in host)
        assert user is None or ("-l" in args and not user.startswith("-"))
        set_opts = [a.split("=", 1)[0] for a in args[args.index("UpdateHostKeys=no") + 1:] if "=" in a]
        assert all(k in ALLOWED_OPTIONS or k == "UserKnownHostsFile" for k in set_opts), args
