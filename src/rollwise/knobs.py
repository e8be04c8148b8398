"""A registry entry's knobs as a pydantic model: the ``Knobs`` base and the dataclass -> pydantic conversion.

Below both :mod:`rollwise.registry` (``Registry.config``) and :mod:`rollwise.components` (the typed configs
built on it); it imports nothing from rollwise.
"""

from __future__ import annotations

import dataclasses
import typing
from functools import cache
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, create_model


class Knobs(BaseModel):
    """Base of a component's knobs: unknown keys are errors, assignments are validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


def knobs_of(entry: Any, config: Any = None) -> type[BaseModel] | None:
    """The pydantic model of an entry's knobs: ``config`` (model or dataclass), else ``entry.Config``."""
    spec = config if config is not None else getattr(entry, "Config", None) if entry is not None else None
    if spec is None:
        return None
    if isinstance(spec, type) and issubclass(spec, BaseModel):
        return spec
    if dataclasses.is_dataclass(spec):
        return _from_dataclass(spec)
    raise TypeError(f"{entry!r}: config must be a pydantic model or a dataclass, got {spec!r}")


@cache
def _from_dataclass(dc: type) -> type[BaseModel]:
    hints = typing.get_type_hints(dc)
    fields = {f.name: (hints[f.name], Field(f.default, description=f.metadata.get("doc", "")))
              for f in dataclasses.fields(dc)}
    return create_model(dc.__name__, __base__=Knobs, **fields)
