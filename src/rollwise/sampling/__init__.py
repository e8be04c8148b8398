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
