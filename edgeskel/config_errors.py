"""Turn pydantic validation errors into one readable ConfigError: file, key path, what was
given and what is allowed. One problem gives one line (the CLI prints `error: <it>`); several
give a header line and one line per problem. Used by recipes and device profiles alike."""

from __future__ import annotations

import typing
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from edgeskel.errors import ConfigError


def format_validation_error(source: str | Path, exc: ValidationError, root: type[BaseModel] | None = None,
                            what: str = "configuration") -> str:
    """`<source>: invalid <what>: <key.path>: <problem> (given: X; allowed: Y)` per problem.
    `root` (the validated model class) lets unknown-key errors list the keys allowed there."""
    problems = [_problem(err, root) for err in exc.errors()]
    if len(problems) == 1:
        return f"{source}: invalid {what}: {problems[0]}"
    return f"{source}: invalid {what} ({len(problems)} problems):\n  - " + "\n  - ".join(problems)


def _problem(err: Any, root: type[BaseModel] | None) -> str:
    key = ".".join(str(p) for p in err["loc"]) or "<root>"
    kind = err["type"]
    given = err.get("input")
    msg = err["msg"]
    if kind == "extra_forbidden":
        msg = "unknown key"
    elif kind == "missing":
        msg = "required key is missing"
    detail = []
    if kind not in ("missing", "extra_forbidden") and not isinstance(given, dict):
        shown = repr(given)
        detail.append(f"given: {shown[:57] + '...' if len(shown) > 60 else shown}")
    allowed = allowed_values(err, root)
    if allowed:
        detail.append(f"allowed: {allowed}")
    return f"{key}: {msg}" + (f" ({'; '.join(detail)})" if detail else "")


def allowed_values(err: Any, root: type[BaseModel] | None) -> str | None:
    """What would have been accepted at the error's location, as text (None if unknown)."""
    ctx = err.get("ctx") or {}
    t = err["type"]
    if "expected" in ctx:
        return str(ctx["expected"])
    if t == "extra_forbidden":
        model = _model_at(root, list(err["loc"][:-1])) if root is not None else None
        return ", ".join(model.model_fields) if model else None
    for bound, text in (("gt", "> {}"), ("ge", ">= {}"), ("lt", "< {}"), ("le", "<= {}")):
        if bound in ctx:
            return text.format(ctx[bound])
    if t.startswith(("int_", "float_", "bool_", "string_", "list_", "dict_")):
        return t.split("_")[0] if t != "int_from_float" else "int"
    if t.endswith("_type"):
        return t[: -len("_type")]
    return None


def _model_at(root: type[BaseModel], loc: list[Any]) -> type[BaseModel] | None:
    """Walk field annotations along `loc` to find the model whose keys are allowed there."""
    model: Any = root
    for part in loc:
        if isinstance(part, int):
            continue
        if not (isinstance(model, type) and issubclass(model, BaseModel)) or part not in model.model_fields:
            return None
        model = _unwrap(model.model_fields[part].annotation)
    return model if isinstance(model, type) and issubclass(model, BaseModel) else None


def _unwrap(ann: Any) -> Any:
    """The BaseModel inside `X | None`, `list[X]`, ... (else `ann`)."""
    for arg in (typing.get_args(ann) or (ann,)):
        if isinstance(arg, type) and issubclass(arg, BaseModel):
            return arg
        for a in typing.get_args(arg):
            if isinstance(a, type) and issubclass(a, BaseModel):
                return a
    return ann


def read_yaml_mapping(path: str | Path, what: str) -> dict[str, Any]:
    """Read a YAML file that must hold a mapping; every failure is a ConfigError naming the file.
    Shared by recipes, device profiles and layout files."""
    import yaml

    from edgeskel.io import InputRefused, read_regular_file

    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: {what} file not found")
    try:
        text = read_regular_file(path, YAML_CAP_BYTES)  # regular files only: a FIFO would hang
        data = yaml.safe_load(text.decode("utf-8"))
    except InputRefused as exc:
        raise ConfigError(f"{path}: cannot read {what}: the path {exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML: {' '.join(str(exc).split())}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: cannot read {what}: not UTF-8 text ({exc.reason})") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read {what}: {exc.strerror or exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a {what} must be a YAML mapping, got {type(data).__name__}")
    if _expanded_size(data, 10_000 + 2 * len(text)) < 0:
        # YAML aliases share one node many times: nested, they make a "billion laughs" that
        # every later step (validation, hashing into the manifest) would expand.
        raise ConfigError(f"{path}: refused {what}: its aliases (`*name`) expand to more values than a file of "
                          f"this size can hold")
    return data


YAML_CAP_BYTES = 16 << 20  # recipes and profiles are a few KB


def _expanded_size(obj: Any, budget: int) -> int:
    """`budget` minus the number of values `obj` holds when every alias is expanded; stops
    as soon as it goes negative."""
    stack = [obj]
    while stack and budget >= 0:
        o = stack.pop()
        if isinstance(o, dict):
            budget -= len(o)
            stack.extend(o.values())
        elif isinstance(o, list):
            budget -= len(o)
            stack.extend(x for x in o if isinstance(x, (dict, list)))
    return budget


def load_yaml_model(path: str | Path, model: type[BaseModel], what: str) -> Any:
    """Read a YAML file into a pydantic model; every failure is a ConfigError naming the file."""
    data = read_yaml_mapping(path, what)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(str(path), exc, model, what)) from None
