"""Named compositions of components (``--sampler.type=NAME``), the merge of a preset with explicit config,
the per-step budget each composition needs, and the builder.

A preset fills the component slots with typed configs; a slot set in config overrides it (a table without
``type`` tunes the preset's own component). Adding a method is one component class plus one registration line
in ``sampling/__init__.py`` (and, for a published recipe, one preset line here).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rollwise.components import knobs
from rollwise.registry import Registry
from rollwise.sampling.base import (
    ALLOCATORS,
    BASELINES,
    DOWNSAMPLERS,
    GATES,
    SELECTORS,
    TRANSFORMS,
    Estimator,
    RescueSources,
)
from rollwise.sampling.pipeline import SamplingPipeline, compute_budget
from rollwise.sampling.replay import Replay

#: component slot -> its registry (gates are a list of GATES entries; replay is on/off with knobs)
SLOTS: dict[str, Registry] = {"selector": SELECTORS, "allocator": ALLOCATORS, "downsampler": DOWNSAMPLERS,
                              "baseline": BASELINES, "transform": TRANSFORMS}
Spec = str | dict[str, Any]  # a component: its name, or a table with ``type`` and knobs


@dataclass(frozen=True)
class Preset:
    """A published method as a composition of components."""

    doc: str
    selector: Spec = "uniform"
    allocator: Spec = "fixed"
    gates: tuple[Spec, ...] = ()
    downsampler: Spec = "all"
    baseline: Spec = "none"
    transform: Spec = "none"
    replay: bool = False
    advantage: str | None = None  # the estimator the method needs (None = the config's choice, else grpo)
    breadth: int = 1  # prompts per step = sampler.batch_prompts x breadth (DARS-B's large-breadth batches)
    #: True: prompts per step = batch_prompts x group_size / (the allocator's rollouts per prompt), so a method
    #: with fewer rollouts per prompt generates as many per step as the G-rollout arms it is compared with (MSSR)
    equal_rollouts: bool = False
    algo: dict[str, Any] = field(default_factory=dict)  # defaults for algo options the config leaves unset


PRESETS: Registry[Preset] = Registry("sampler preset")
PRESETS.register("uniform", Preset("uniform prompts, fixed G rollouts each (plain GRPO)"))
PRESETS.register("dapo", Preset("DAPO dynamic sampling: drop all-equal groups, refill the batch (<= 10 calls)",
                                gates=("dynamic",)))
PRESETS.register("vade", Preset("VADE: Thompson draws from Beta posteriors scored by p(1-p)^2", selector="vade"))
PRESETS.register("reinforce_ada", Preset(
    "Reinforce-Ada: sample in rounds until both outcomes, balanced groups, global pool baseline",
    allocator="reinforce_ada", downsampler="balanced", baseline="pool_mean", advantage="pool_baseline"))
PRESETS.register("gdro", Preset("Prompt-GDRO: EXP3 advantage weights over online pass@k bins",
                                selector="gdro"))
PRESETS.register("gdro_rollout", Preset("Rollout-GDRO: EXP3 arms game over rollout counts per pass@k bin, "
                                        "compute-neutral (dynamic programme + shadow price)",
                                        allocator="gdro_arms"))
PRESETS.register("dars", Preset("DARS: extra rollouts for low-accuracy prompts (closed form), filter 0<mean<1",
                                allocator="dars", gates=("dars_filter",), advantage="dr_grpo"))
PRESETS.register("dars_b", Preset("DARS-B: DARS with 4x the prompts per step, one full-batch update, 2 epochs",
                                  allocator="dars", gates=("dars_filter",), advantage="dr_grpo", breadth=4,
                                  algo={"epochs": 2, "mini_batches": 1}))
PRESETS.register("dots", Preset("DOTS: pick prompts predicted near 50% pass rate, with rollout replay",
                                selector="dots", replay=True))
PRESETS.register("xrpo", Preset("XRPO: phased allocation by CI shrinkage + UCB bonus, in-context seeding of "
                                "all-wrong prompts, novelty sharpening",
                                allocator="xrpo", transform="xrpo_icl", advantage="xrpo"))
PRESETS.register("mc_grpo", Preset("MC-GRPO: G+1 rollouts, median baseline, pivot dropped",
                                   allocator={"type": "fixed", "extra": 1}, advantage="mc_grpo"))
PRESETS.register("mc_grpo_control", Preset("MC-GRPO's control: G+1 rollouts, drop the smallest |reward|, GRPO",
                                           allocator={"type": "fixed", "extra": 1}, downsampler="drop_min_abs"))
PRESETS.register("d3s", Preset("D3S: keep max-advantage-variance rollouts and top |A|*H tokens on a schedule",
                               downsampler="d3s"))
PRESETS.register("v05", Preset("V0.5-style: store estimate as prior, fused baseline, extra rollouts on conflict",
                               allocator="v05", baseline="v05", advantage="pool_baseline"))
PRESETS.register("brorl", Preset("BroRL: uniform with a large N per prompt", allocator={"type": "fixed", "n": 64}))
PRESETS.register("mssr", Preset(
    "MSSR: one rollout per prompt (G x the prompts, equal rollouts), Beta-posterior baseline per prompt, "
    "batch-normalised A = r - v_hat, entropy advantage shaping",
    allocator={"type": "fixed", "n": 1}, baseline="beta", advantage="pool_baseline", equal_rollouts=True,
    algo={"advantage": {"batch_norm": True}, "shaping": ["mssr_entropy"]}))
PRESETS.register("prefix_rl", Preset("PrefixRL: stuck prompts continue from a prefix of a correct trace (own "
                                     "success, else reference), prefix shrinking as the prefixed pass rate rises",
                                     transform="prefix_rl"))
PRESETS.register("hill", Preset("HiLL: stuck prompts get a hint from a learned hinter (softmax over hint "
                                "generators per level), rewarded for informative, low-reliance hints",
                                transform="hill"))


def _as_table(spec: Any) -> dict[str, Any]:
    if isinstance(spec, str):
        return {"type": spec}
    if hasattr(spec, "model_dump"):
        return spec.model_dump()
    return dict(spec)


def merge_slot(base: Spec, given: Any) -> dict[str, Any]:
    """The preset's component ``base`` under the config's ``given`` (None, a name or a table): a table
    without ``type`` (or with the same type) tunes the preset's component; another type replaces it."""
    b = _as_table(base)
    if given is None:
        return b
    g = _as_table(given)
    if "type" not in g or g["type"] == b["type"]:
        return b | g
    return g


def resolve(data: dict[str, Any]) -> dict[str, Any]:
    """Raw ``[sampler]`` table -> the same with every slot filled from its preset (before validation)."""
    out = dict(data)
    preset = PRESETS.get(str(out.get("type", "uniform")))
    for slot in SLOTS:
        out[slot] = merge_slot(getattr(preset, slot), out.get(slot))
    gates = out.get("gates")
    if isinstance(gates, dict) and "type" not in gates:  # --sampler.gates.knob=v: tunes the preset's one gate
        if len(preset.gates) != 1:
            raise ValueError(f"a gates table without type tunes the preset's gate, but preset "
                             f"{out.get('type', 'uniform')!r} has {len(preset.gates)}; give the list, e.g. "
                             "sampler.gates = [{type = \"dynamic\", max_refills = 2}]")
        gates = [merge_slot(preset.gates[0], gates)]
    out["gates"] = [_as_table(g) for g in (preset.gates if gates is None else gates)]
    replay = out.get("replay")
    replay = preset.replay if replay is None else replay  # unset: the preset's
    out["replay"] = {} if replay is True else replay  # off stays an explicit false, so resolving is idempotent
    return out


def build_components(s: Any) -> dict[str, Any]:
    """Instantiate the components of a validated ``SamplerConfig``."""
    parts: dict[str, Any] = {slot: reg.get(getattr(s, slot).type)(**knobs(getattr(s, slot)))
                             for slot, reg in SLOTS.items()}
    parts["gates"] = [GATES.get(g.type)(**knobs(g)) for g in s.gates]
    parts["replay"] = Replay(**knobs(s.replay)) if s.replay else None
    return parts


def prompts_per_step(s: Any, parts: dict[str, Any] | None = None) -> int:
    """Prompts per step: batch_prompts x the preset's breadth, or for an equal-rollouts preset as many prompts
    as make batch_prompts x group_size rollouts at the allocator's rollouts per prompt."""
    preset = PRESETS.get(s.type)
    if not preset.equal_rollouts:
        return s.batch_prompts * preset.breadth
    per = (parts or build_components(s))["allocator"].first_round(s.group_size)
    return max(s.batch_prompts * s.group_size // max(per, 1), 1)


def step_budget(s: Any, parts: dict[str, Any] | None = None) -> tuple[int, int]:
    """(need, minimum) rollouts per step of a validated ``SamplerConfig`` (see ``compute_budget``)."""
    parts = parts or build_components(s)
    return compute_budget(parts["allocator"], parts["gates"], prompts_per_step(s, parts), s.group_size)


def required_advantage(s: Any, chosen: str | None) -> str:
    """The estimator a composition runs with: what its components or preset need, else ``chosen``, else
    grpo. Raises ``ValueError`` on a conflict (two needs, or a choice the sampler cannot work with)."""
    comps = [SLOTS[slot].get(getattr(s, slot).type) for slot in SLOTS] + [GATES.get(g.type) for g in s.gates]
    needs = {a for c in comps for a in getattr(c, "requires_advantage", ())}
    if len(needs) > 1:
        raise ValueError(f"sampler components need different advantage estimators: {sorted(needs)}")
    preset_adv = PRESETS.get(s.type).advantage
    need = next(iter(needs), None) or preset_adv
    if chosen is not None and need is not None and chosen != need and (needs or not preset_adv):
        raise ValueError(f"algo.advantage={chosen!r} conflicts with the sampler, which needs {need!r}")
    final = chosen or need or "grpo"
    has_baseline = s.baseline.type != "none"
    if final == "pool_baseline" and not has_baseline:
        raise ValueError("algo.advantage='pool_baseline' needs a sampler baseline (sampler.baseline=pool_mean|v05)")
    if has_baseline and final != "pool_baseline":
        raise ValueError(f"sampler.baseline={s.baseline.type!r} is ignored by algo.advantage={final!r}; "
                         "use 'pool_baseline'")
    return final


def build_pipeline(s: Any, *, pool_size: int, total_steps: int, seed: int, levels: np.ndarray | None = None,
                   estimate: Estimator | None = None, sources: RescueSources | None = None) -> SamplingPipeline:
    """The pipeline of a validated ``SamplerConfig`` ``s`` (from keyword arguments, for tests and benches:
    :func:`rollwise.sampler_tables.build_pipeline`)."""
    parts = build_components(s)
    kw = {"estimate": estimate} if estimate is not None else {}
    if sources is not None:
        missing = [f for f in parts["transform"].needs if not getattr(sources, f)]
        if missing:
            raise ValueError(f"sampler.transform {s.transform.type!r} needs {', '.join(missing)} from the task, "
                             "which this task does not provide (the arith suite does)")
        parts["transform"].bind(sources)
    return SamplingPipeline(**parts, pool_size=pool_size, group_size=s.group_size,
                            batch_prompts=prompts_per_step(s, parts), total_steps=total_steps, seed=seed,
                            levels=levels, positive_threshold=s.positive_threshold, ema_decay=s.ema_decay, **kw)
