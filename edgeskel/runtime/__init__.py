"""Runners: one file per backend, one interface (`edgeskel.runtime.base.Runner`)."""

from edgeskel.runtime.base import Runner, available_runners, get_runner, register_runner

__all__ = ["Runner", "available_runners", "get_runner", "register_runner"]
