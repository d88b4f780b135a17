"""Importer adapter contract and registry.

CONTRACT (read this before adding a source)
===========================================
A *source* is one training code base whose checkpoints edgeskel imports (official CTR-GCN,
PYSKL, mmaction2, Shift-GCN, ...). Adding one is ONE FILE in `edgeskel/importers/`
defining a subclass of `ImporterAdapter` decorated with `@register_importer`. The package
imports every module in its folder (pkgutil), so no other file names the new source: the
CLI (`--from` choices), the recipe check (`model.import_from`), auto-detection and the docs
table all read the registry.

The generic import flow (`edgeskel.importers.core.import_checkpoint`) is:

1. `formats.read_checkpoint(path)` sniffs the file format from its bytes and loads it safely
   (torch `weights_only=True`, safetensors, or the restricted unpickler for numpy-array
   pickles such as Paddle `.pdparams`; Paddle's `_mean`/`_variance` BN names are already
   renamed to `running_mean`/`running_var`). It returns a `RawCheckpoint` whose `state` is
   a flat {name: Tensor} with wrappers (`state_dict`, `model`, ...) and `module.` prefixes
   removed. Adapters never open files themselves.
2. `detect(ckpt)` on every adapter: return the edgeskel model name (registered in
   `edgeskel.models`) if the key names/shapes are unmistakably this source's, else None.
   Must be cheap, must not raise, and must not claim checkpoints of another source: two
   adapters matching the same file is an error the user sees.
3. `map_keys(ckpt, model)`: source key names -> the edgeskel model's key names. Keep keys you
   do not understand (renamed or not): the strict loader lists them as unexpected, which is
   how "fail loudly on any unmatched key" is guaranteed.
4. `infer(state, model, where)`: read everything the constructor needs from tensor SHAPES
   (never from file names or metadata): `Inferred(num_classes, num_joints, in_channels,
   num_person, kwargs)`. `num_person=None` when the weights do not store it. `kwargs` are
   model kwargs (widths, depth, variant flags); they go into the ModelSpec, so they must be
   JSON-friendly (ints, floats, strings, nested lists).
5. The core resolves the layout (the user's `--layout`, else the built-in layout with
   `num_joints` joints), then adds `graph_kwargs(model, layout)` (graph details where the
   source's code differs from our layout, e.g. PYSKL's NTU hand edges) to the kwargs, builds
   the model, checks every stored fixed graph buffer (state keys ending in `A` that are
   buffers in our model) against the graph we built, and loads the state STRICTLY (every
   missing/unexpected key and shape mismatch listed in one `CheckpointError`).
6. `check(net, state, model, where)` (optional) runs between build and load for anything
   source-specific.
7. `to_source_keys(state, model)`: the inverse of `map_keys` (our names -> the source's). The
   tests use it to write checkpoints "as the source would" for sizes no fixture has.

Raise `CheckpointError(f"{where}: ...")` for a file that does not fit and `ConfigError` for
bad user options. Each adapter file also documents, in its docstring, the exact code base
(repo @ commit) and checkpoint layout it follows. Tests: a fixture (official logits) and an
"other sizes" case (build our model with other classes/joints/persons, save its state_dict
in the source's key naming, import, compare) per model the adapter provides.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
import torch.nn as nn

from edgeskel.errors import ConfigError
from edgeskel.layouts import SkeletonLayout
from edgeskel.weights import RawCheckpoint  # noqa: F401 - importers take it from here


@dataclass
class Inferred:
    """Constructor facts read from tensor shapes."""

    num_classes: int
    num_joints: int
    in_channels: int
    num_person: int | None = None  # None: not stored in the weights (e.g. PYSKL "VC" data_bn)
    kwargs: dict[str, Any] = field(default_factory=dict)


class ImporterAdapter:
    """One training code base. Subclass, set the class attributes, decorate with
    `@register_importer`. See the module docstring for the contract."""

    source: ClassVar[str] = ""  # `--from` name
    description: ClassVar[str] = ""  # code base (repo @ commit) and checkpoint layout, one line
    models: ClassVar[tuple[str, ...]] = ()  # edgeskel models this source provides

    def detect(self, ckpt: RawCheckpoint) -> str | None:
        raise NotImplementedError

    def map_keys(self, ckpt: RawCheckpoint, model: str) -> dict[str, torch.Tensor]:
        return dict(ckpt.state)

    def to_source_keys(self, state: dict[str, torch.Tensor], model: str) -> dict[str, Any]:
        """Our state_dict in the source's naming and file layout (what its training code saves)."""
        return dict(state)

    def infer(self, state: dict[str, torch.Tensor], model: str, where: str) -> Inferred:
        raise NotImplementedError

    def graph_kwargs(self, model: str, layout: SkeletonLayout) -> dict[str, Any]:
        return {}

    def check(self, net: nn.Module, state: dict[str, torch.Tensor], model: str, where: str) -> None:
        return None


_IMPORTERS: dict[str, ImporterAdapter] = {}


def register_importer(cls: type[ImporterAdapter]) -> type[ImporterAdapter]:
    """Class decorator: register one instance of the adapter under `cls.source`."""
    if not cls.source or not cls.models:
        raise ValueError(f"{cls.__name__}: set `source` and `models`")
    if cls.source in _IMPORTERS:
        raise ValueError(f"importer source {cls.source!r} registered twice")
    _IMPORTERS[cls.source] = cls()
    return cls


def available_sources() -> list[str]:
    return sorted(_IMPORTERS)


def get_importer(source: str) -> ImporterAdapter:
    if source not in _IMPORTERS:
        raise ConfigError(f"unknown import source {source!r}; choose one of {available_sources()}")
    return _IMPORTERS[source]


def all_importers() -> list[ImporterAdapter]:
    return [_IMPORTERS[s] for s in available_sources()]


# ---- helpers adapters share ----------------------------------------------------------------
def classifier(state: dict[str, torch.Tensor], key: str, where: str) -> int:
    """Number of classes from a (K, C) classifier weight."""
    w = state.get(key)
    if w is None or w.dim() != 2:
        raise checkpoint_error(where, f"cannot infer the number of classes: no 2-D classifier weight {key!r}")
    return int(w.shape[0])


def data_bn_persons(state: dict[str, torch.Tensor], key: str, v: int, c: int, where: str) -> int:
    """Persons M from an input BN over M*V*C channels."""
    bn = state.get(key)
    if bn is None:
        raise checkpoint_error(where, f"no input BatchNorm {key!r}")
    size = int(bn.numel())
    if size % (v * c):
        raise checkpoint_error(where, f"{key} has {size} channels, not a multiple of V*C = {v}*{c}")
    return size // (v * c)


def shape_of(state: dict[str, torch.Tensor], key: str, dims: int, where: str) -> tuple[int, ...]:
    """Shape of a required tensor with `dims` dimensions, or a CheckpointError naming it."""
    t = state.get(key)
    if t is None or t.dim() != dims:
        got = "missing" if t is None else f"shape {tuple(t.shape)}"
        raise checkpoint_error(where, f"expected a {dims}-D tensor {key!r} ({got})")
    return tuple(int(s) for s in t.shape)


def count_indexed(state: dict[str, torch.Tensor], prefix: str) -> int:
    """Number of consecutive `prefix{i}.` blocks starting at the smallest index found."""
    import re

    pat = re.compile(re.escape(prefix) + r"(\d+)\.")
    ids = {int(m.group(1)) for k in state if (m := pat.match(k))}
    return len(ids)


def checkpoint_error(where: str, problem: str) -> Exception:
    """`raise checkpoint_error(where, "...")`: the file, then the problem."""
    from edgeskel.errors import CheckpointError

    return CheckpointError(f"{where}: {problem}")
