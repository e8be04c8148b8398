"""The listing commands of the CLI: ``rollwise samplers | recipes | envs`` (registered by ``rollwise.cli``)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from rollwise.config import ConfigError, load_config


def samplers(
    batch_prompts: int = typer.Option(32, "--batch-prompts", help="prompts per step P for the budget column"),
    group_size: int = typer.Option(8, "--group-size", help="rollouts per prompt G for the budget column"),
) -> None:
    """List the sampler presets (composition and the per-step budget each needs) and the components."""
    from rollwise.components import knobs
    from rollwise.config import COMPONENT_KEYS, SamplerConfig
    from rollwise.sampling.presets import PRESETS, step_budget

    table = Table(title=f"sampler presets (--sampler.type=NAME); budgets at P={batch_prompts}, G={group_size}")
    for col in ("preset", "composition", "budget need / min", "what it does"):
        table.add_column(col)
    for name in PRESETS.names():
        s = SamplerConfig.model_validate({"type": name, "batch_prompts": batch_prompts, "group_size": group_size})
        p = PRESETS.get(name)
        parts = [f"{slot}={getattr(s, slot).type}" for slot in ("selector", "allocator", "downsampler", "baseline",
                                                                "transform") if getattr(s, slot).type not in
                 ("uniform", "fixed", "all", "none")]
        parts += [f"gate={g.type}" for g in s.gates] + (["replay"] if s.replay else [])
        parts += [f"{k}={v}" for slot in ("allocator",) for k, v in knobs(getattr(s, slot)).items()
                  if s.allocator.type == "fixed" and v]
        parts += [f"adv={p.advantage}"] if p.advantage else []
        parts += [f"breadth x{p.breadth}"] if p.breadth > 1 else []
        need, minimum = step_budget(s)
        table.add_row(name, " ".join(parts) or "-", f"{need} / {minimum}", p.doc)
    table.add_row("pets", "test time: rollwise eval --allocator pets|pets_offline --budget B", "B x questions",
                  "PETS: self-consistency at a sample budget (offline OKG, streaming buckets)")
    Console().print(table)
    comp = Table(title="components (--sampler.selector=NAME, --sampler.selector.KNOB=..., ...; "
                       "`rollwise config show --docs` lists every knob)")
    for col in ("key", "name", "what it does"):
        comp.add_column(col)
    for key, reg in COMPONENT_KEYS.items():
        for name in reg.names():
            comp.add_row(key, name, reg.doc(name))
    Console().print(comp)


def recipes(
    config: Annotated[str | None, typer.Argument(help="TOML config the budgets are computed on (default: "
                                                      "built-in defaults)")] = None,
) -> None:
    """List the recipes (one per paper: --recipe=NAME): arXiv id, what each sets, its per-step rollout budget."""
    from rollwise.recipes import RECIPES

    table = Table(title="recipes (--recipe=NAME; a key you set wins over the recipe's)")
    for col in ("recipe", "arXiv", "rollouts / step", "sets", "paper"):
        table.add_column(col)
    for name in RECIPES.names():
        r = RECIPES.get(name)
        try:
            budget = str(load_config(config, [("recipe", name)]).rollout_budget())
        except ConfigError as exc:  # the recipe needs what this config lacks (FAPO: worked answers)
            budget = "n/a: " + str(exc).splitlines()[-1].strip()
        sets = " ".join(f"{k}={v!r}" for k, v in r.settings.items())
        table.add_row(name, r.arxiv or "-", budget, sets, r.doc)
    Console().print(table)


def envs() -> None:
    """List the multi-turn environments (an [env] section: type = NAME) with every knob, the shared limits first."""
    from rich.markup import escape

    from rollwise.envs import ENVIRONMENTS

    table = Table(title=escape('environments ([env] type = "NAME", or --env.type=NAME; knobs: --env.KNOB=...)'))
    for col in ("environment", "knob", "default", "what it does"):
        table.add_column(col)
    for name in ENVIRONMENTS.names():
        table.add_row(name, "", "", escape(ENVIRONMENTS.doc(name)))
        for knob, f in ENVIRONMENTS.config(name).model_fields.items():
            table.add_row("", knob, escape(repr(f.default)), escape(f.description or ""))
    Console().print(table)
