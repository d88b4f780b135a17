"""The record every backend file defines (`BACKEND = BackendSpec(...)`); see `edgeskel/backends/__init__.py`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class BackendSpec:
    """What the rest of edgeskel needs to know about one backend, as data.

    name: the word profiles, recipes and the CLI use (`backend: ort`); equals the file's name.
    summary: one line for people.
    precisions: what `export_variant` makes for it (for a backend that is not exported, what its
        runner runs).
    runtime_modules: Python modules a machine must import to run it (the first is the runtime;
        `edgeskel device-check` and the device runner import all of them).
    dists: pip distributions whose version is the runtime's version (the first one found counts).
    install_hints: runtime module -> how to install it on a device.
    runner: the `edgeskel.runtime` Runner that runs its artifact on this host (the portable `onnx`
        export runs on `ort`).
    exported: `export_variant` makes artifacts for it (torch is the reference: no export).
    in_profiles: a device profile may list it (and so a bundle may hold it).
    runs_here: an exported variant of it is timed on this x86 CPU host (tune, bench); TensorRT
        is timed by the device runner on the device only.
    layer_timing: the per-layer latency table (compress/latency_table.py) can time it.
    interleavable: the device runner may time it round-robin with others in one process.
    streaming_precisions: what the streaming (step graph) export supports; () = no streaming form.
    """

    name: str
    summary: str
    precisions: tuple[str, ...]
    runtime_modules: tuple[str, ...]
    dists: tuple[str, ...]
    runner: str
    install_hints: Mapping[str, str] = field(default_factory=dict)
    exported: bool = True
    in_profiles: bool = True
    runs_here: bool = False
    layer_timing: bool = False
    interleavable: bool = False
    streaming_precisions: tuple[str, ...] = ()

    def device_record(self) -> dict[str, object]:
        """What a bundle tells the standalone device runner about this backend (bundle.json
        `backends`): the runner cannot import edgeskel, so it reads these instead."""
        return {"runtime_modules": list(self.runtime_modules), "dists": list(self.dists),
                "interleavable": self.interleavable}
