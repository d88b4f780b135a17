"""How a person types edgeskel again, for the commands reports and messages tell them to run.

`make` installs edgeskel into the clone's `.venv`, which is not on PATH: a report that says
`edgeskel results import ...` got "command not found" on a fresh clone. Commands shown to a
user therefore name the executable that is running now, as they can type it: `edgeskel` when
that name on PATH is this very program, else its path (relative to where the command will be
typed, e.g. `../../../.venv/bin/edgeskel` from a run folder).
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path


def edgeskel_executable() -> Path | None:
    """The `edgeskel` console script of this Python environment (beside its interpreter)."""
    exe = Path(sys.executable).parent / "edgeskel"
    return exe if exe.is_file() else None


def edgeskel_command(typed_in: str | Path | None = None) -> str:
    """`edgeskel` if PATH finds this environment's script, else the script's path relative to
    `typed_in` (default: the current folder) when they share a folder below the root (the clone),
    else its absolute path; `python -m edgeskel` with this interpreter when there is no script."""
    exe = edgeskel_executable()
    on_path = shutil.which("edgeskel")
    if exe is not None and on_path and Path(on_path).absolute() == exe.absolute():
        return "edgeskel"
    if exe is None:
        return f"{sys.executable} -m edgeskel"
    start = (Path(typed_in) if typed_in is not None else Path.cwd()).absolute()
    try:
        common = Path(os.path.commonpath([exe.absolute(), start]))
        rel = os.path.relpath(exe.absolute(), start)
    except ValueError:  # another drive (Windows)
        return str(exe.absolute())
    if common == Path(common.anchor):  # nothing shared but the root: a relative path would climb to /
        return str(exe.absolute())
    return rel if rel.startswith("..") or "/" in rel else f"./{rel}"
