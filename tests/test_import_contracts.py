"""The layers hold by contract (issue 28): import-linter's contracts in pyproject.toml pass on the
tree, and fail when a ground module imports a stage, when an import closes a cycle (a lazy
import inside a function counts), or when the device runner imports edgeskel. No module takes a
private (`_name`) of another package."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LINT = Path(sys.executable).parent / "lint-imports"


def _lint(root: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(LINT), "--no-cache", "--config", str(root / "pyproject.toml")], cwd=root,
                          capture_output=True, text=True, timeout=300, env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"})


def test_contracts_pass_on_the_tree():
    proc = _lint(REPO)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert "0 broken" in proc.stdout


@pytest.mark.parametrize(("file", "line", "broken"), [
    ("edgeskel/checkpoint.py", "def _wrong():\n    from edgeskel.compress import api  # noqa\n",
     "Ground modules never import a pipeline stage"),
    ("edgeskel/compress/api.py", "def _wrong():\n    from edgeskel.pipeline import steps  # noqa\n",
     "No import cycles"),
    ("edgeskel/remote/device_runner.py", "def _wrong():\n    import edgeskel.errors  # noqa\n",
     "The device runner is shipped alone"),
])
def test_a_wrong_import_breaks_a_contract(tmp_path, file, line, broken):
    root = tmp_path / "tree"
    shutil.copytree(REPO / "edgeskel", root / "edgeskel", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", root / "pyproject.toml")
    with open(root / file, "a") as f:
        f.write("\n\n" + line)
    proc = _lint(root)
    assert proc.returncode != 0, proc.stdout[-3000:]
    broken_part = proc.stdout.split("Broken contracts")[-1]
    assert broken in broken_part, proc.stdout[-3000:]


def test_no_module_imports_a_private_name_of_another_package():
    bad = []
    for path in (REPO / "edgeskel").rglob("*.py"):
        mod = path.relative_to(REPO).with_suffix("").parts
        pkg = mod[1] if len(mod) > 1 else ""
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("edgeskel"):
                target = node.module.split(".")
                tpkg = target[1] if len(target) > 1 else ""
                bad += [f"{path.relative_to(REPO)}: {node.module}.{a.name}" for a in node.names
                        if a.name.startswith("_") and not a.name.startswith("__") and tpkg != pkg]
    assert not bad, bad
