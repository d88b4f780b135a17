"""Dataset spec strings: `kind[:path][?key=value&key=value]`.

One string names a dataset everywhere (CLI, recipes, manifests), so it is parsed in one
place, and every option a reader reads is checked against what it accepts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from edgeskel.errors import DataError


@dataclass
class Options:
    """Query options of a spec. Readers pull typed values; leftovers are reported as unknown."""

    spec: str
    values: dict[str, str] = field(default_factory=dict)
    _used: set[str] = field(default_factory=set)

    def has(self, key: str) -> bool:
        return key in self.values

    def get_str(self, key: str, default: str | None = None, choices: tuple[str, ...] | None = None) -> str | None:
        self._used.add(key)
        if key not in self.values:
            return default
        value = self.values[key]
        if choices is not None and value not in choices:
            raise DataError(self.spec, f"option {key}={value!r} is not one of {list(choices)}")
        return value

    def get_int(self, key: str, default: int, lo: int | None = None, hi: int | None = None) -> int:
        self._used.add(key)
        if key not in self.values:
            return default
        raw = self.values[key]
        try:
            value = int(raw)
        except ValueError:
            raise DataError(self.spec, f"option {key}={raw!r} must be an integer") from None
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            rng = f"[{lo if lo is not None else '-inf'}, {hi if hi is not None else 'inf'}]"
            raise DataError(self.spec, f"option {key}={value} is outside {rng}")
        return value

    def get_float(self, key: str, default: float, lo: float | None = None, hi: float | None = None) -> float:
        self._used.add(key)
        if key not in self.values:
            return default
        raw = self.values[key]
        try:
            value = float(raw)
        except ValueError:
            raise DataError(self.spec, f"option {key}={raw!r} must be a number") from None
        if value != value or (lo is not None and value < lo) or (hi is not None and value > hi):
            raise DataError(self.spec, f"option {key}={raw} is outside [{lo}, {hi}]")
        return value

    def check_all_used(self, kind: str) -> None:
        unknown = sorted(set(self.values) - self._used)
        if unknown:
            raise DataError(
                self.spec, f"unknown option(s) {unknown} for {kind!r}; accepted: {sorted(self._used)}"
            )


@dataclass
class ParsedSpec:
    kind: str
    path: Path | None
    options: Options


def parse_spec(spec: str) -> ParsedSpec:
    """Split `kind[:path][?k=v&k=v]`. The path may itself contain ':' (only the first splits)."""
    if not isinstance(spec, str) or not spec.strip():
        raise DataError(None, f"empty dataset spec {spec!r}; expected kind[:path][?key=value]")
    spec = spec.strip()
    head, _, query = spec.partition("?")
    kind, sep, path = head.partition(":")
    kind = kind.strip().lower()
    if not kind:
        raise DataError(spec, "dataset spec has no kind before ':'")
    values: dict[str, str] = {}
    for part in filter(None, query.split("&")):
        key, eq, value = part.partition("=")
        key = key.strip()
        if not key or not eq:
            raise DataError(spec, f"malformed option {part!r}; expected key=value")
        if key in values:
            raise DataError(spec, f"option {key!r} given twice")
        values[key] = value.strip()
    p = Path(path).expanduser() if sep and path.strip() else None
    return ParsedSpec(kind, p, Options(spec, values))
