"""Typed component configs: every pluggable part (sampler component, estimator, loss, aggregation, KL
estimator, engine) is chosen in config by ``type`` and brings its own knobs, validated when the config loads.

A registry entry's knobs come from its ``Config`` attribute (a pydantic model: sampler components) or from the
``config=`` dataclass given at registration (pure-torch estimators in ``algos/`` stay free of pydantic; each
field's doc is ``field(metadata={"doc": ...})``). :func:`component_union` turns a registry into a pydantic
discriminated union over ``type`` (a bare string is shorthand for ``{type = NAME}``); a ``package.module:Attr``
type is user code, imported and checked at load. Unknown names and knobs are reported by
:func:`rollwise.config.load_config` with the closest valid names.
"""

from __future__ import annotations

import typing
from functools import cache
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Discriminator, Field, Tag, create_model, model_validator

from rollwise.knobs import Knobs, knobs_of
from rollwise.registry import Registry, import_object

__all__ = ["Knobs", "UserComponent", "component_union", "knobs", "knobs_of", "typed_model"]


class UserComponent(BaseModel):
    """A ``package.module:Attr`` component: its knobs are checked against the object's ``Config`` at load."""

    model_config = ConfigDict(extra="allow")
    type: str

    @model_validator(mode="after")
    def _check(self) -> UserComponent:
        try:
            obj = import_object(self.type)
        except (ImportError, ValueError) as exc:
            raise ValueError(str(exc)) from None
        model = knobs_of(obj)
        if model is not None:
            model.model_validate(self.model_extra or {})
        return self

    def knobs(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


def _shorthand(value: Any) -> Any:
    return {"type": value} if isinstance(value, str) else value


def component_union(registry: Registry) -> Any:
    """``Annotated[Union[...], Discriminator]`` over every name in ``registry`` plus user code."""
    members = [Annotated[typed_model(registry, name), Tag(name)] for name in registry.names()]
    members.append(Annotated[UserComponent, Tag("user")])
    names = set(registry.names())

    def tag(value: Any) -> str | None:
        t = value.get("type") if isinstance(value, dict) else getattr(value, "type", None)
        if isinstance(t, str) and t not in names and ":" in t:
            return "user"
        return t

    return Annotated[typing.Union[tuple(members)], Discriminator(tag), BeforeValidator(_shorthand)]  # noqa: UP007


@cache
def _typed(kind: str, name: str, base: type[BaseModel]) -> type[BaseModel]:
    return create_model(f"{kind}:{name}", __base__=base, type=(Literal[name], Field(name, description=f"{kind} name")))


def typed_model(registry: Registry, name: str) -> type[BaseModel]:
    """The config model of one registered entry: its knobs plus ``type: Literal[name]``."""
    base = registry.config(name) or Knobs
    return _typed(registry.kind, name, base)


def knobs(cfg: BaseModel) -> dict[str, Any]:
    """A component config's keyword arguments (everything but ``type``)."""
    if isinstance(cfg, UserComponent):
        return cfg.knobs()
    return cfg.model_dump(exclude={"type"})
