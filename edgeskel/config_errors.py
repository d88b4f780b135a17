"""Turn pydantic validation errors into one readable ConfigError: file, key path, what is allowed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from edgeskel.errors import ConfigError


def format_validation_error(source: str, exc: ValidationError) -> str:
    lines = [f"{source}: invalid configuration:"]
    for err in exc.errors():
        path = ".".join(str(p) for p in err["loc"]) or "<root>"
        kind = err["type"]
        given = err.get("input")
        if kind == "extra_forbidden":
            lines.append(f"  - {path}: unknown key")
        elif kind == "missing":
            lines.append(f"  - {path}: required key is missing")
        else:
            shown = repr(given)
            if len(shown) > 60:
                shown = shown[:57] + "..."
            lines.append(f"  - {path}: {err['msg']} (got {shown})")
    return "\n".join(lines)


def load_yaml_model(path: str | Path, model: type[BaseModel], what: str) -> Any:
    """Read a YAML file into a pydantic model; every failure is a ConfigError naming the file."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: {what} file not found")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML: {exc}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read {what}: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a {what} must be a YAML mapping, got {type(data).__name__}")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(str(path), exc)) from None
