"""Import checkpoints written by other code bases (official CTR-GCN, Hyperformer, PYSKL,
mmaction2, ...) into edgeskel models.

One adapter file per source (see `base.py` for the contract); every module in this folder
is imported here, so adding a source never edits a shared list. `import_checkpoint` is the
entry point (source, model, layout and sizes detected); `import_official` keeps the older
explicit-source signature.
"""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path

import torch
import torch.nn as nn

from edgeskel.checkpoint import ModelSpec, Preprocess
from edgeskel.importers.base import (
    ImporterAdapter,
    Inferred,
    RawCheckpoint,
    available_sources,
    get_importer,
    register_importer,
)
from edgeskel.importers.core import detect, import_checkpoint
from edgeskel.layouts import SkeletonLayout
from edgeskel.weights import read_checkpoint, sniff

_INFRA = {"base", "core", "formats", "known"}
for _mod in pkgutil.iter_modules(__path__):
    if _mod.name not in _INFRA and not _mod.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_mod.name}")

from edgeskel.importers.hyperformer_official import HYPERFORMER_UCLA_PARTS  # noqa: E402


def sources() -> dict[str, tuple[str, ...]]:
    """{source: models it provides}, from the registry."""
    return {s: get_importer(s).models for s in available_sources()}


def import_official(
    source: str | None,
    path: str | Path,
    model: str | None = None,
    layout: str | SkeletonLayout | None = None,
    num_classes: int | None = None,
    num_person: int | None = None,
    class_names: list[str] | None = None,
    preprocess: Preprocess | None = None,
) -> tuple[nn.Module, ModelSpec]:
    """`import_checkpoint` returning (model, spec); `source` None or "auto", `model`/`layout`
    None: detected."""
    net, spec, _ = import_checkpoint(path, source=None if source == "auto" else source, model=model, layout=layout, num_classes=num_classes,
                                     num_person=num_person, class_names=class_names, preprocess=preprocess)
    return net, spec


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The flat, unwrapped state_dict of any accepted weights file (format sniffed, loaded safely)."""
    return read_checkpoint(path).state


__all__ = [
    "HYPERFORMER_UCLA_PARTS", "ImporterAdapter", "Inferred", "RawCheckpoint", "available_sources", "detect",
    "get_importer", "import_checkpoint", "import_official", "read_checkpoint", "read_state_dict",
    "register_importer", "sniff", "sources",
]
