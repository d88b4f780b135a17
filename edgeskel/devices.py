"""Device profiles: where a model must run and what it must meet.

A profile (`devices/<name>.yaml`) lists the (backend, precision) variants to try, batch sizes,
input shape overrides, the gates a variant must pass, published peak numbers for a roofline
*estimate*, optional TensorRT settings and optionally how to reach the device over SSH.
Profiles are validated strictly (unknown keys are errors) so a typo never silently turns a
gate off; errors name the file, the key path, what was given and what is allowed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from edgeskel.config_errors import did_you_mean, name_list, read_yaml_mapping
from edgeskel.errors import ConfigError

Precision = Literal["fp32", "fp16", "bf16", "int8"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Variant(_Strict):
    """One (backend, precision) combination to export, measure and gate."""

    backend: str  # a backend a profile may list (edgeskel/backends/, `in_profiles`)
    precision: Precision
    options: dict[str, Any] = Field(default_factory=dict)
    name: str | None = None  # defaults to "<backend>-<precision>"

    @field_validator("backend", mode="before")
    @classmethod
    def _known_backend(cls, v: Any) -> Any:
        from edgeskel.backends import check_choice

        return check_choice(v, in_profiles=True)  # "'x' is not one of: ..." as a Literal would say

    @field_validator("name")
    @classmethod
    def _safe_name(cls, v: str | None) -> str | None:
        from edgeskel.names import check_name

        return None if v is None else check_name(v, "variant name")  # becomes export/<name>/

    @property
    def key(self) -> str:
        return self.name or f"{self.backend}-{self.precision}"


class InputSpec(_Strict):
    num_frames: int | None = Field(default=None, gt=0)
    num_person: int | None = Field(default=None, gt=0)
    static_shapes: bool = False


class Gates(_Strict):
    max_top1_drop: float = Field(default=1.0, ge=0)  # percentage points vs the fp32 reference
    p99_latency_ms: float | None = Field(default=None, gt=0)  # at batch 1
    max_memory_mb: float | None = Field(default=None, gt=0)  # peak RSS of the runner process
    min_agreement: float | None = Field(default=None, ge=0, le=100)  # % top-1 equal to reference


class StreamingGates(_Strict):
    """Streaming (step graph) variants on this device (docs/STREAMING.md "In make export") and
    their gates. Its presence alone asks `make export` for a streaming twin of every variant
    whose backend and precision have a step graph. Streams sustained = how many streams at `fps`
    the runner's threads keep up with, calls back to back: stride x 1000 / (fps x mean call ms)."""

    fps: float = Field(default=30.0, gt=0, le=1000)  # the rate a pose source delivers frames at
    min_streams: int | None = Field(default=None, ge=1)  # streams at `fps` the device must sustain
    p99_latency_ms: float | None = Field(default=None, gt=0)  # per step call (one decision)
    max_top1_drop: float | None = Field(default=None, ge=0)  # streaming top-1 vs the same variant windowed, points


class Peak(_Strict):
    gflops_fp32: float = Field(gt=0)
    gflops_fp16: float | None = Field(default=None, gt=0)
    tops_int8: float | None = Field(default=None, gt=0)
    memory_bandwidth_gbs: float = Field(gt=0)
    source: str = Field(min_length=1)


class TensorRTSpec(_Strict):
    """TensorRT on the device. `version` picks the build route (quantize/tensorrt_routes.py):
    strongly typed builds by default; `typing: weak` (trtexec --fp16/--int8) only for 10.x,
    because TensorRT 11 removed the weakly typed flags."""

    jetpack: str | None = None
    version: str | None = Field(default=None, pattern=r"^\d+\.\d+(\.\d+)*$")
    typing: Literal["strong", "weak"] = "strong"
    dla_cores: int = Field(default=0, ge=0)
    use_dla: bool = False
    workspace_mb: int = Field(default=1024, gt=0)

    @model_validator(mode="after")
    def _dla_exists(self) -> TensorRTSpec:
        if self.use_dla and self.dla_cores == 0:
            raise ValueError("use_dla is true but dla_cores is 0 (this module has no DLA)")
        if self.typing == "weak" and self.version and int(self.version.split(".")[0]) >= 11:
            raise ValueError(f"typing: weak needs TensorRT 10.x: TensorRT {self.version} removed the weakly typed "
                             f"flags (--fp16/--int8); use typing: strong")
        return self


class SSHSpec(_Strict):
    host: str = Field(min_length=1)
    user: str | None = None
    port: int = Field(default=22, ge=1, le=65535)
    identity_file: str | None = None
    workdir: str = "~/edgeskel-run"
    python: str = "python3"
    connect_timeout_s: int = Field(default=10, gt=0)
    command_timeout_s: int = Field(default=1800, gt=0)
    # Only for special setups and tests: an ssh config file used *instead of* ~/.ssh/config
    # (ssh -F), a known_hosts file, and extra `-o Key=Value` options. The safety options
    # (BatchMode, StrictHostKeyChecking, timeouts) cannot be overridden.
    config_file: str | None = None
    known_hosts_file: str | None = None
    options: dict[str, str] = Field(default_factory=dict)

    # Profiles are untrusted: a host like `-oProxyCommand=...` would run a local command, and
    # most ssh options can (see edgeskel/ssh_policy.py for the allow-list).
    @field_validator("host")
    @classmethod
    def _host(cls, v: str) -> str:
        from edgeskel.ssh_policy import check_host

        return check_host(v)

    @field_validator("user")
    @classmethod
    def _user(cls, v: str | None) -> str | None:
        from edgeskel.ssh_policy import check_user

        return check_user(v)

    @field_validator("python", "workdir")
    @classmethod
    def _remote_path(cls, v: str) -> str:
        """The remote interpreter and folder are quoted, but a shared profile should still not be
        able to hide a command line in them: one path-like word (`~/`, `$HOME` not expanded)."""
        import re

        if not re.fullmatch(r"~?[A-Za-z0-9_./+@%:=,-]+", v) or v.startswith("-"):
            raise ValueError(f"must be one path (letters, digits, _ . / + @ % : = , - and a leading ~), got {v!r}")
        return v

    @field_validator("options", mode="before")
    @classmethod
    def _yes_no(cls, v: Any) -> Any:
        """YAML reads `Compression: yes` as a boolean; ssh wants the word."""
        return {k: ("yes" if x else "no") if isinstance(x, bool) else x for k, x in v.items()} if isinstance(v, dict) else v

    @field_validator("options")
    @classmethod
    def _options(cls, v: dict[str, str]) -> dict[str, str]:
        from edgeskel.ssh_policy import check_options

        return check_options(v)


class Measure(_Strict):
    """Latency measurement: untimed warm-up calls, then `runs` timed calls per batch size.
    Shipped profiles keep the default 100 runs (p99 needs them); tests may use fewer."""

    warmup: int = Field(default=10, ge=0)
    runs: int = Field(default=100, ge=1)


class DeviceProfile(_Strict):
    name: str = Field(min_length=1)
    description: str = ""
    arch: Literal["x86_64", "aarch64"]
    variants: list[Variant] = Field(min_length=1)
    batch_sizes: list[int] = Field(default_factory=lambda: [1], min_length=1)
    threads: int | None = Field(default=None, gt=0)
    input: InputSpec = Field(default_factory=InputSpec)
    gates: Gates = Field(default_factory=Gates)
    rank_multiple: int = Field(default=8, gt=0)
    peak: Peak
    tensorrt: TensorRTSpec | None = None
    ssh: SSHSpec | None = None
    measure: Measure = Field(default_factory=Measure)
    streaming: StreamingGates | None = None  # streaming twins of the variants and their gates

    @field_validator("name")
    @classmethod
    def _safe_name(cls, v: str) -> str:
        from edgeskel.names import check_name

        if v == "_shared":  # runs/<recipe>/_shared holds the reference model every device reuses
            raise ValueError("profile name '_shared' is reserved (the run folder every device shares)")
        return check_name(v, "profile name")  # becomes runs/<recipe>/<name>/

    @field_validator("batch_sizes")
    @classmethod
    def _positive_unique(cls, v: list[int]) -> list[int]:
        if any(b <= 0 for b in v):
            raise ValueError("batch sizes must be positive integers")
        if len(set(v)) != len(v):
            raise ValueError("batch sizes must be unique")
        return sorted(v)

    @model_validator(mode="after")
    def _consistent(self) -> DeviceProfile:
        keys = [v.key for v in self.variants]
        dup = sorted({k for k in keys if keys.count(k) > 1})
        if dup:
            raise ValueError(f"duplicate variant names {dup}: give them distinct `name:` values")
        if any(v.backend == "tensorrt" for v in self.variants) and self.tensorrt is None:
            raise ValueError("a tensorrt variant needs a `tensorrt:` block")
        for v in self.variants:
            core = v.options.get("dla_core")
            if v.backend != "tensorrt" or core is None:
                continue
            cores = self.tensorrt.dla_cores if self.tensorrt else 0
            if not isinstance(core, int) or isinstance(core, bool) or not 0 <= core < cores:
                raise ValueError(f"variant {v.key}: options.dla_core {core!r} is not a DLA core of this module "
                                 f"(tensorrt.dla_cores: {cores})")
        return self

    @property
    def variant_names(self) -> list[str]:
        return [v.key for v in self.variants]


# ----------------------------------------------------------------------------- loading


def profiles_dir() -> Path:
    """`devices/` at the repo root: next to the package, else under the CWD."""
    candidates = [Path(__file__).resolve().parent.parent / "devices", Path.cwd() / "devices"]
    for c in candidates:
        if c.is_dir():
            return c
    return candidates[0]


def list_profiles() -> list[str]:
    d = profiles_dir()
    return sorted(p.stem for p in d.glob("*.yaml")) if d.is_dir() else []


def load_profile(name_or_path: str | Path) -> DeviceProfile:
    """Load and validate a profile by name (`devices/<name>.yaml`) or by path."""
    s = str(name_or_path)
    path = Path(s)
    if not (s.endswith((".yaml", ".yml")) or path.is_file()):
        path = profiles_dir() / f"{s}.yaml"
    if not path.exists():  # not is_file(): a FIFO or folder gets its own error from read_yaml_mapping
        names = list_profiles()
        hint = did_you_mean(s if path.parent == profiles_dir() else path.stem, names)
        raise ConfigError(f"{path}: device profile not found{hint}; available profiles: {name_list(names)} "
                          f"(in {profiles_dir()})")
    profile = profile_from_dict(read_yaml_mapping(path, "device profile"), source=path)
    _check_ssh_files(profile, path)
    return profile


def _check_ssh_files(profile: DeviceProfile, source: Path) -> None:
    """Files the ssh block names must exist here: a missing key or known_hosts file would
    otherwise surface later as a confusing authentication or host-key failure."""
    if profile.ssh is None:
        return
    for key in ("identity_file", "config_file", "known_hosts_file"):
        value = getattr(profile.ssh, key)
        if value and not Path(value).expanduser().is_file():
            raise ConfigError(f"{source}: invalid device profile: ssh.{key}: file {value} not found "
                              f"(allowed: an existing file, or null to use ~/.ssh/config and ssh-agent)")
    if profile.ssh.config_file:
        from edgeskel.ssh_policy import check_config_file

        check_config_file(profile.ssh.config_file)  # held to the same option allow-list


def profile_from_dict(data: dict[str, Any], source: str | Path = "<profile>") -> DeviceProfile:
    try:
        return DeviceProfile.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, source, DeviceProfile)) from None


def format_validation_error(exc: ValidationError, source: str | Path, root: type[BaseModel] = DeviceProfile) -> str:
    """One line per problem: `file: invalid device profile: key.path: problem (given: X; allowed: Y)`."""
    from edgeskel.config_errors import format_validation_error as fmt

    return fmt(source, exc, root, "device profile")
