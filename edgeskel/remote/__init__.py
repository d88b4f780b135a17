"""Measure bundles on devices: bundle building, the standalone device runner, SSH transport."""

from edgeskel.remote.bundle import make_bundle, read_bundle
from edgeskel.remote.remote import check_runtimes, run_remote
from edgeskel.remote.ssh import SSHTarget

__all__ = ["SSHTarget", "check_runtimes", "make_bundle", "read_bundle", "run_remote"]
