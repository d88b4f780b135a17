"""Every command edgeskel tells a person to type works as typed on a fresh clone (issue 27
items 3-4): `make` leaves edgeskel in .venv (not on PATH), so reports and the terminal name it
by a path that resolves from where the command is typed; `make export` says edgeskel's own exit
code (make turns every failure into 2) and the direct command scripts use to read it."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

import yaml

from edgeskel.invocation import edgeskel_command, edgeskel_executable

REPO = Path(__file__).resolve().parents[1]

RECIPE = {
    "name": "typed", "model": {"name": "stgcn", "width": 0.125, "kwargs": {"num_stages": 3}},
    "data": {"spec": "synthetic?classes=4&per_class=6&test_per_class=2&frames=16", "frames": 16, "persons": 1},
    "train": {"epochs": 1, "batch_size": 8, "warmup_epochs": 0, "threads": 1},
    "export": {"calib_samples": 8, "agreement_samples": 0},
}


def _files(tmp_path: Path) -> tuple[Path, Path]:
    recipe = tmp_path / "typed.yaml"
    recipe.write_text(yaml.safe_dump(RECIPE))
    prof = yaml.safe_load((REPO / "devices" / "jetson-orin.yaml").read_text())
    prof["variants"] = [{"backend": "tensorrt", "precision": "fp16"}, {"backend": "ort", "precision": "fp32"}]
    prof["batch_sizes"] = [1]
    profile = tmp_path / "orin.yaml"
    profile.write_text(yaml.safe_dump(prof))
    return recipe, profile


def test_command_names_this_edgeskel_as_it_can_be_typed(tmp_path, monkeypatch):
    exe = edgeskel_executable()
    assert exe is not None and exe.name == "edgeskel"
    monkeypatch.setenv("PATH", "/usr/bin:/bin")  # a fresh shell after `make`: .venv/bin not on PATH
    cmd = edgeskel_command(tmp_path)
    assert cmd != "edgeskel" and (tmp_path / cmd).resolve() == exe.resolve()
    monkeypatch.setenv("PATH", f"{exe.parent}:/usr/bin:/bin")  # activated venv: the plain name works
    assert edgeskel_command(tmp_path) == "edgeskel"


def test_report_steps_run_as_typed_and_make_reports_edgeskels_exit_code(tmp_path):
    """A Jetson run without a device: exit 3 from edgeskel; the report's and the terminal's
    import command, typed in the run folder with PATH lacking .venv/bin, finds edgeskel; `make
    export` exits 2 but names edgeskel's 3 and the direct command."""
    recipe, profile = _files(tmp_path)
    env = {**os.environ, "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"}
    exe = edgeskel_executable()
    proc = subprocess.run([str(exe), "export", "--device", str(profile), "--recipe", str(recipe), "--out", "runs"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 3, proc.stderr[-2000:]
    run = tmp_path / "runs" / "typed" / "jetson-orin"
    assert "cd runs/typed/jetson-orin" in proc.stdout
    import json

    steps = json.loads((run / "report.json").read_text())["device_steps"]
    importer = shlex.split(steps[-1])
    assert importer[1:] == ["results", "import", ".", "results.json"]
    assert importer[0] in proc.stdout and importer[0] in (run / "report.md").read_text()
    # typed in the run folder, without .venv/bin on PATH, the program is found and runs
    found = subprocess.run(f"{importer[0]} --version", shell=True, cwd=run, env=env, capture_output=True, text=True)
    assert found.returncode == 0 and found.stdout.startswith("edgeskel"), found.stderr

    mk = subprocess.run(["make", "-s", "-C", str(REPO), "export", f"DEVICE={profile}", f"RECIPE={recipe}",
                         f"ARGS=--out {tmp_path / 'runs'} --quiet"], env={**env, "PATH": os.environ["PATH"]},
                        capture_output=True, text=True, timeout=600)
    assert mk.returncode == 2, mk.stderr[-2000:]
    assert "edgeskel exited 3" in mk.stderr and "NOT MEASURED" in mk.stderr
    assert f".venv/bin/edgeskel export --device {profile}" in mk.stderr
    assert all(len(line) <= 80 for line in mk.stderr.splitlines() if "edgeskel exited" in line)
    assert sys.executable  # the test ran under the venv's python
