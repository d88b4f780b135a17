"""Fields added to stage-keyed configs must not invalidate finished runs (edgeskel/keyed_model.py)."""

from __future__ import annotations

from typing import ClassVar

from edgeskel.compress.config import CompressionConfig
from edgeskel.io import sha256_json
from edgeskel.keyed_model import KeyedModel


class Cfg(KeyedModel):
    ADDED_FIELDS: ClassVar[frozenset[str]] = frozenset({"new", "items"})
    old: int = 1
    new: str = "off"
    items: list[int] = []


def test_added_fields_are_dumped_only_when_set():
    assert Cfg().model_dump() == {"old": 1}
    assert Cfg(new="on", items=[2]).model_dump(mode="json") == {"old": 1, "new": "on", "items": [2]}
    assert Cfg.model_validate(Cfg(new="on").model_dump()) == Cfg(new="on")  # round trip keeps the value
    assert Cfg(new="on").model_dump() != Cfg().model_dump()  # a set value is keyed


def test_compression_keys_of_runs_made_before_latency_on_stay_valid():
    """sha256 of the default config's dump as every pipeline made it before `latency_on` existed
    (computed with edgeskel at commit 865a8d1): an upgrade must not recompute finished stages."""
    assert sha256_json(CompressionConfig().model_dump(mode="json")) == (
        "c17a4c00b2403c07bb633a766a69106f9fbfa3eade793fe080f71d746853116f")
    assert "latency_on" in CompressionConfig(latency_on="device").model_dump(mode="json")
