"""Time the per-layer latency table's forms ON THE DEVICE over SSH (profiles with an `ssh:` block).

Why: the rank policy 'latency' keeps a layer dense unless its factorized form measures faster,
and what is faster on this host's x86 cores says little about an Orin's ARM cores or another
runtime build. The forms are exported here exactly as for host timing (export.onnx.export_layer),
shipped as ONE layer bundle (remote/bundle.make_layer_bundle) per policy run, and timed by the
same standalone device runner that measures whole models, forms of a layer interleaved. The
device's runtime versions (asked over SSH) become part of the table's cache key.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgeskel.compress.latency_table import Job
from edgeskel.errors import RemoteError
from edgeskel.export.onnx import export_layer

if TYPE_CHECKING:
    from edgeskel.devices import DeviceProfile


class DeviceLayerTimer:
    """`LatencyTable(device=...)`: times layer forms with the device runner on `profile`'s SSH target."""

    def __init__(self, profile: DeviceProfile, backend: str, rounds: int = 3, runs: int = 30, warmup: int = 5,
                 max_seconds: float | None = 0.3, log: Callable[[str], None] | None = None):
        from edgeskel.remote.ssh import SSHTarget

        if profile.ssh is None:
            raise RemoteError(f"device profile {profile.name!r} has no `ssh:` block: layer latencies cannot be "
                              "timed on the device")
        self.profile, self.backend = profile, backend
        self.target = SSHTarget.from_profile(profile)
        self.rounds, self.runs, self.warmup, self.max_seconds = rounds, runs, warmup, max_seconds
        # the session settings the profile gives this backend (ORT providers, OpenVINO device/config):
        # a layer is timed where the model will run, e.g. on the CUDA provider if the variant uses it
        self.options = next((dict(v.options) for v in profile.variants if v.backend == backend and v.precision == "fp32"),
                            next((dict(v.options) for v in profile.variants if v.backend == backend), {}))
        self.log = log or (lambda s: None)

    def versions(self) -> dict[str, str | None]:
        """What the timings depend on besides the layer: the device's python, architecture and
        runtime module version (one SSH command) and the session options."""
        from edgeskel.remote.remote import check_runtimes

        self.target.check_connection()
        info = check_runtimes(self.target, [self.backend], self.profile.arch)
        return {"device": self.target.label, "device_machine": info["machine"], "device_python": info["python"],
                "session_options": json.dumps(self.options, sort_keys=True),  # other providers: other timings
                **{f"device_{m}": v for m, v in (info.get("versions") or {}).items()}}

    def time_groups(self, jobs: list[Job]) -> list[dict[str, float]]:
        """{form key: p50 ms} per job, all jobs in one bundle and one device run."""
        from edgeskel.remote.bundle import make_layer_bundle
        from edgeskel.remote.remote import run_remote

        with tempfile.TemporaryDirectory(prefix="edgeskel-devlat-") as td:
            forms, names = [], []
            for gi, (_info, modules, x) in enumerate(jobs):
                keys = {}
                for fi, (key, mod) in enumerate(modules.items()):
                    name = f"g{gi}-f{fi}"
                    path = export_layer(mod, x, Path(td) / f"{name}.onnx")
                    forms.append({"name": name, "group": f"g{gi}", "path": path, "backend": self.backend,
                                  "input_shape": list(x.shape), "options": self.options})
                    keys[name] = key
                names.append(keys)
            bundle = make_layer_bundle(Path(td) / "layers", forms, self.profile, warmup=self.warmup, runs=self.runs,
                                       rounds=self.rounds, max_seconds=self.max_seconds)
            self.log(f"[latency] timing {len(forms)} layer forms ({len(jobs)} layer x batch groups) on {self.target.label}")
            doc = run_remote(bundle, self.target, out=Path(td) / "results.json", log=self.log)
        by_name = {r["name"]: r for r in doc["variants"]}
        out = []
        for (info, _m, x), keys in zip(jobs, names, strict=True):
            times = {}
            for name, key in keys.items():
                r = by_name[name]
                if r.get("status") != "ok":
                    raise RemoteError(f"device {self.profile.name!r} could not time layer {info.name!r} as {key} "
                                      f"(input {tuple(x.shape)}): {r.get('error')}")
                try:
                    times[key] = float(r["latency_ms"][str(int(x.shape[0]))]["p50"])
                except (KeyError, TypeError, ValueError):
                    raise RemoteError(f"results from device {self.profile.name!r} lack the batch-{int(x.shape[0])} p50 "
                                      f"of layer {info.name!r} ({key})") from None
            out.append(times)
        return out


def latency_table_for(cfg: Any, profile: DeviceProfile, log: Callable[[str], None] | None = None) -> Any:
    """The layer table policy 'latency' uses in a run on `profile`: None (compress_model builds the
    host table from the config) unless the config says `latency_on: device`; then one timed on
    this profile's SSH device, which must be the device the ranks were chosen for."""
    from edgeskel.compress.latency_table import LatencyTable
    from edgeskel.errors import ConfigError

    if cfg is None or cfg.policy != "latency" or cfg.latency_on != "device":
        return None
    if cfg.latency_profile != profile.name:
        raise ConfigError(f"compress.latency_profile {cfg.latency_profile!r} with latency_on 'device': the layer "
                          f"latencies are timed on that device, but this run is for {profile.name!r}")
    if profile.ssh is None:
        raise ConfigError(f"compress.latency_on 'device' needs an `ssh:` block in device profile {profile.name!r} "
                          "(the layer latencies are timed there)")
    return LatencyTable.from_config(cfg, device=DeviceLayerTimer(profile, cfg.latency_backend, log=log), log=log)
