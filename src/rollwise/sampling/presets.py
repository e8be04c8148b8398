"""Named compositions of components (``--sampler.type=NAME``) and the builder that validates them.

A preset fills the component slots; anything set explicitly in config overrides it. Adding a method is one
component class plus one registration line in ``sampling/__init__.py`` (and, for a published recipe, one
preset line here).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rollwise.registry import Registry
from rollwise.sampling.base import ALLOCATORS, BASELINES, DOWNSAMPLERS, GATES, SELECTORS
from rollwise.sampling.pipeline import SamplingPipeline
from rollwise.sampling.replay import Replay


@dataclass(frozen=True)
class Preset:
    """A published method as a composition of components (None = the default component)."""

    doc: str
    selector: str = "uniform"
    allocator: str = "fixed"
    gates: tuple[str, ...] = ()
    downsampler: str = "all"
    baseline: str = "none"
    replay: bool = False
    advantage: str | None = None  # the estimator the method needs (None = the config's choice)
    params: dict[str, dict[str, Any]] = field(default_factory=dict)


PRESETS: Registry[Preset] = Registry("sampler preset")
PRESETS.register("uniform", Preset("uniform prompts, fixed G rollouts each (plain GRPO)"))
PRESETS.register("dapo", Preset("DAPO dynamic sampling: drop all-equal groups, refill the batch", gates=("dynamic",)))
PRESETS.register("vade", Preset("VADE: Thompson draws from Beta posteriors scored by p(1-p)^2", selector="vade"))
PRESETS.register("reinforce_ada", Preset(
    "Reinforce-Ada: sample in rounds until both outcomes, balanced groups, global pool baseline",
    allocator="reinforce_ada", downsampler="balanced", baseline="pool_mean", advantage="pool_baseline"))
PRESETS.register("gdro", Preset("GDRO: pass@k bins, prompt bandit weights, square-root rollout allocation",
                                selector="gdro", allocator="gdro_sqrt"))
PRESETS.register("dars", Preset("DARS: extra rollouts for low-accuracy prompts (closed form), filter 0<mean<1",
                                allocator="dars", gates=("dars_filter",), advantage="dr_grpo"))
PRESETS.register("dots", Preset("DOTS: pick prompts predicted near 50% pass rate, with rollout replay",
                                selector="dots", replay=True))
PRESETS.register("xrpo", Preset("XRPO: phased allocation by CI shrinkage + UCB bonus, novelty sharpening",
                                allocator="xrpo", advantage="xrpo"))
PRESETS.register("mc_grpo", Preset("MC-GRPO: G+1 rollouts, median baseline, pivot dropped",
                                   params={"fixed": {"extra": 1}}, advantage="mc_grpo"))
PRESETS.register("d3s", Preset("D3S: keep max-advantage-variance rollouts and top |A|*H tokens on a schedule",
                               downsampler="d3s"))
PRESETS.register("v05", Preset("V0.5-style: store estimate as prior, fused baseline, extra rollouts on conflict",
                               allocator="v05", baseline="v05", advantage="pool_baseline"))
PRESETS.register("brorl", Preset("BroRL: uniform with a large N per prompt", params={"fixed": {"n": 64}}))


def _instantiate(registry: Registry, name: str, params: dict[str, dict[str, Any]]) -> Any:
    cls = registry.get(name)
    kwargs = params.get(name, {})
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise ValueError(f"sampler.params.{name}: {exc}") from exc


def build_pipeline(
    *,
    preset: str = "uniform",
    selector: str | None = None,
    allocator: str | None = None,
    gates: list[str] | None = None,
    downsampler: str | None = None,
    baseline: str | None = None,
    replay: bool | None = None,
    params: dict[str, dict[str, Any]] | None = None,
    advantage: str | None = None,
    pool_size: int,
    group_size: int,
    batch_prompts: int,
    total_steps: int,
    seed: int,
    levels: np.ndarray | None = None,
    positive_threshold: float = 0.5,
) -> tuple[SamplingPipeline, str | None]:
    """Build the pipeline of a preset with explicit overrides; return it with the advantage estimator the
    composition requires (None when any estimator will do). Invalid combinations raise ``ValueError``."""
    p = PRESETS.get(preset)
    merged = {k: dict(v) for k, v in p.params.items()}
    for k, v in (params or {}).items():
        merged.setdefault(k, {}).update(v)
    parts = {
        "selector": _instantiate(SELECTORS, selector or p.selector, merged),
        "allocator": _instantiate(ALLOCATORS, allocator or p.allocator, merged),
        "gates": [_instantiate(GATES, g, merged) for g in (gates if gates is not None else p.gates)],
        "downsampler": _instantiate(DOWNSAMPLERS, downsampler or p.downsampler, merged),
        "baseline": _instantiate(BASELINES, baseline or p.baseline, merged),
    }
    use_replay = p.replay if replay is None else replay
    rp = Replay(**merged.get("replay", {})) if use_replay else None
    need = _required_advantage(parts, p.advantage, advantage)
    pipe = SamplingPipeline(**parts, replay=rp, pool_size=pool_size, group_size=group_size,
                            batch_prompts=batch_prompts, total_steps=total_steps, seed=seed, levels=levels,
                            positive_threshold=positive_threshold)
    return pipe, need


def _required_advantage(parts: dict[str, Any], preset_adv: str | None, chosen: str | None) -> str | None:
    comps = [parts["selector"], parts["allocator"], *parts["gates"], parts["downsampler"], parts["baseline"]]
    needs = {a for c in comps for a in getattr(c, "requires_advantage", ())}
    if len(needs) > 1:
        raise ValueError(f"sampler components need different advantage estimators: {sorted(needs)}")
    need = next(iter(needs), None) or preset_adv
    has_baseline = type(parts["baseline"]).__name__ != "NoBaseline"
    if chosen is not None and need is not None and chosen != need and not (needs == set() and preset_adv):
        raise ValueError(f"algo.advantage={chosen!r} conflicts with the sampler, which needs {need!r}")
    final = chosen or need
    if final == "pool_baseline" and not has_baseline:
        raise ValueError("algo.advantage='pool_baseline' needs a sampler baseline (sampler.baseline=pool_mean|v05)")
    if has_baseline and final not in (None, "pool_baseline"):
        raise ValueError(f"sampler.baseline={type(parts['baseline']).__name__} is ignored by "
                         f"algo.advantage={final!r}; use 'pool_baseline'")
    return final
