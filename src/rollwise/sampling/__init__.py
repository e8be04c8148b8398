"""Sampler layer: which prompts to roll out, how many rollouts each, which groups and rollouts to train.

No torch and no backend imports. Each component is one class plus one registration line below; presets
(``--sampler.type=NAME``) compose them.
"""

from rollwise.sampling.base import (
    ALLOCATORS,
    BASELINES,
    DOWNSAMPLERS,
    GATES,
    SELECTORS,
    TRANSFORMS,
    Allocator,
    Baseline,
    Budget,
    Component,
    Downsampler,
    Gate,
    GroupObs,
    PromptContext,
    Request,
    RescueSources,
    SampleContext,
    Selector,
    TrainGroup,
    Transform,
)
from rollwise.sampling.pipeline import SamplingPipeline, TrainPlan
from rollwise.sampling.stats import PromptStats

__all__ = [
    "ALLOCATORS", "BASELINES", "DOWNSAMPLERS", "GATES", "SELECTORS", "TRANSFORMS", "Allocator", "Baseline",
    "Budget", "Component", "Downsampler", "Gate", "GroupObs", "PromptContext", "Request", "RescueSources",
    "SampleContext", "SamplingPipeline", "Selector", "PromptStats", "TrainGroup", "TrainPlan", "Transform",
]

SELECTORS.register("uniform", "rollwise.sampling.uniform:UniformSelector")
SELECTORS.register("vade", "rollwise.sampling.vade:VadeSelector")
SELECTORS.register("gdro", "rollwise.sampling.gdro:GdroSelector")
SELECTORS.register("dots", "rollwise.sampling.dots:DotsSelector")
ALLOCATORS.register("fixed", "rollwise.sampling.uniform:FixedAllocator")
ALLOCATORS.register("reinforce_ada", "rollwise.sampling.reinforce_ada:ReinforceAdaAllocator")
ALLOCATORS.register("xrpo", "rollwise.sampling.xrpo:XrpoAllocator")
ALLOCATORS.register("v05", "rollwise.sampling.v05:V05Allocator")
ALLOCATORS.register("gdro_sqrt", "rollwise.sampling.gdro:GdroSqrtAllocator")
ALLOCATORS.register("gdro_arms", "rollwise.sampling.gdro_arms:GdroArmsAllocator")
ALLOCATORS.register("dars", "rollwise.sampling.dars:DarsAllocator")
ALLOCATORS.register("dart", "rollwise.sampling.dart:DartAllocator")
GATES.register("dynamic", "rollwise.sampling.gates:DynamicSamplingGate")
GATES.register("dars_filter", "rollwise.sampling.dars:DarsFilterGate")
DOWNSAMPLERS.register("all", "rollwise.sampling.uniform:KeepAll")
DOWNSAMPLERS.register("balanced", "rollwise.sampling.reinforce_ada:BalancedDownsampler")
DOWNSAMPLERS.register("d3s", "rollwise.sampling.d3s:D3sDownsampler")
DOWNSAMPLERS.register("drop_min_abs", "rollwise.sampling.uniform:DropMinAbs")
DOWNSAMPLERS.register("vote_split", "rollwise.sampling.subsets:VoteSplit")
BASELINES.register("none", "rollwise.sampling.uniform:NoBaseline")
BASELINES.register("pool_mean", "rollwise.sampling.uniform:PoolMeanBaseline")
BASELINES.register("v05", "rollwise.sampling.v05:V05Baseline")
BASELINES.register("beta", "rollwise.sampling.mssr:BetaBaseline")
TRANSFORMS.register("none", "rollwise.sampling.uniform:NoTransform")
TRANSFORMS.register("xrpo_icl", "rollwise.sampling.xrpo:XrpoIclSeeding")
TRANSFORMS.register("prefix_rl", "rollwise.sampling.prefix_rl:PrefixRL")
TRANSFORMS.register("hill", "rollwise.sampling.hill:HillHints")
TRANSFORMS.register("scope", "rollwise.sampling.scope:ScopeRectify")
TRANSFORMS.register("dart_inject", "rollwise.sampling.dart:DartInjection")
