"""Atomic file writes, content hashes and safe checkpoint (de)serialisation.

Why: a run can be killed at any moment (SIGKILL, power, session end). Every artifact is
written to a temporary name in the same directory, fsynced, then renamed, so a reader sees
either the old file or the complete new one, never a half-written one.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from edgeskel.errors import CheckpointError


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temp path next to `path`; rename it onto `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        if tmp_path.exists():
            with open(tmp_path, "rb") as fh:
                os.fsync(fh.fileno())
            os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp makes 0600; artifacts are ordinary files
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=json_default) + "\n")


def save_figure_png(fig: Any, path: str | Path, dpi: int = 110) -> Path:
    """Write a matplotlib figure as PNG atomically and close it (plots sit next to the JSON a
    reader may be reading; a half-written PNG must never appear)."""
    import matplotlib.pyplot as plt

    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi)
    plt.close(fig)
    return Path(path)


def json_default(obj: Any) -> Any:
    import numpy as np

    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


class InputRefused(ValueError):
    """A file a reader must not read: not a regular file (FIFO, device, socket, folder) or
    larger than its cap. Readers turn it into their own error naming the file."""


def max_input_bytes(default_mb: int) -> int:
    """The size cap for one input file: `default_mb`, or EDGESKEL_MAX_INPUT_MB if set."""
    env = os.environ.get("EDGESKEL_MAX_INPUT_MB")
    try:
        mb = float(env) if env else float(default_mb)
    except ValueError:
        mb = float(default_mb)
    return int(mb * (1 << 20))


def check_regular_file(path: str | Path, max_bytes: int | None = None) -> os.stat_result:
    """Stat `path` *before* opening it: only regular files pass (a FIFO would block open()
    forever, /dev/zero would be read until memory runs out), and only up to `max_bytes`."""
    import stat

    st = os.stat(path)
    if not stat.S_ISREG(st.st_mode):
        kind = ("a FIFO" if stat.S_ISFIFO(st.st_mode) else "a device" if stat.S_ISCHR(st.st_mode) or
                stat.S_ISBLK(st.st_mode) else "a folder" if stat.S_ISDIR(st.st_mode) else "a socket"
                if stat.S_ISSOCK(st.st_mode) else "not a regular file")
        raise InputRefused(f"is {kind}, not a regular file")
    if max_bytes is not None and st.st_size > max_bytes:
        raise InputRefused(f"is {st.st_size / (1 << 20):.1f} MB, above the {max_bytes / (1 << 20):.0f} MB cap "
                           f"for this kind of file (set EDGESKEL_MAX_INPUT_MB to raise it)")
    return st


def read_regular_file(path: str | Path, max_bytes: int) -> bytes:
    """Read a regular file of at most `max_bytes` (see `check_regular_file`). Opened with
    O_NONBLOCK and re-checked after opening, so a file swapped for a FIFO cannot hang us,
    and never reads more than the cap even if the file grows meanwhile."""
    import stat

    check_regular_file(path, max_bytes)
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise InputRefused("is not a regular file")
        os.set_blocking(fd, True)
        with os.fdopen(fd, "rb", closefd=False) as fh:
            # Ask for the size stat gave (+1 to see growth), never the cap: read(cap) would
            # allocate the whole cap up front.
            data = fh.read(min(st.st_size, max_bytes) + 1)
            while len(data) <= max_bytes and (more := fh.read(min(1 << 24, max_bytes + 1 - len(data)))):
                data += more
    finally:
        os.close(fd)
    if len(data) > max_bytes:
        raise InputRefused(f"grew above the {max_bytes / (1 << 20):.0f} MB cap while being read")
    return data


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_json(obj: Any) -> str:
    return sha256_bytes(json.dumps(obj, sort_keys=True, default=json_default).encode())


def torch_save_atomic(obj: Any, path: str | Path) -> Path:
    """torch.save through a temp file; obj must hold only tensors and plain Python values
    so that it reloads with weights_only=True."""
    import torch

    buf = io.BytesIO()
    torch.save(obj, buf)
    return atomic_write_bytes(path, buf.getvalue())


def torch_load_safe(path: str | Path) -> Any:
    """Load a torch file with weights_only=True: no code in a checkpoint is ever executed."""
    import pickle

    import torch

    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: checkpoint file not found")
    try:
        check_regular_file(path)  # a FIFO would block torch.load forever
    except InputRefused as exc:
        raise CheckpointError(f"{path}: not a checkpoint: the path {exc}") from None
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        import re

        # torch's own text advises disabling weights_only (unsafe); name what the file needs instead
        needs = sorted(set(re.findall(r"GLOBAL ([\w.]+)", str(exc)))) or ["Python objects"]
        raise CheckpointError(
            f"{path}: refused to load: the file needs code execution to unpickle "
            f"(only tensors and plain containers are allowed; it pickles {', '.join(needs)}). "
            "Where it was made, save only tensors: torch.save(model.state_dict(), path)"
        ) from None
    except Exception as exc:  # noqa: BLE001 - a corrupt file can make torch.load raise almost anything
        raise CheckpointError(f"{path}: not a readable torch checkpoint: {_first_line(exc)}") from None


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__
