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
    Allocator,
    Baseline,
    Budget,
    Component,
    Downsampler,
    Gate,
    GroupObs,
    Replayed,
    Request,
    SampleContext,
    Selector,
    TrainGroup,
)
from rollwise.sampling.pipeline import SamplingPipeline
from rollwise.sampling.stats import PromptStats

SELECTORS.register("uniform", "rollwise.sampling.uniform:UniformSelector")
ALLOCATORS.register("fixed", "rollwise.sampling.uniform:FixedAllocator")
DOWNSAMPLERS.register("all", "rollwise.sampling.uniform:KeepAll")
BASELINES.register("none", "rollwise.sampling.uniform:NoBaseline")
BASELINES.register("pool_mean", "rollwise.sampling.uniform:PoolMeanBaseline")
GATES.register("dynamic", "rollwise.sampling.gates:DynamicSamplingGate")

__all__ = [
    "ALLOCATORS", "BASELINES", "DOWNSAMPLERS", "GATES", "SELECTORS", "Allocator", "Baseline", "Budget",
    "Component", "Downsampler", "Gate", "GroupObs", "Replayed", "Request", "SampleContext", "SamplingPipeline",
    "Selector", "PromptStats", "TrainGroup",
]

ALLOCATORS.register("reinforce_ada", "rollwise.sampling.reinforce_ada:ReinforceAdaAllocator")
DOWNSAMPLERS.register("balanced", "rollwise.sampling.reinforce_ada:BalancedDownsampler")
ALLOCATORS.register("xrpo", "rollwise.sampling.xrpo:XrpoAllocator")
ALLOCATORS.register("v05", "rollwise.sampling.v05:V05Allocator")
BASELINES.register("v05", "rollwise.sampling.v05:V05Baseline")
DOWNSAMPLERS.register("d3s", "rollwise.sampling.d3s:D3sDownsampler")
SELECTORS.register("vade", "rollwise.sampling.vade:VadeSelector")
SELECTORS.register("gdro", "rollwise.sampling.gdro:GdroSelector")
ALLOCATORS.register("gdro_sqrt", "rollwise.sampling.gdro:GdroSqrtAllocator")
ALLOCATORS.register("dars", "rollwise.sampling.dars:DarsAllocator")
GATES.register("dars_filter", "rollwise.sampling.dars:DarsFilterGate")
SELECTORS.register("dots", "rollwise.sampling.dots:DotsSelector")
