"""The grid of a ``rollwise bench`` run: its TOML spec (arms x seeds on one base config, a shared budget, an
optional ``[quick]`` cut and ``cost`` pricing), validated strictly, with one-line errors naming the key."""

from __future__ import annotations

import difflib
import re
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from rollwise.config import ConfigError
from rollwise.cost import get_model, get_setup


@dataclass
class Arm:
    name: str
    overrides: list[str] = field(default_factory=list)


@dataclass
class Grid:
    base: str
    seeds: list[int]
    arms: list[Arm]
    overrides: list[str]
    out: Path
    reference: str = "uniform"  # the arm whose final accuracy defines "tokens to reach"
    metric: str = "eval/mean/pass@1"  # the accuracy curve compared (train_eval/mean/pass@1: fit of the pool)
    reach: float = 1.0  # target = reference start + reach x (reference final - start); 1 = the final accuracy
    interpolate: bool = False  # tokens at the target by linear interpolation between evals (else: first eval)
    at_step: int | None = None  # also report the accuracy after at most this many optimiser steps (equal updates)
    # extra columns: "KEY" = the last logged value of KEY (mean over seeds); "mean:KEY" = its mean over all
    # logged steps (e.g. "eval/add4/pass@1", "mean:rollout/flawed_positive_share")
    report: list[str] = field(default_factory=list)
    x: str = "ledger/tokens"  # the cost axis of "to reach": generated tokens, or ledger/seconds (wall-clock)
    # a run trained once before the arms (e.g. the start model of a testbed), as CLI overrides of ``base``; it
    # lands in ``<out>/_prepare/run`` and an arm names its checkpoint (``--model.path=<out>/_prepare/run/...``)
    prepare: list[str] | None = None
    # ``rollwise bench --quick``: a smoke variant, keys replaced (seeds, arms by name, extra overrides)
    quick: dict[str, Any] = field(default_factory=dict)
    headline: bool = False  # also write the proving-ground summary (rollwise.bench_headline): headline.md + plots
    # price each run's counted work on a GPU setup (rollwise.cost): {"setup": ..., "model": ...}; None = off
    cost: dict[str, str] | None = None


class GridError(ConfigError):
    """A bench grid file that cannot run as written; one line per problem, raised before anything trains."""


ARM_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")  # a folder under ``out``: no '/', '..', '_prepare', '.lock'


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class ArmSpec(_Strict):
    """One ``[[arms]]`` table."""

    name: str = Field(description="the arm's folder under ``out`` and its row in the results")
    overrides: list[str] = Field([], description="CLI overrides of the grid's base config for this arm")

    @field_validator("name")
    @classmethod
    def _plain_name(cls, v: str) -> str:
        if not ARM_NAME.fullmatch(v):
            raise ValueError(f"{v!r} must be a plain folder name (letters, digits, '_', '-'; not starting with "
                             "'_' or '-'): it names the arm's run folder under 'out'")
        return v


class QuickSpec(_Strict):
    """``[quick]``: the smoke variant's replaced keys."""

    seeds: list[int] | None = Field(None, min_length=1, description="seeds of the smoke variant")
    arms: list[str] | None = Field(None, min_length=1, description="arms (by name) of the smoke variant")
    overrides: list[str] = Field([], description="overrides appended to every arm's")


class CostSpec(_Strict):
    """``cost = {setup = ..., model = ...}``: projected GPU seconds per arm (rollwise.cost, bench_cost.py)."""

    setup: str = Field("h100-vllm-fsdp", description="a named GPU setup of rollwise.cost")
    model: str = Field(description="the model size it prices (e.g. smollm2-135m, qwen2.5-0.5b, tiny)")

    @model_validator(mode="after")
    def _known(self) -> CostSpec:
        get_model(get_setup(self.setup), self.model)  # ValueError naming the options
        return self


class GridSpec(_Strict):
    """A bench grid file as written (every key of :class:`Grid`); unknown keys are errors."""

    base: str
    seeds: list[int] = Field([0, 1, 2], min_length=1)
    arms: list[ArmSpec] = Field(min_length=1)
    overrides: list[str] = []
    out: str | None = None
    reference: str | None = None
    metric: str = "eval/mean/pass@1"
    reach: float = Field(1.0, gt=0, le=1, strict=False)
    interpolate: bool = False
    at_step: int | None = Field(None, ge=0)
    report: list[str] = []
    x: str = "ledger/tokens"
    prepare: list[str] | None = None
    quick: QuickSpec = QuickSpec()
    headline: bool = False
    cost: CostSpec | None = None

    @model_validator(mode="after")
    def _check_names(self) -> GridSpec:
        names = [a.name for a in self.arms]
        problems = []
        if dup := sorted({n for n in names if names.count(n) > 1}):
            problems.append(f"arms: duplicate name(s) {dup} (each arm trains into its own folder)")
        if dup := sorted({s for s in self.seeds if self.seeds.count(s) > 1}):
            problems.append(f"seeds: duplicate seed(s) {dup}")
        if self.reference is not None and self.reference not in names:
            problems.append(f"reference: {self.reference!r} is not an arm{_closest(self.reference, names)}")
        if self.quick.arms is not None:
            if missing := [n for n in self.quick.arms if n not in names]:
                problems.append(f"quick.arms: unknown arm(s) {missing}{_closest(missing[0], names)}")
            elif (ref := self.reference or names[0]) not in self.quick.arms:
                problems.append(f"quick.arms: leaves out the reference arm {ref!r}, which the report compares to")
        if problems:
            raise ValueError("; ".join(problems))
        return self


def _closest(name: str, options: list[str]) -> str:
    close = difflib.get_close_matches(name, options, n=3, cutoff=0.5)
    return ("; did you mean " + " or ".join(repr(c) for c in close) + "?") if close else f" ({', '.join(options)})"


def _grid_errors(path: Path, exc: ValidationError) -> GridError:
    lines = []
    for err in exc.errors():
        key = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in err["loc"]).lstrip(".") or "(grid)"
        if err["type"] == "extra_forbidden":
            lines.append(f"  {key}: unknown key")
        elif err["type"] == "missing":
            lines.append(f"  {key}: missing")
        else:
            msg = str(err["msg"]).removeprefix("Value error, ")
            got = "" if err["type"] == "value_error" else f" (got {err.get('input')!r})"
            lines.append(f"  {msg}" if key == "(grid)" else f"  {key}: {msg}{got}")
    return GridError(f"bench grid {path}:\n" + "\n".join(lines))


def load_grid(path: str | Path) -> Grid:
    """Read and check a grid file: unknown keys (top level, in ``[quick]``, in an arm), duplicate or path-like
    arm names, an unknown reference or ``[quick]`` arm, empty arms and bad TOML are one line each. The arms'
    configs are checked by :func:`check_grid` (``run_grid`` calls it before training anything)."""
    p = Path(path)
    if not p.is_file():
        raise GridError(f"bench grid not found: {p}")
    try:
        d = tomllib.loads(p.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise GridError(f"{p}: invalid TOML: {exc}") from None
    try:
        spec = GridSpec.model_validate(d)
    except ValidationError as exc:
        raise _grid_errors(p, exc) from None
    arms = [Arm(a.name, list(a.overrides)) for a in spec.arms]
    return Grid(spec.base, list(spec.seeds), arms, list(spec.overrides), Path(spec.out or f"bench/results/{p.stem}"),
                spec.reference or arms[0].name, spec.metric, spec.reach, spec.interpolate, spec.at_step,
                list(spec.report), spec.x, spec.prepare, spec.quick.model_dump(exclude_none=True, exclude_unset=True),
                spec.headline, spec.cost.model_dump() if spec.cost is not None else None)


def quick_grid(grid: Grid) -> Grid:
    """The grid's ``[quick]`` smoke variant: its seeds, the arms it names, its overrides appended to the arms'
    (the prepare run is the grid's own: arms name its checkpoint); results in ``<out>_quick``."""
    q = grid.quick
    names = q.get("arms", [a.name for a in grid.arms])
    if missing := [n for n in names if n not in {a.name for a in grid.arms}]:
        raise GridError(f"[quick] names unknown arm(s) {missing}")
    out = grid.out.with_name(grid.out.name + "_quick")
    extra = list(q.get("overrides", []))

    def move(args: list[str]) -> list[str]:  # paths into the grid's out dir follow it
        return [a.replace(str(grid.out) + "/", str(out) + "/") for a in args]

    arms = [Arm(a.name, move(a.overrides)) for a in grid.arms if a.name in names]
    return replace(grid, seeds=list(q.get("seeds", grid.seeds)), arms=arms, out=out,
                   overrides=move([*grid.overrides, *extra]))
