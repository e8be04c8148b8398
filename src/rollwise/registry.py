"""One generic name registry for every pluggable part (estimators, losses, samplers, engines, verifiers).

Entries are registered explicitly by name (never discovered through ``__subclasses__``). An entry may be the
object itself or a lazy ``"package.module:attr"`` string, so heavy backends (vLLM, Ray) are imported only when
chosen. A name that is not registered but looks like ``package.module:attr`` is imported as user code.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

T = TypeVar("T")


def import_object(path: str) -> Any:
    """Import ``package.module:attr`` (or ``package.module.attr``) and return the attribute."""
    if ":" in path:
        module_name, _, attr = path.partition(":")
    else:
        module_name, _, attr = path.rpartition(".")
    if not module_name or not attr:
        raise ValueError(f"{path!r} is not of the form 'package.module:attr'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ImportError(f"cannot import module {module_name!r} for {path!r}: {exc}") from exc
    obj: Any = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError as exc:
            raise ImportError(f"module {module_name!r} has no attribute {attr!r} (from {path!r})") from exc
    return obj


class Registry(Generic[T]):
    """Maps names to objects (or lazy import paths). Duplicate names raise; unknown names list the options."""

    def __init__(self, kind: str, *, knobs_from_entry: bool = True) -> None:
        self.kind = kind
        self.knobs_from_entry = knobs_from_entry  # False: knobs only from ``config=`` (never imports an entry)
        self._entries: dict[str, T | str] = {}
        self._docs: dict[str, str] = {}
        self._configs: dict[str, Any] = {}

    def register(self, name: str, obj: T | str | None = None, *, doc: str | None = None,
                 config: Any = None) -> Any:
        """Register ``obj`` under ``name``; without ``obj`` return a decorator. ``config`` (a pydantic model or
        dataclass) declares the entry's knobs when the object has no ``Config`` attribute of its own."""
        if obj is None:
            def deco(o: T) -> T:
                self.register(name, o, doc=doc, config=config)
                return o

            return deco
        if name in self._entries:
            raise KeyError(f"{self.kind} {name!r} is already registered")
        self._entries[name] = obj
        if config is not None:
            self._configs[name] = config
        if doc is None and not isinstance(obj, str):
            doc = (getattr(obj, "__doc__", None) or "").strip().split("\n")[0]
        self._docs[name] = doc or ""
        return obj

    def get(self, name: str) -> T:
        """Return the entry for ``name`` (importing lazy entries); ``pkg.mod:attr`` falls back to an import."""
        if name in self._entries:
            entry = self._entries[name]
            if isinstance(entry, str):
                entry = import_object(entry)
                self._entries[name] = entry
                if not self._docs.get(name):
                    self._docs[name] = (getattr(entry, "__doc__", None) or "").strip().split("\n")[0]
            return entry  # type: ignore[return-value]
        if ":" in name:
            return import_object(name)
        raise KeyError(f"unknown {self.kind} {name!r}; {self.suggest(name)}")

    def suggest(self, name: str) -> str:
        """'did you mean ...' with the closest registered names, else the full list."""
        close = difflib.get_close_matches(name, self.names(), n=3, cutoff=0.5)
        if close:
            return "did you mean " + " or ".join(repr(c) for c in close) + "?"
        return "choose one of: " + ", ".join(self.names())

    def config(self, name: str) -> Any:
        """The pydantic model of an entry's knobs (None: it has none)."""
        # imported here, not at the top, so that `import rollwise.registry` (and algos/) never loads pydantic;
        # rollwise.knobs imports nothing from rollwise, so this is no cycle
        from rollwise.knobs import knobs_of

        if name in self._configs or not self.knobs_from_entry:
            if name not in self._entries:
                self.get(name)  # raises for an unknown name
            return knobs_of(None, self._configs.get(name))
        return knobs_of(self.get(name))

    def doc(self, name: str) -> str:
        """One-line description of an entry (imports a lazy entry to read its docstring)."""
        if not self._docs.get(name):
            try:
                self.get(name)
            except ImportError:
                return "(optional backend not installed)"
        return self._docs.get(name, "")

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def items(self) -> list[tuple[str, Callable[..., Any] | Any]]:
        return [(n, self.get(n)) for n in self.names()]
