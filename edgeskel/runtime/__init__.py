"""Runners: one file per backend, one interface (`edgeskel.runtime.base.Runner`)."""

from edgeskel.runtime import openvino, ort, tensorrt, torch_runner  # noqa: F401 - register runners
from edgeskel.runtime.base import Runner, available_runners, get_runner, register_runner

__all__ = ["Runner", "available_runners", "get_runner", "register_runner"]
