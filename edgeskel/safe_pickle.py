"""Restricted unpickling for dataset pickles (PYSKL annotations).

A pickle can name any importable callable (`os.system`, `builtins.eval`, ...) and run it
while loading. Dataset pickles only need containers, primitives and numpy arrays, so
`find_class` allows exactly those and refuses everything else *before* anything is called.

Even allowed callables can build from nothing: 52 bytes of `frozenset(range(3_000_000))` take
270 MB, `bytes(10**12)` takes the machine, and memo references nest lists into a "billion
laughs". So every allowed call is checked against an element budget proportional to the
pickle's size (data a real pickle holds costs at least a byte per element), and the loaded
object is walked with the same budget. The file itself must be a regular file under a size cap.
"""

from __future__ import annotations

import io
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edgeskel.errors import DataError, UnsafePickleError

PICKLE_CAP_MB = 8192  # one annotation pickle (PYSKL's NTU120 3D file is ~2 GB)
# What an allowed call may build, and how many container elements the loaded object may hold
# (counting each reference, so shared sub-lists count every time): SLACK + FACTOR * pickle bytes.
BUDGET_SLACK = 10_000
BUDGET_FACTOR = 2

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


def _builders() -> tuple[type, ...]:
    import collections

    return (bytes, bytearray, str, list, tuple, set, frozenset, dict, collections.OrderedDict, collections.defaultdict)


_BUILDERS = _builders()


class _TooBig(Exception):
    pass


def _cost(arg: Any, fn: Any) -> int:
    """Elements (or bytes) a call builds from `arg`: an int given to bytes/bytearray allocates
    that many bytes, a range expands to its length, a container to its size."""
    import numpy as np

    if isinstance(arg, bool):
        return 1
    if isinstance(arg, int):
        return arg if fn in (bytes, bytearray) else 1
    if isinstance(arg, range):
        try:
            return len(arg)
        except OverflowError:
            raise _TooBig from None
    if isinstance(arg, np.ndarray):
        return 1
    if isinstance(arg, (str, bytes, bytearray, list, tuple, dict, set, frozenset)):
        return len(arg)
    return 1


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, fh: Any, source: str, budget: int) -> None:
        super().__init__(fh)
        self._source = source
        self.budget = budget

    def find_class(self, module: str, name: str) -> Any:
        obj = _allowed_global(module, name)
        if obj is None:
            raise UnsafePickleError(
                self._source,
                f"refused to unpickle global {module}.{name}: only containers, primitives and numpy arrays are allowed",
            )
        return self._metered(obj, f"{module}.{name}") if callable(obj) else obj

    def _metered(self, fn: Callable[..., Any], label: str) -> Callable[..., Any]:
        """`fn` charged against the budget *before* it runs."""
        def call(*args: Any, **kwargs: Any) -> Any:
            try:
                cost = sum(_cost(a, fn) for a in (*args, *kwargs.values()))
            except _TooBig:
                cost = self.budget + 1
            if cost > self.budget:
                raise DataError(self._source, f"refused: the pickle asks {label}() to build {cost:,} elements, "
                                              f"more than a pickle of this size can hold (element cap {self.budget:,})")
            self.budget -= cost
            return fn(*args, **kwargs)

        # Classes other than the container/bytes builders stay themselves (numpy compares the
        # `ndarray` it gets by identity; NEWOBJ needs a real class); they build nothing big.
        return call if not isinstance(fn, type) or fn in _BUILDERS else fn

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafePickleError(self._source, "refused persistent id in pickle")


def _count_elements(obj: Any, budget: int, source: str) -> None:
    """Walk the loaded object counting container elements (each reference counts, so a
    structure of shared sub-lists counts at its expanded size); stop at the budget."""
    seen_leaf = 0
    stack = [obj]
    while stack:
        o = stack.pop()
        if isinstance(o, dict):
            budget -= len(o)
            stack.extend(o.values())
        elif isinstance(o, (list, tuple, set, frozenset)):
            budget -= len(o)
            stack.extend(x for x in o if isinstance(x, (dict, list, tuple, set, frozenset)))
        else:
            seen_leaf += 1
        if budget < 0:
            raise DataError(source, "refused: the pickle's containers hold more elements (counting shared references "
                                    "each time) than a pickle of this size can hold; a crafted file?")


def safe_loads(data: bytes, source: str = "<bytes>") -> Any:
    """Unpickle `data` allowing only plain containers, primitives and numpy arrays, and only
    as many elements as its size allows."""
    budget = BUDGET_SLACK + BUDGET_FACTOR * len(data)
    try:
        obj = _RestrictedUnpickler(io.BytesIO(data), source, budget).load()
        _count_elements(obj, budget, source)
        return obj
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
    from edgeskel.io import InputRefused, max_input_bytes, read_regular_file

    path = Path(path)
    try:
        data = read_regular_file(path, max_input_bytes(PICKLE_CAP_MB))
    except InputRefused as exc:
        raise DataError(path, f"refused: the path {exc}") from None
    except OSError as exc:
        raise DataError(path, f"cannot read file: {exc.strerror or exc}") from None
    return safe_loads(data, str(path))
