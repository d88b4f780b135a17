"""Error types that may reach a user.

Every failure a user can cause (bad file, bad config, wrong checkpoint, broken artifact,
unreachable device) is raised as one of these, with the file and the problem in the message,
so the CLI can print one clear line instead of a traceback.
"""

from __future__ import annotations

from pathlib import Path


class EdgeskelError(Exception):
    """Base class: the CLI prints these as `error: <message>` and exits with code 2."""

    exit_code = 2


class DataError(EdgeskelError):
    """A data file is unreadable or inconsistent. Names the file and, if known, the sample."""

    def __init__(self, path: str | Path | None, problem: str, sample: str | int | None = None):
        self.path = str(path) if path is not None else None
        self.problem = problem
        self.sample = sample
        where = self.path or "<data>"
        if sample is not None:
            where += f" [sample {sample}]"
        super().__init__(f"{where}: {problem}")


class ConfigError(EdgeskelError):
    """A recipe, device profile or layout file is invalid. Names file, key path, allowed values."""


class CheckpointError(EdgeskelError):
    """A checkpoint cannot be loaded into the requested architecture (lists keys/shapes)."""


class UnsafePickleError(DataError):
    """A pickle tried to reference something other than plain containers / numpy arrays."""


class ExportError(EdgeskelError):
    """Export, quantization or an artifact check failed."""


class ParityError(ExportError):
    """An artifact's outputs disagree with the PyTorch reference beyond tolerance."""


class RemoteError(EdgeskelError):
    """A device could not be reached or a remote command failed."""


class TrainingDivergedError(EdgeskelError):
    """The training loss became NaN/Inf; names the epoch, step and the checkpoints that were kept."""


class RunLockedError(EdgeskelError):
    """Another edgeskel process holds the run folder."""


class RunFolderError(EdgeskelError):
    """The run folder cannot be used safely: a symlink where edgeskel writes, a folder it did
    not create where it would delete, or an OS error (permissions, full disk) on its files."""
