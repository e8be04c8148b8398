"""A registry entry's knobs as a pydantic model: the ``Knobs`` base and the dataclass -> pydantic conversion.

A knob's range and its relations to other knobs live where it is declared and are checked once, at load: a
pydantic ``Config`` declares ranges with ``Field(ge=...)`` and relations with a ``model_validator``; a dataclass
(pure-torch ``algos/`` stay free of pydantic) declares them as ``field(metadata={"doc": ..., "gt": 0})`` (any
of :data:`RANGE_KEYS`, as in pydantic's ``Field``) and in its ``__post_init__``, which the converted model runs.

Below both :mod:`rollwise.registry` (``Registry.config``) and :mod:`rollwise.components` (the typed configs
built on it); it imports nothing from rollwise.
"""

from __future__ import annotations

import dataclasses
import typing
from functools import cache
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, create_model, model_validator

#: the most rollouts one prompt may get in one step: a bound on every per-prompt count knob, so a typo (1e12)
#: is a one-line error at load instead of a terabyte allocation or a step that never ends (BroRL: 512)
MAX_ROLLOUTS_PER_PROMPT = 4096


class Knobs(BaseModel):
    """Base of a component's knobs: unknown keys are errors, assignments are validated, and no knob takes inf
    or nan (a bound is a number; "no bound" is ``None`` where a knob allows it)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


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


#: range keys a dataclass field's metadata may carry, passed on to pydantic's ``Field``
RANGE_KEYS = ("ge", "gt", "le", "lt", "min_length", "max_length")


class _DataclassKnobs(Knobs):
    """Knobs converted from a dataclass: once the fields validated, the dataclass itself is built, so the
    relations its ``__post_init__`` checks (upper > lower, ...) are one-line errors at load."""

    @model_validator(mode="after")
    def _relations(self) -> _DataclassKnobs:
        dc = type(self).__dataclass_knobs__
        dc(**{f.name: getattr(self, f.name) for f in dataclasses.fields(dc)})
        return self


@cache
def _from_dataclass(dc: type) -> type[BaseModel]:
    hints = typing.get_type_hints(dc)
    fields = {f.name: (hints[f.name], Field(f.default, description=f.metadata.get("doc", ""),
                                            **{k: f.metadata[k] for k in RANGE_KEYS if k in f.metadata}))
              for f in dataclasses.fields(dc)}
    model = create_model(dc.__name__, __base__=_DataclassKnobs, **fields)
    model.__dataclass_knobs__ = dc
    return model
