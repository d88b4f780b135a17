"""Backend registry: one file per backend (`edgeskel/backends/<name>.py` defines `BACKEND =
BackendSpec(...)`), found by `pkgutil` like the CLI's commands, so a new backend edits no
shared list. Every list of backends elsewhere (profile validation, export precisions, the
latency table's runtimes, tune's and bench's host-timed backends, the device check's modules,
the bundle's runtime records, streaming precisions) reads this registry.

A ground module: it imports only `errors`, `config_errors` and its own files, so
`devices.py` and every stage may use it. The standalone device runner cannot import it; a
bundle carries each backend's `device_record()` in bundle.json instead (remote/bundle.py).
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Any

from edgeskel.backends.spec import BackendSpec
from edgeskel.config_errors import did_you_mean, name_list
from edgeskel.errors import ConfigError

_NOT_BACKENDS = {"spec"}  # modules of this package that define no backend
_registry: dict[str, BackendSpec] | None = None


def _discover() -> dict[str, BackendSpec]:
    """Import every module of this package and collect its `BACKEND`; checked once here so a
    mistake in a backend file fails at the first lookup, naming the file."""
    import edgeskel.backends as pkg

    found: dict[str, BackendSpec] = {}
    for mod in sorted(m.name for m in pkgutil.iter_modules(pkg.__path__)):
        if mod in _NOT_BACKENDS or mod.startswith("_"):
            continue
        spec = getattr(importlib.import_module(f"edgeskel.backends.{mod}"), "BACKEND", None)
        where = f"edgeskel/backends/{mod}.py"
        if not isinstance(spec, BackendSpec):
            raise ConfigError(f"{where}: defines no BACKEND = BackendSpec(...)")
        if spec.name != mod:
            raise ConfigError(f"{where}: BACKEND.name is {spec.name!r}; it must be the file's name {mod!r}")
        if not spec.precisions or not spec.runtime_modules:
            raise ConfigError(f"{where}: BACKEND needs at least one precision and one runtime module")
        if not set(spec.streaming_precisions) <= set(spec.precisions):
            raise ConfigError(f"{where}: streaming_precisions {list(spec.streaming_precisions)} are not all "
                              f"precisions {list(spec.precisions)}")
        found[mod] = spec
    for spec in found.values():
        if spec.runner not in found:
            raise ConfigError(f"edgeskel/backends/{spec.name}.py: runner {spec.runner!r} is not a backend "
                              f"({name_list(found)})")
    return found


def registry() -> dict[str, BackendSpec]:
    """{name: BackendSpec} of every backend, by name."""
    global _registry
    if _registry is None:
        _registry = _discover()
    return _registry


def refresh() -> None:
    """Forget the discovered backends (tests that add a backend file call this)."""
    global _registry
    _registry = None


def all_backends(**flags: bool) -> list[BackendSpec]:
    """Every backend whose boolean fields equal `flags` (e.g. `layer_timing=True`), by name."""
    return [s for _, s in sorted(registry().items()) if all(getattr(s, k) == v for k, v in flags.items())]


def backend_names(**flags: bool) -> list[str]:
    """Names of `all_backends(**flags)`: `backend_names(in_profiles=True)` is what a profile may list."""
    return [s.name for s in all_backends(**flags)]


def get_backend(name: str, what: str = "backend") -> BackendSpec:
    """The record of `name`; a ConfigError with the closest name and the list otherwise."""
    reg = registry()
    if name not in reg:
        raise ConfigError(f"unknown {what} {name!r}{did_you_mean(name, reg)}; available: {name_list(sorted(reg))}")
    return reg[name]


def precisions(name: str) -> tuple[str, ...]:
    return get_backend(name).precisions


def device_records() -> dict[str, dict[str, Any]]:
    """bundle.json `backends`: what the device runner needs of each backend a bundle may hold
    (those a profile may list); it also reports each one's runtime version."""
    return {s.name: s.device_record() for s in all_backends(in_profiles=True)}


def check_choice(value: Any, **flags: bool) -> Any:
    """For pydantic `mode="before"` validators: `value` if it names a backend with `flags`, else a
    `literal_error` like a `Literal[...]` field's, so config_errors prints
    `key: 'x' is not one of: a, b (did you mean 'a'?)` with the registry's current names."""
    names = backend_names(**flags)
    if value in names:
        return value
    from pydantic_core import PydanticCustomError

    quoted = [repr(n) for n in names]
    expected = quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + f" or {quoted[-1]}"
    raise PydanticCustomError("literal_error", "Input should be {expected}", {"expected": expected})


__all__ = ["BackendSpec", "all_backends", "backend_names", "check_choice", "device_records", "get_backend",
           "precisions", "refresh", "registry"]
