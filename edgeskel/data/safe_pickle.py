"""Restricted unpickling for dataset pickles (PYSKL annotations).

A pickle can name any importable callable (`os.system`, `builtins.eval`, ...) and run it
while loading. Dataset pickles only need containers, primitives and numpy arrays, so
`find_class` allows exactly those and refuses everything else *before* anything is called.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any

from edgeskel.errors import DataError, UnsafePickleError

_BUILTINS = {
    "dict", "list", "tuple", "set", "frozenset", "str", "bytes", "bytearray", "int", "float",
    "complex", "bool", "slice", "range", "NoneType",
}

# (module, name) pairs needed to rebuild numpy arrays, dtypes and scalars; `numpy.core` is the
# numpy<2 spelling of `numpy._core`.
_NUMPY = {
    ("multiarray", "_reconstruct"),
    ("multiarray", "scalar"),
    ("numeric", "_frombuffer"),
}

_ALLOWED: dict[tuple[str, str], Any] = {}


def _allowed_global(module: str, name: str) -> Any | None:
    """The object for an allowed global, or None."""
    import collections

    import numpy as np

    if module in ("builtins", "__builtin__") and name in _BUILTINS:
        import builtins

        return getattr(builtins, name, None)
    if module == "collections" and name in ("OrderedDict", "defaultdict"):
        return getattr(collections, name)
    if module == "_codecs" and name == "encode":  # protocol-2 pickles store array bytes this way
        import _codecs

        return _codecs.encode
    if module == "numpy" and name in ("dtype", "ndarray"):
        return getattr(np, name)
    for prefix in ("numpy.core.", "numpy._core."):
        if module.startswith(prefix) and (module[len(prefix):], name) in _NUMPY:
            import importlib

            try:
                mod = importlib.import_module("numpy._core." + module[len(prefix):])
            except ImportError:  # numpy < 2
                mod = importlib.import_module("numpy.core." + module[len(prefix):])
            return getattr(mod, name)
    if module == "numpy.dtypes" and name.endswith("DType"):  # numpy>=2 dtype classes
        import numpy.dtypes as dts

        obj = getattr(dts, name, None)
        return obj if isinstance(obj, type) and issubclass(obj, np.dtype) else None
    return None


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, fh: Any, source: str) -> None:
        super().__init__(fh)
        self._source = source

    def find_class(self, module: str, name: str) -> Any:
        obj = _allowed_global(module, name)
        if obj is None:
            raise UnsafePickleError(
                self._source,
                f"refused to unpickle global {module}.{name}: only containers, primitives and numpy arrays are allowed",
            )
        return obj

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafePickleError(self._source, "refused persistent id in pickle")


def safe_loads(data: bytes, source: str = "<bytes>") -> Any:
    """Unpickle `data` allowing only plain containers, primitives and numpy arrays."""
    try:
        return _RestrictedUnpickler(io.BytesIO(data), source).load()
    except DataError:
        raise
    except RecursionError:
        raise DataError(source, "pickle is nested too deeply") from None
    except MemoryError:
        raise DataError(source, "pickle is too large to load") from None
    except Exception as exc:  # malformed pickles raise many types (UnpicklingError, EOFError, ValueError, ...)
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DataError(source, f"not a readable pickle: {msg}") from None


def safe_load(path: str | Path) -> Any:
    """Read and restrictedly unpickle a file (see `safe_loads`)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DataError(path, f"cannot read file: {exc.strerror}") from None
    return safe_loads(data, str(path))
