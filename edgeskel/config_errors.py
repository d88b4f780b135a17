"""Turn pydantic validation errors into one readable ConfigError: file, key path, what was
given and what is allowed. One problem gives one line (the CLI prints `error: <it>`); several
give a header line and one line per problem. Used by recipes and device profiles alike."""

from __future__ import annotations

import ast
import difflib
import re
import typing
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from edgeskel.errors import ConfigError


def did_you_mean(given: Any, choices: Iterable[Any]) -> str:
    """`" (did you mean 'x'?)"` for the closest of `choices` to a mistyped name (difflib, as
    click does for commands), else "". Shared by recipe, device, option and key errors."""
    if not isinstance(given, str) or not given:
        return ""
    names = [str(c) for c in choices]
    key = lambda t: re.sub(r"[-_ .]", "", t.lower())  # noqa: E731 - case and separators: 'Jetson_Orin'
    close = [n for n in names if key(n) == key(given)][:1]
    if not close:
        lower = {n.lower(): n for n in names}
        close = [lower[m] for m in difflib.get_close_matches(given.lower(), list(lower), n=1, cutoff=0.6)]
    return f" (did you mean {close[0]!r}?)" if close and close[0] != given else ""


def name_list(names: Iterable[Any]) -> str:
    """Names as people write them, `a, b, c` (not a Python list `['a', 'b', 'c']`)."""
    return ", ".join(str(n) for n in names) or "(none)"


def format_validation_error(source: str | Path, exc: ValidationError, root: type[BaseModel] | None = None,
                            what: str = "configuration") -> str:
    """`<source>: invalid <what>: <key.path>: <problem> (given: X; allowed: Y)` per problem; a
    value outside a fixed set says it once: `<key.path>: 'X' is not one of: a, b (did you mean
    'a'?)`. `root` (the validated model class) lets unknown-key errors list the keys allowed
    there and suggest the closest one."""
    problems = [_problem(err, root) for err in exc.errors()]
    if len(problems) == 1:
        return f"{source}: invalid {what}: {problems[0]}"
    return f"{source}: invalid {what} ({len(problems)} problems):\n  - " + "\n  - ".join(problems)


def _problem(err: Any, root: type[BaseModel] | None) -> str:
    key = ".".join(str(p) for p in err["loc"]) or "<root>"
    kind = err["type"]
    given = err.get("input")
    msg = err["msg"]
    choices = _choices(err) if kind in ("literal_error", "enum") else None
    if choices is not None:  # once: "'minmaxx' is not one of: minmax, entropy (did you mean 'minmax'?)"
        return f"{key}: {_shown(given)} is not one of: {name_list(choices)}{did_you_mean(given, choices)}"
    if kind == "extra_forbidden":
        msg = "unknown key"
    elif kind == "missing":
        msg = "required key is missing"
    detail = []
    if kind not in ("missing", "extra_forbidden") and not isinstance(given, dict):
        detail.append(f"given: {_shown(given)}")
    allowed = allowed_values(err, root)
    if allowed:
        detail.append(f"allowed: {allowed}")
    if kind == "extra_forbidden" and err["loc"]:
        model = _model_at(root, list(err["loc"][:-1])) if root is not None else None
        msg += did_you_mean(str(err["loc"][-1]), model.model_fields) if model is not None else ""
    return f"{key}: {msg}" + (f" ({'; '.join(detail)})" if detail else "")


def _shown(given: Any) -> str:
    shown = repr(given)
    return shown[:57] + "..." if len(shown) > 60 else shown


def _choices(err: Any) -> list[Any] | None:
    """The values a Literal/Enum accepts, from pydantic's `expected` ("'a', 'b' or 'c'"), or
    None if that text cannot be read back as values."""
    expected = str((err.get("ctx") or {}).get("expected") or "")
    tokens = re.findall(r"'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"|[^,\s]+", expected)
    values = []
    for t in (t for t in tokens if t != "or"):
        try:
            values.append(ast.literal_eval(t))
        except (ValueError, SyntaxError):
            return None
    return values or None


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
