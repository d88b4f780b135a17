"""Config models whose dumps key cached stages: fields added later must not invalidate them.

Why: a pipeline stage's key is the sha256 of its config's `model_dump`. Adding a field (with a
default that keeps the old behaviour) to such a model would change every existing key, so every
finished run (references, fine-tunes of an hour or more) would be recomputed after an upgrade
although nothing it computed changed. Fields listed in `ADDED_FIELDS` are therefore left out of
the dump while they hold their default; set to anything else, they are dumped (and keyed) like
every other field. Changing an old field's default still changes keys, as it must.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, model_serializer


class KeyedModel(BaseModel):
    """BaseModel whose `ADDED_FIELDS` are omitted from dumps at their default (module docstring)."""

    ADDED_FIELDS: ClassVar[frozenset[str]] = frozenset()

    @model_serializer(mode="wrap")
    def _omit_added_defaults(self, handler: Any) -> Any:
        data = handler(self)
        if isinstance(data, dict):
            for name in self.ADDED_FIELDS:
                field = type(self).model_fields[name]
                if name in data and getattr(self, name) == field.get_default(call_default_factory=True):
                    data.pop(name)
        return data
