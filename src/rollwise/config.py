"""Run configuration: TOML files, dotted CLI overrides, one-line errors that name the key and the closest valid
names, the resolved config as TOML, and every option's doc. The typed models themselves (one doc line per field,
pluggable parts chosen by ``type``) are in ``rollwise.config_models`` and re-exported here.

One source of truth: every option lives in exactly one model; runtime values (step, cursors, RNG) live in the
run state and checkpoints, never here.
"""

from __future__ import annotations

import difflib
import json
import tomllib
import typing
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from rollwise.config_models import (  # noqa: F401 - the models are part of this module's API
    ARITH_VERIFIERS,
    COMPONENT_KEYS,
    DATASET_VERIFIERS,
    TASK_SUITES,
    AlgoConfig,
    Config,
    GenerationConfig,
    ModelConfig,
    ReplayConfig,
    RunConfig,
    SamplerConfig,
    TaskConfig,
    TrainerConfig,
    WarmStartConfig,
    dataset_verifier,
)
from rollwise.recipes import recipe_marks
from rollwise.registry import Registry


class ConfigError(ValueError):
    """A config file or override is invalid; the message names the key."""


def parse_value(text: str) -> Any:
    """Parse an override value as a TOML literal (numbers, booleans, arrays, tables), else a bare string.
    ``nan`` and ``inf`` stay strings (a run named 'nan' is a name; a float field still accepts them)."""
    if text.strip().lstrip("+-").lower() in ("nan", "inf"):
        return text
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            return text


def _list_slot(slot: str) -> bool:
    """Whether the component slot ``slot`` (a key of ``COMPONENT_KEYS``) holds a list (``algo.shaping``)."""
    section, _, name = slot.partition(".")
    if not name:  # a whole section is the component (``env``)
        return False
    return typing.get_origin(Config.model_fields[section].annotation.model_fields[name].annotation) is list


def apply_override(data: dict[str, Any], dotted: str, value: Any) -> None:
    """Set ``data[a][b][c] = value`` for ``dotted == 'a.b.c'``, creating tables as needed. Every component slot
    takes the shorthand ``--slot=name --slot.knob=value``; a list slot's shorthand is its one entry."""
    keys = dotted.split(".")
    if dotted in COMPONENT_KEYS and _list_slot(dotted) and isinstance(value, str | dict):
        value = [value]  # --algo.shaping=ace: a list of one
    node = data
    for i, k in enumerate(keys[:-1]):
        nxt = node.setdefault(k, {})
        slot = ".".join(keys[: i + 1])
        if slot in COMPONENT_KEYS and isinstance(nxt, list):
            if len(nxt) != 1:
                raise ConfigError(f"{dotted}: {slot} holds {len(nxt)} entries, so a knob cannot name one; give "
                                  f"the list with its knobs, e.g. --{slot}='[{{type=\"NAME\", knob=1}}]'")
            entry = nxt[0] if isinstance(nxt[0], dict) else {"type": nxt[0]}
            nxt[0] = entry
            nxt = entry
        if slot in COMPONENT_KEYS and isinstance(nxt, str):
            nxt = node[k] = {"type": nxt}  # a component named by its shorthand, now given knobs
        if not isinstance(nxt, dict):
            raise ConfigError(f"{dotted}: {k!r} is not a table")
        node = nxt
    node[keys[-1]] = value


def parse_overrides(args: list[str]) -> list[tuple[str, Any]]:
    """``["--a.b=1", "c.d=x", "--e.f", "2"]`` -> [("a.b", 1), ("c.d", "x"), ("e.f", 2)]."""
    out, i = [], 0
    while i < len(args):
        arg = args[i].removeprefix("--")
        if "=" in arg:
            key, _, val = arg.partition("=")
        elif i + 1 < len(args):
            key, val = arg, args[i + 1]
            i += 1
        else:
            raise ConfigError(f"override {args[i]!r} has no value (use --key=value)")
        out.append((key.replace("-", "_") if "." not in key else key, parse_value(val)))
        i += 1
    return out


def _registry_at(loc: tuple[Any, ...]) -> Registry | None:
    """The component registry of a config location such as ('sampler', 'gates', 0)."""
    keys = [str(x) for x in loc if not isinstance(x, int)]
    return COMPONENT_KEYS.get(".".join(keys[:2])) or COMPONENT_KEYS.get(keys[0] if keys else "")


def _fields_at(loc: tuple[Any, ...]) -> list[str]:
    """Valid keys of the model at ``loc`` (a section, or a component whose type tag is in ``loc``)."""
    model: Any = Config
    for i, part in enumerate(loc):
        if isinstance(part, int):
            continue
        reg = _registry_at(loc[: i + 1])
        if reg is not None and i + 1 < len(loc) and isinstance(loc[i + 1], str) and loc[i + 1] in reg:
            from rollwise.components import typed_model

            return list(typed_model(reg, str(loc[i + 1])).model_fields)
        fields = getattr(model, "model_fields", {})
        field = fields.get(part) or next((f for f in fields.values() if f.alias == part), None)
        if field is None:
            return []
        ann = field.annotation
        model = ann if isinstance(ann, type) and issubclass(ann, BaseModel) else None
        if model is None:
            return []
    return list(model.model_fields) if model is not None else []


def _closest(name: str, options: list[str]) -> str:
    close = difflib.get_close_matches(name, options, n=3, cutoff=0.5)
    return ("; did you mean " + " or ".join(repr(c) for c in close) + "?") if close else ""


def _format_errors(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        reg = _registry_at(loc)
        shown = tuple(p for i, p in enumerate(loc) if not (reg is not None and i > 0 and isinstance(p, str)
                                                             and p in reg and loc[i - 1] != "type"))
        key = ".".join(str(p) for p in shown) or "(config)"
        if err["type"] == "extra_forbidden":
            lines.append(f"  {key}: unknown key{_closest(str(loc[-1]), _fields_at(loc[:-1]))}")
        elif err["type"] == "union_tag_invalid" and reg is not None:
            tag = str(err.get("ctx", {}).get("tag", err.get("input")))
            lines.append(f"  {key}.type: unknown {reg.kind} {tag!r}; {reg.suggest(tag)}")
        elif err["type"] == "literal_error" and key == "task.suite":
            got = str(err.get("input"))
            lines.append(f"  {key}: unknown suite {got!r}{_closest(got, list(TASK_SUITES))} "
                         f"(choose {' or '.join(TASK_SUITES)})")
        elif err["type"] == "union_tag_not_found" and reg is not None:
            lines.append(f"  {key}: a table needs a 'type' ({reg.kind}: {', '.join(reg.names())})")
        else:
            msg = str(err["msg"]).removeprefix("Value error, ")
            if msg.startswith("unknown sampler preset"):
                key = "sampler.type"
            if msg.startswith("unknown recipe"):
                key = "recipe"
            got = "" if err["type"] == "value_error" else f" (got {err.get('input')!r})"
            lines.append(f"  {msg}" if key == "(config)" else f"  {key}: {msg}{got}")
    return "invalid config:\n" + "\n".join(lines)


def load_config(path: str | Path | None = None, overrides: list[str] | list[tuple[str, Any]] | None = None) -> Config:
    """Load a TOML config (None = the built-in defaults), apply dotted overrides, validate."""
    data: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config file not found: {p}")
        try:
            data = tomllib.loads(p.read_text())
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{p}: invalid TOML: {exc}") from exc
    pairs = overrides or []
    if pairs and isinstance(pairs[0], str):
        pairs = parse_overrides(pairs)  # type: ignore[arg-type]
    for key, value in pairs:  # type: ignore[misc]
        apply_override(data, key, value)
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_errors(exc)) from None


def dump_toml(cfg: Config) -> str:
    """Render a config as TOML (sections in declaration order, None values omitted). With a recipe, its name
    comes first and each line it set is marked with a comment (``# recipe hapo``, or what it set where the
    config's own value won)."""
    resolved = cfg.model_dump(exclude={"recipe"})
    marks = recipe_marks(cfg.recipe, resolved)
    lines: list[str] = [f"recipe = {_toml_value(cfg.recipe)}", ""] if cfg.recipe is not None else []
    for section, table in resolved.items():
        if table is None:  # an optional section that is off (``[env]``)
            continue
        lines.append(f"[{section}]")
        for key, value in table.items():
            if value is None:
                continue
            mark = marks.get(f"{section}.{key}")
            lines.append(f"{key} = {_toml_value(value)}" + (f"  # {mark}" if mark else ""))
        lines.append("")
    return "\n".join(lines)


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list | tuple):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        if set(v) == {"type"}:  # a component without knobs: its name
            return _toml_value(v["type"])
        return "{" + ", ".join(f"{json.dumps(k)} = {_toml_value(x)}" for k, x in v.items() if x is not None) + "}"
    raise TypeError(f"cannot render {v!r} as TOML")


def describe(model: type[BaseModel] = Config, prefix: str = "") -> list[tuple[str, str, str]]:
    """(dotted key, default, doc) for every option: what `rollwise config show --docs` prints. A typed
    component lists each registered type's knobs as ``key[type].knob``."""
    from rollwise.components import typed_model

    rows = []
    for name, field in model.model_fields.items():
        key = f"{prefix}{field.alias or name}"  # the key a user writes (``async``, not ``async_``)
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            rows += describe(ann, f"{key}.")
            continue
        default = field.default
        rows.append((key, repr(default.model_dump() if isinstance(default, BaseModel) else default),
                     field.description or ""))
        if key == "sampler.replay":
            rows += describe(ReplayConfig, f"{key}.")
        section = [a for a in typing.get_args(ann) if isinstance(a, type) and issubclass(a, BaseModel)]
        if section and key not in COMPONENT_KEYS:  # an optional section (``[swarm]``): its knobs when given
            rows += describe(section[0], f"{key}.")
        reg = COMPONENT_KEYS.get(key)
        for t in reg.names() if reg is not None else []:
            knobs = {k: f for k, f in typed_model(reg, t).model_fields.items() if k != "type"}
            rows.append((f"{key}[{t}]", "", reg.doc(t)))
            rows += [(f"{key}[{t}].{k}", repr(f.default), f.description or "") for k, f in knobs.items()]
    return rows
