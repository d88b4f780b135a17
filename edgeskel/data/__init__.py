"""Datasets: format readers, preprocessing and a synthetic generator.

`load_dataset("nw-ucla:../shared/data/nw-ucla")` returns a `Dataset` with variable-length
(C, T_i, V, M_i) samples per split; `preprocess_set` / `SkeletonTorchDataset` turn them into
the canonical (N, C, T, V, M) model input described by a checkpoint's `Preprocess`.
"""

from edgeskel.data import readers as _readers  # noqa: F401  (registers the built-in readers)
from edgeskel.data.preprocess import STREAMS, preprocess_sample, preprocess_set
from edgeskel.data.registry import ReaderResult, ReadRequest, available_readers, load_dataset, register_reader
from edgeskel.data.spec import parse_spec
from edgeskel.data.summary import summarize
from edgeskel.data.synthetic import ACTIONS as SYNTHETIC_ACTIONS
from edgeskel.data.torch_dataset import SkeletonTorchDataset
from edgeskel.data.types import Dataset, SkeletonSet
from edgeskel.safe_pickle import safe_load, safe_loads

__all__ = [
    "Dataset", "SkeletonSet", "load_dataset", "register_reader", "available_readers", "ReadRequest",
    "ReaderResult", "parse_spec", "preprocess_sample", "preprocess_set", "SkeletonTorchDataset", "STREAMS",
    "safe_load", "safe_loads", "summarize", "SYNTHETIC_ACTIONS",
]
