"""Reader registry and `load_dataset`.

A reader is one function registered under a kind (`@register_reader("ntu")`). It parses its
files and hands samples to a `ReadRequest`, which validates each one in the same way for all
formats (shape, finite values, non-empty, consistent joint count) and either raises a
`DataError` naming the file or, with `skip_bad`, records it in `Dataset.skipped`. So a new
format is one file and gets every check for free.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgeskel.data.spec import Options, parse_spec
from edgeskel.data.types import Dataset, SkeletonSet
from edgeskel.errors import ConfigError, DataError
from edgeskel.layouts import BUILTIN_LAYOUTS, SkeletonLayout, get_layout

SPLITS = ("train", "val", "test")  # "val": a validation split the data itself provides (optional)
REQUIRED_SPLITS = ("train", "test")
MAX_CLASSES = 100_000  # a label beyond this is garbage, not a class id


@dataclass
class ReaderResult:
    """What a reader reports besides its samples."""

    layout: SkeletonLayout | None  # None: infer a built-in layout from the joint count
    class_names: list[str] | None  # None: generic names from the largest label
    info: dict[str, Any] = field(default_factory=dict)


@dataclass
class _Entry:
    x: np.ndarray
    label: int
    name: str
    path: str


@dataclass
class ReadRequest:
    """Handed to a reader: where to read, options, and the sink for samples."""

    spec: str
    path: Path | None
    options: Options
    skip_bad: bool
    layout: SkeletonLayout | None = None  # explicitly requested layout, if any
    splits: tuple[str, ...] = REQUIRED_SPLITS  # splits the caller needs; readers may skip the others
    expect_joints: int | None = None  # set by readers whose format fixes V
    expect_channels: int | None = None
    skipped: list[tuple[str, str]] = field(default_factory=list)
    passed_over: dict[str, int] = field(default_factory=dict)  # split -> samples not read (caller did not need it)
    _entries: dict[str, list[_Entry]] = field(default_factory=lambda: {s: [] for s in SPLITS})

    # ---- error handling --------------------------------------------------------
    def bad(self, path: str | Path | None, problem: str, sample: str | int | None = None) -> None:
        """Report a bad sample/file: raise, or record it when skipping."""
        if not self.skip_bad:
            raise DataError(path, with_skip_hint(problem), sample)
        self.skipped.append((_where(path, sample), problem))

    @contextlib.contextmanager
    def guard(self) -> Iterator[None]:
        """Turn a DataError raised inside the block into a skip when `skip_bad`."""
        try:
            yield
        except DataError as err:
            if not self.skip_bad:
                if type(err) is DataError and with_skip_hint(err.problem) != err.problem:
                    raise DataError(err.path, with_skip_hint(err.problem), err.sample) from None
                raise
            self.skipped.append((_where(err.path or self.spec, err.sample), err.problem))

    def need_path(self, kind: str) -> Path:
        if self.path is None:
            raise DataError(self.spec, f"{kind!r} needs a path: {kind}:PATH")
        if not self.path.exists():
            raise DataError(self.path, "no such file or directory")
        return self.path

    def wants(self, split: str) -> bool:
        """Whether the caller needs `split` (a reader may skip reading the others)."""
        return not self.splits or split in self.splits or (split == "val" and "train" in self.splits)

    def pass_over(self, split: str, n: int = 1) -> None:
        """Count `n` samples of a split the caller does not need, left unread: an empty requested
        split then says what the data holds instead of "no samples could be read"."""
        self.passed_over[split] = self.passed_over.get(split, 0) + int(n)

    def max_label(self) -> int:
        """Largest label kept so far (-1 if none): readers size class lists with it."""
        return max((e.label for s in SPLITS for e in self._entries[s]), default=-1)

    # ---- samples -----------------------------------------------------------------
    def add(self, split: str, x: Any, label: Any, name: str, path: str | Path) -> bool:
        """Validate and keep one sample (C, T, V, M). Returns False if it was skipped."""
        problem = self._check(x, label)
        if problem is not None:
            self.bad(path, problem, name)
            return False
        x = np.ascontiguousarray(x, dtype=np.float32)  # finite float64 beyond float32 was refused above
        if self.expect_channels is None:
            self.expect_channels = x.shape[0]
        if self.expect_joints is None:
            self.expect_joints = x.shape[2]
        self._entries[split].append(_Entry(x, int(label), str(name), str(path)))
        return True

    def _check(self, x: Any, label: Any) -> str | None:
        if not isinstance(x, np.ndarray):
            return f"skeleton is a {type(x).__name__}, not an array"
        if x.dtype.kind not in "iuf":
            return f"skeleton values are not numeric (dtype {x.dtype})"
        if x.ndim != 4:
            return f"skeleton has shape {x.shape}; expected (C, T, V, M)"
        c, t, v, m = x.shape
        if t == 0 or m == 0:
            return f"zero-length sequence (shape {x.shape})"
        if self.expect_channels is not None and c != self.expect_channels:
            return f"{c} coordinate channels, expected {self.expect_channels}"
        if self.expect_joints is not None and v != self.expect_joints:
            return f"{v} joints, expected {self.expect_joints}"
        if c not in (2, 3) and self.expect_channels is None:
            return f"{c} coordinate channels; expected 2 or 3"
        if not np.isfinite(x).all():
            return "NaN or infinite coordinates"
        if x.dtype.kind == "f" and x.dtype.itemsize > 4 and np.abs(x).max() > np.finfo(np.float32).max:
            return "coordinates too large for float32"
        if not np.any(x):
            return "zero-length sequence: every frame is all zeros"
        if isinstance(label, (bool, np.bool_)) or not isinstance(label, (int, np.integer)):
            return f"label {label!r} is not an integer"
        if label < 0:
            return f"label {label} is negative"
        if label >= MAX_CLASSES:
            return f"label {label} is implausibly large (>= {MAX_CLASSES})"
        return None


SKIP_HINT = "(to skip such samples: --skip-bad, or data.skip_bad: true in a recipe)"


def with_skip_hint(problem: str) -> str:
    """A zero-length (empty or all-zero) sample stops every command; real datasets have a few
    (MSR Action3D does), so its error says how to skip them."""
    return f"{problem} {SKIP_HINT}" if problem.startswith("zero-length") and SKIP_HINT not in problem else problem


def _where(path: str | Path | None, sample: str | int | None) -> str:
    where = str(path) if path is not None else "<data>"
    return where + (f" [sample {sample}]" if sample is not None else "")


ReaderFn = Callable[[ReadRequest], ReaderResult]
_READERS: dict[str, ReaderFn] = {}


def register_reader(kind: str) -> Callable[[ReaderFn], ReaderFn]:
    """Decorator: make `fn(request) -> ReaderResult` the reader for spec kind `kind`."""

    def deco(fn: ReaderFn) -> ReaderFn:
        _READERS[kind.lower()] = fn
        return fn

    return deco


def available_readers() -> list[str]:
    return sorted(_READERS)


_LAYOUT_BY_JOINTS = {lay.num_joints: lay for lay in BUILTIN_LAYOUTS.values()}


def load_dataset(spec: str, layout: str | SkeletonLayout | None = None, skip_bad: bool = False,
                 splits: tuple[str, ...] = REQUIRED_SPLITS, class_names: str | Path | list[str] | None = None,
                 check_layout: bool = True) -> Dataset:
    """Read the dataset named by `spec` (see `edgeskel.data.spec`) into train/(val)/test sets.

    `layout` overrides the layout the format implies; it must match the data's joint and
    channel counts. `splits`: the splits the caller needs (each must end up non-empty; the
    others may be missing, e.g. `("test",)` to evaluate a folder of test clips; `()`: whatever the data holds). `class_names`:
    a text file (one name per line) or list replacing the names the data gives. With
    `skip_bad`, unreadable samples are skipped and listed in `Dataset.skipped`. With
    `check_layout`, the joint order is checked against the layout (`layout_fit`) and a
    warning with the numbers is printed to stderr and kept in `Dataset.warnings`.
    """
    bad = [s for s in splits if s not in SPLITS]
    if bad:
        raise ConfigError(f"unknown split(s) {bad}; choose from {list(SPLITS)}")
    parsed = parse_spec(spec)
    reader = _READERS.get(parsed.kind)
    if reader is None:
        raise DataError(spec, f"unknown dataset kind {parsed.kind!r}; available: {available_readers()}")
    explicit = None
    if layout is not None:
        try:
            explicit = get_layout(layout)
        except ConfigError as exc:
            raise DataError(spec, f"bad layout: {exc}") from None
    names = read_class_names(class_names) if isinstance(class_names, (str, Path)) else class_names
    req = ReadRequest(spec=spec, path=parsed.path, options=parsed.options, skip_bad=skip_bad, layout=explicit,
                      splits=tuple(splits))
    result = reader(req)
    parsed.options.check_all_used(parsed.kind)
    if names is not None:
        result.class_names = list(names)
        result.info["class_names_from"] = str(class_names) if isinstance(class_names, (str, Path)) else "caller"
    ds = _finish(req, result, explicit)
    if check_layout:
        from edgeskel.data.layout_fit import check_layout as fit_check

        part = ds.train if len(ds.train) else ds.test
        fit, warning = fit_check(part.samples, ds.layout)
        if fit:
            ds.info["layout_fit"] = fit
        if warning:
            ds.warnings.append(warning)
            print(f"warning: {ds.spec}: {warning}", file=sys.stderr)
    return ds


MAX_CLASS_NAMES_BYTES = 1 << 20


def read_class_names(path: str | Path) -> list[str]:
    """Class names from a text file, one per line in label order (blank lines and `#` comments skipped)."""
    p = Path(path)
    try:
        if not p.is_file():
            raise DataError(p, "class-names file not found (or not a regular file)")
        if p.stat().st_size > MAX_CLASS_NAMES_BYTES:
            raise DataError(p, f"class-names file is larger than {MAX_CLASS_NAMES_BYTES} bytes")
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise DataError(p, f"cannot read class names: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise DataError(p, "class-names file is not UTF-8 text") from None
    names = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    if not names:
        raise DataError(p, "class-names file holds no names")
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})
        raise DataError(p, f"duplicate class names: {dup[:5]}")
    return names


def _empty_split(req: ReadRequest, split: str, info: dict[str, Any]) -> str:
    """`the test split is empty: the folder holds 40 train samples and no readable test samples
    (protocol xsub)`: an empty split is not a broken file, so say what the data does hold."""
    msg = f"the {split} split is empty" + (f" after skipping {len(req.skipped)} bad samples" if req.skipped else "")
    held = {s: len(req._entries[s]) + req.passed_over.get(s, 0) for s in SPLITS if s != split}
    holds = " and ".join(f"{n} {s}" for s, n in held.items() if n)
    if holds:
        what = "data" if req.path is None else "folder" if req.path.is_dir() else "file"
        protocol = info.get("protocol")
        msg += (f": the {what} holds {holds} samples and no readable {split} samples"
                + (f" (protocol {protocol})" if protocol else ""))
    return msg


def _finish(req: ReadRequest, result: ReaderResult, explicit: SkeletonLayout | None) -> Dataset:
    where = str(req.path) if req.path is not None else req.spec
    if not any(req._entries[s] for s in SPLITS):
        if any(req.passed_over.values()):  # only other splits' samples: the requested one is empty
            raise DataError(where, _empty_split(req, (list(req.splits) or ["test"])[0], result.info))
        raise DataError(where, "no samples could be read" + (" (all were skipped as bad)" if req.skipped else ""))
    v, c = req.expect_joints, req.expect_channels
    lay = result.layout
    if explicit is not None:
        lay = explicit
    if lay is None:
        if v is None:
            raise DataError(where, "no samples could be read")
        lay = _LAYOUT_BY_JOINTS.get(v)
        if lay is None:
            raise DataError(where, f"no built-in layout has {v} joints; pass a layout (--layout FILE.yaml)")
    if v is not None and lay.num_joints != v:
        raise DataError(where, f"layout {lay.name!r} has {lay.num_joints} joints but the data has {v}")
    if c is not None and lay.channels != c:
        raise DataError(where, f"layout {lay.name!r} has {lay.channels} channels but the data has {c}")

    entries = req._entries
    class_names = result.class_names
    if class_names is None:
        top = max((e.label for s in SPLITS for e in entries[s]), default=-1)
        class_names = [f"class_{i:03d}" for i in range(top + 1)]
    k = len(class_names)
    sets: dict[str, SkeletonSet] = {}
    for split in SPLITS:
        kept = []
        for e in entries[split]:
            if e.label >= k:
                req.bad(e.path, f"label {e.label} out of range for {k} classes (0..{k - 1})", e.name)
            else:
                kept.append(e)
        if not kept and split in req.splits:
            raise DataError(where, _empty_split(req, split, result.info))
        sets[split] = SkeletonSet([e.x for e in kept], np.array([e.label for e in kept], dtype=np.int64), [e.name for e in kept])
    info = dict(result.info)
    info.setdefault("counts", {s: len(sets[s]) for s in SPLITS if s != "val" or len(sets[s])})
    info["skipped"] = len(req.skipped)
    return Dataset(
        spec=req.spec, layout=lay, class_names=list(class_names), train=sets["train"], test=sets["test"],
        skipped=list(req.skipped), info=info, val=sets["val"] if len(sets["val"]) else None,
    )
