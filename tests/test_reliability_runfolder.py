"""Names used as paths and hostile run folders (issue 17, items 2 and 3).

Recipes and profiles are files strangers share, and run folders live on shared disks. Every
attack here must end in one `error:` line (exit 2 through the CLI) with no side effect: no
file outside the run folder touched, nothing deleted that edgeskel did not create.
"""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest
from test_reliability_interrupt import PROFILE, RECIPE

from edgeskel.errors import ConfigError, RunFolderError
from edgeskel.pipeline.rundir import STAGE_MARKER, RunDir

BAD_NAMES = ["/some/other/dir", "../../../tmp/x", "a/b", "..", ".", ".hidden", "-rf", "", "a b", "a\nb", "x" * 65,
             "café", "a\\b", "~root"]


def _cli(args: list[str], capsys) -> tuple[int, str]:
    from edgeskel.cli import main

    rc = main(args)
    return rc, capsys.readouterr().err


def _one_error_line(rc: int, err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert rc == 2 and len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    return lines[0]


def _config(tmp_path: Path, recipe_name: str = "tiny", profile_name: str = "tinydev", variant: str | None = None):
    cfg = tmp_path / "cfg"
    cfg.mkdir(exist_ok=True)
    (cfg / "recipe.yaml").write_text(RECIPE.replace("name: tiny", f"name: {json.dumps(recipe_name)}"))
    prof = PROFILE.replace("name: tinydev", f"name: {json.dumps(profile_name)}")
    if variant is not None:
        prof = prof.replace("{backend: ort, precision: fp32}", f"{{backend: ort, precision: fp32, name: {json.dumps(variant)}}}")
    (cfg / "device.yaml").write_text(prof)
    return cfg / "recipe.yaml", cfg / "device.yaml"


# ------------------------------------------------------------------------------ names
@pytest.mark.parametrize("name", BAD_NAMES)
def test_bad_names_are_refused_where_parsed(name, tmp_path):
    """One rule for recipe, profile, variant and bundle names: each is refused when its file
    is parsed, with the file, the key and the rule."""
    from edgeskel.devices import load_profile
    from edgeskel.recipe import load_recipe

    recipe, device = _config(tmp_path, recipe_name=name)
    with pytest.raises(ConfigError, match=r"recipe\.yaml: invalid recipe: name: .*cannot be used as a folder name"):
        load_recipe(recipe)
    recipe, device = _config(tmp_path, profile_name=name)
    with pytest.raises(ConfigError, match=r"device\.yaml: invalid device profile: name: (.*cannot be used as a folder|String should have at least)"):
        load_profile(device)
    recipe, device = _config(tmp_path, variant=name)
    with pytest.raises(ConfigError, match=r"device\.yaml: invalid device profile: variants\.0\.name: .*folder name"):
        load_profile(device)


def test_good_names_pass_and_shared_is_reserved(tmp_path):
    from edgeskel.devices import load_profile
    from edgeskel.names import is_safe_name
    from edgeskel.recipe import list_recipes, load_recipe

    for name in ("tiny", "stgcn-lortsar", "a.b_c-1", "9", "x" * 64):
        assert is_safe_name(name)
        assert load_recipe(_config(tmp_path, recipe_name=name)[0])[0].name == name
    for name in list_recipes():
        load_recipe(name)
    with pytest.raises(ConfigError, match="'_shared' is reserved"):
        load_profile(_config(tmp_path, profile_name="_shared")[1])


def test_bundle_names_are_checked(tmp_path):
    import numpy as np
    from test_devices_common import tiny_onnx

    from edgeskel.devices import load_profile
    from edgeskel.remote.bundle import make_bundle, read_bundle

    tiny_onnx(tmp_path / "m.onnx")
    x, y = np.zeros((2, 3, 4, 5, 1), np.float32), np.zeros(2, np.int64)
    art = {"name": "../../escape", "backend": "ort", "precision": "fp32", "path": tmp_path / "m.onnx"}
    with pytest.raises(ConfigError, match="cannot be used as folder names"):
        make_bundle(tmp_path / "b", [art], x, y, None, load_profile("cpu"))
    assert not (tmp_path / "escape").exists() and not (tmp_path / "b").exists()
    (tmp_path / "evil").mkdir()
    (tmp_path / "evil" / "bundle.json").write_text(json.dumps({"format": "edgeskel-bundle/1", "bundle_id": "../../home",
                                                               "variants": []}))
    from edgeskel.remote.device_runner import BUNDLE_FORMAT

    doc = json.loads((tmp_path / "evil" / "bundle.json").read_text()) | {"format": BUNDLE_FORMAT}
    (tmp_path / "evil" / "bundle.json").write_text(json.dumps(doc))
    with pytest.raises(ConfigError, match=r"bundle names \['\.\./\.\./home'\]"):
        read_bundle(tmp_path / "evil")


def test_recipe_name_cannot_send_the_run_or_its_cleanup_outside_out(tmp_path, capsys):
    """The attack of issue 17: `name: /some/other/dir` sent the run folder there and the
    leftover cleanup deleted the files it found. Now: one error line, nothing touched."""
    victim = tmp_path / "victim"
    (victim / "tinydev" / "data").mkdir(parents=True)
    (victim / "tinydev" / "data" / "precious.txt").write_text("keep me")
    recipe, device = _config(tmp_path, recipe_name=str(victim))
    out = tmp_path / "out"
    line = _one_error_line(*_cli(["export", "--device", str(device), "--recipe", str(recipe), "--out", str(out),
                                  "--quiet"], capsys))
    assert "recipe.yaml" in line and "name" in line
    assert (victim / "tinydev" / "data" / "precious.txt").read_text() == "keep me"
    assert sorted(p.name for p in victim.rglob("*")) == ["data", "precious.txt", "tinydev"] and not out.exists()


def test_run_folder_stays_below_base(tmp_path):
    base = tmp_path / "out"
    for root in (base / ".." / "elsewhere", tmp_path / "elsewhere", base):
        with pytest.raises(RunFolderError, match="below"), RunDir(root, base=base):
            pass
    assert not (tmp_path / "elsewhere").exists()


# ------------------------------------------------------------------------------ cleanup
def _stage(run: RunDir, name: str = "data", inputs: dict | None = None, content: bytes = b"x") -> dict:
    def fn(d: Path) -> dict:
        (d / "a.bin").write_bytes(content)
        return {"outputs": ["a.bin"]}

    return run.run_stage(name, inputs or {"v": 1}, fn, log=lambda s: None)


def test_cleanup_deletes_only_what_edgeskel_created(tmp_path):
    root = tmp_path / "out" / "r" / "d"
    (root / "data").mkdir(parents=True)
    (root / "data" / "precious.txt").write_text("not ours")
    with pytest.raises(RunFolderError, match="edgeskel did not create it"), RunDir(root, base=tmp_path / "out") as run:
        _stage(run)
    assert (root / "data" / "precious.txt").read_text() == "not ours"
    # a stage folder edgeskel created is cleaned up when its inputs change ...
    (root / "data" / "precious.txt").unlink()
    (root / "data").rmdir()
    with RunDir(root, base=tmp_path / "out") as run:
        _stage(run)
        (root / "data" / "leftover").write_text("from the first run")
        _stage(run, inputs={"v": 2})
    assert not (root / "data" / "leftover").exists() and (root / "data" / STAGE_MARKER).is_file()
    # ... and also after the manifest was lost (its marker file says edgeskel made it)
    (root / "manifest.json").write_text("garbage")
    (root / "data" / "leftover").write_text("x")
    with RunDir(root, base=tmp_path / "out") as run:
        _stage(run)
    assert not (root / "data" / "leftover").exists()


# ------------------------------------------------------------------------------ symlinks
def test_lock_symlink_never_truncates_its_target(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("important")
    root = tmp_path / "run"
    root.mkdir()
    (root / ".lock").symlink_to(victim)
    with pytest.raises(RunFolderError, match=r"\.lock: the run folder's lock file is a symlink"), RunDir(root):
        pass
    assert victim.read_text() == "important"


def test_lock_fifo_is_refused_without_hanging(tmp_path):
    root = tmp_path / "run"
    root.mkdir()
    os.mkfifo(root / ".lock")
    with pytest.raises(RunFolderError, match="not a regular file"), RunDir(root):
        pass


def test_symlinked_stage_folder_is_refused(tmp_path, capsys):
    """Through the CLI: a `data` stage folder that is a symlink to a folder outside gave a raw
    OSError traceback (rmtree on a symlink); now one error line, the outside folder intact."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("keep")
    recipe, device = _config(tmp_path)
    out = tmp_path / "out"
    (out / "tiny" / "tinydev").mkdir(parents=True)
    (out / "tiny" / "tinydev" / "data").symlink_to(outside, target_is_directory=True)
    line = _one_error_line(*_cli(["export", "--device", str(device), "--recipe", str(recipe), "--out", str(out),
                                  "--quiet"], capsys))
    assert "stage 'data' folder is a symlink" in line
    assert sorted(p.name for p in outside.iterdir()) == ["keep.txt"]


def test_symlinked_output_or_manifest_is_refused(tmp_path):
    root = tmp_path / "run"
    with RunDir(root) as run:
        _stage(run)
    outside = tmp_path / "outside.bin"
    outside.write_bytes(b"x")  # same content: following the link would take the stage as done
    (root / "data" / "a.bin").unlink()
    (root / "data" / "a.bin").symlink_to(outside)
    with pytest.raises(RunFolderError, match=r"a\.bin: output of stage 'data' is a symlink"), RunDir(root) as run:
        _stage(run)
    (root / "data" / "a.bin").unlink()
    m = root / "manifest.json"
    m.rename(tmp_path / "real-manifest.json")
    m.symlink_to(tmp_path / "real-manifest.json")
    with pytest.raises(RunFolderError, match="run manifest is a symlink"), RunDir(root):
        pass


def test_symlinked_folder_between_out_and_run_folder_is_refused(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "tiny").symlink_to(outside, target_is_directory=True)
    with pytest.raises(RunFolderError, match="tiny: run folder is a symlink"), \
            RunDir(tmp_path / "out" / "tiny" / "dev", base=tmp_path / "out"):
        pass
    assert list(outside.iterdir()) == []


# ------------------------------------------------------------------------------ OS errors
def test_os_errors_in_the_run_folder_are_one_error_line(tmp_path, capsys):
    recipe, device = _config(tmp_path)
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("")
    line = _one_error_line(*_cli(["export", "--device", str(device), "--recipe", str(recipe), "--out", str(not_a_dir),
                                  "--quiet"], capsys))
    assert str(not_a_dir) in line
    out = tmp_path / "out"
    (out / "tiny" / "tinydev").mkdir(parents=True)
    (out / "tiny" / "tinydev" / "data").write_text("a file where a stage folder goes")
    line = _one_error_line(*_cli(["export", "--device", str(device), "--recipe", str(recipe), "--out", str(out),
                                  "--quiet"], capsys))
    assert "stage 'data' folder is not a folder" in line


def test_os_error_inside_a_stage_becomes_a_run_folder_error(tmp_path):
    def full_disk(d: Path) -> dict:
        raise OSError(errno.ENOSPC, "No space left on device", str(d / "big.bin"))

    with pytest.raises(RunFolderError, match=r"big\.bin: No space left on device \(run folder "), RunDir(tmp_path / "r") as run:
        run.run_stage("data", {}, full_disk, log=lambda s: None)
    assert json.loads((tmp_path / "r" / "manifest.json").read_text())["stages"]["data"]["status"] == "running"


def test_symlinked_folder_inside_a_finished_stage_is_refused(tmp_path):
    """export/<variant>/ swapped for a symlink to an identical copy outside: never taken as
    the finished stage's output (every folder between the run folder and the file is checked)."""
    import shutil

    def fn(d: Path) -> dict:
        (d / "v").mkdir()
        (d / "v" / "m.onnx").write_bytes(b"model")
        return {"outputs": ["v/m.onnx"]}

    root = tmp_path / "run"
    with RunDir(root) as run:
        run.run_stage("export", {"v": 1}, fn, log=lambda s: None)
    shutil.move(root / "export" / "v", tmp_path / "copy")
    (root / "export" / "v").symlink_to(tmp_path / "copy", target_is_directory=True)
    with pytest.raises(RunFolderError, match=r"export/v: stage 'export' folder is a symlink"), RunDir(root) as run:
        run.run_stage("export", {"v": 1}, fn, log=lambda s: None)
    assert (tmp_path / "copy" / "m.onnx").read_bytes() == b"model"
