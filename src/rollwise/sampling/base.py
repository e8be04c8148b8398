"""The sampler protocol: plug-in components that decide which prompts to roll out, how many rollouts each
gets (possibly over several rounds), which groups survive, which rollouts are trained and what baseline they
use. No torch and no backend imports here: everything a component sees is numpy.

Hook order in one step (driven by :class:`rollwise.sampling.pipeline.SamplingPipeline`)::

    prompts = selector.select(k)                   # which prompts  (uniform, vade, gdro, dots)
    counts  = allocator.initial(prompts)           # first-round rollouts each  (fixed, gdro_sqrt, v05, ...)
    loop:   extra = allocator.extend(round, pools) # successive rounds  (reinforce_ada, dars, xrpo, v05)
            gates may ask for refills              # dapo dynamic sampling
    keep    = downsampler.select(pools)            # which rollouts are trained  (balanced, mc pivot, d3s)
    groups  = [g for g in pools if all(gate.keep(g))]
    base    = baseline.compute(pools)              # external baseline (pool mean, V0.5 fusion)
    every component .observe(step, pools, groups) after the update
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rollwise.registry import Registry
from rollwise.sampling.stats import PromptStats


@dataclass
class Budget:
    """Per-step spending limits, charged as rollouts are generated."""

    rollouts: int  # max rollouts generated this step, all rounds and refills together
    max_tokens: int | None = None  # max completion tokens generated this step (None = no cap)
    spent_rollouts: int = 0
    spent_tokens: int = 0

    def left(self) -> int:
        """Rollouts that may still be generated this step (0 once the token cap is reached)."""
        if self.max_tokens is not None and self.spent_tokens >= self.max_tokens:
            return 0
        return max(self.rollouts - self.spent_rollouts, 0)

    def charge(self, rollouts: int, tokens: int) -> None:
        self.spent_rollouts += int(rollouts)
        self.spent_tokens += int(tokens)


@dataclass
class Request:
    """Rollouts to generate next: ``counts[i]`` completions of pool prompt ``prompts[i]``."""

    prompts: np.ndarray  # [P] int64 pool indices
    counts: np.ndarray  # [P] int64, >= 1

    def __len__(self) -> int:
        return len(self.prompts)

    @property
    def total(self) -> int:
        return int(self.counts.sum())


@dataclass
class GroupObs:
    """Everything generated for one prompt this step (the *pool*, all rounds), as the sampler sees it."""

    prompt: int
    rewards: np.ndarray  # [n] float, in generation order
    lengths: np.ndarray  # [n] int, completion tokens
    mean_logprob: np.ndarray | None = None  # [n] length-normalised behaviour logprob (optional)

    @property
    def n(self) -> int:
        return len(self.rewards)

    def is_mixed(self, keep: np.ndarray | None = None) -> bool:
        """True when the (kept) rewards are not all equal, so GRPO gets a non-zero advantage."""
        r = self.rewards if keep is None else self.rewards[keep]
        return len(r) > 0 and bool(np.ptp(r) > 0)


@dataclass
class TrainGroup:
    """A group handed to the loss: which pool rollouts to train, their baseline, an advantage weight."""

    prompt: int
    keep: np.ndarray  # [k] int indices into the pool's rollouts
    baseline: float | None = None  # external baseline for the ``pool_baseline`` advantage estimator
    weight: float = 1.0  # advantage multiplier (Prompt-GDRO)
    loss: float | None = None  # mean per-rollout surrogate loss, filled by the trainer after the update


@dataclass
class SampleContext:
    """What every component may read when it decides. Built by the pipeline each call."""

    step: int
    total_steps: int
    group_size: int  # nominal G
    batch_prompts: int  # nominal prompts per step
    stats: PromptStats
    rng: np.random.Generator
    budget: Budget
    levels: np.ndarray | None = None  # [N] int difficulty level per pool prompt (for metrics/bins), if known
    exclude: np.ndarray | None = None  # [k] prompts already used this step (refills must not repeat them)

    @property
    def progress(self) -> float:
        return min(self.step / max(self.total_steps, 1), 1.0)


class Component:
    """Base of every sampler plug-in: default no-op hooks and (empty) checkpointable state.

    Subclasses are dataclass-like: keyword arguments come from the config's ``params`` table. Persistent state
    must round-trip through ``state_dict`` so a restored component makes the same next decisions.
    """

    kind: str = "component"
    #: the advantage estimators this component needs (empty = any); checked when a pipeline is built
    requires_advantage: tuple[str, ...] = ()

    def observe(self, ctx: SampleContext, pools: list[GroupObs], trained: list[TrainGroup]) -> None:
        """Learn from this step's verified pools (after the update)."""

    def metrics(self) -> dict[str, float]:
        return {}

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state:
            raise ValueError(f"{type(self).__name__} has no state, got keys {sorted(state)}")


class Selector(Component):
    kind = "selector"

    def select(self, k: int, ctx: SampleContext) -> np.ndarray:
        """Return ``k`` distinct pool indices (fewer if the pool is exhausted), avoiding ``ctx.exclude``."""
        raise NotImplementedError

    def weights(self, prompts: np.ndarray, ctx: SampleContext) -> np.ndarray:
        """Advantage multiplier per prompt (Prompt-GDRO reweights bins); default all ones."""
        return np.ones(len(prompts), dtype=np.float64)


class Allocator(Component):
    kind = "allocator"
    max_rounds: int = 1  # how many generation rounds this allocator may ask for
    #: False: a prompt given 0 extra rollouts in a round is done and leaves the active set (successive
    #: elimination). True: every prompt of the step stays eligible in later rounds (XRPO phases).
    revisit: bool = False

    def initial(self, prompts: np.ndarray, ctx: SampleContext) -> np.ndarray:
        """First-round rollout count per prompt ([P] int >= 1)."""
        return np.full(len(prompts), ctx.group_size, dtype=np.int64)

    def extend(self, round_index: int, pools: list[GroupObs], ctx: SampleContext) -> np.ndarray:
        """Extra rollouts per pool for the next round ([P] int, 0 = done unless ``revisit``). ``round_index``
        starts at 1."""
        return np.zeros(len(pools), dtype=np.int64)


class Gate(Component):
    kind = "gate"
    refill: bool = False  # whether dropped groups should be replaced by fresh prompts (DAPO)
    max_refills: int = 0

    def keep(self, pools: list[GroupObs], kept: list[np.ndarray], ctx: SampleContext) -> np.ndarray:
        """Boolean mask [P]: which groups (with their kept rollouts) go to the loss."""
        return np.ones(len(pools), dtype=bool)


class FilterGate(Gate):
    """A stateless gate given by a per-group rule (``passes``); counts the groups it drops each step."""

    _dropped = 0

    def passes(self, pools: list[GroupObs], kept: list[np.ndarray]) -> np.ndarray:
        """Boolean mask [P] of the groups that pass the rule."""
        raise NotImplementedError

    def keep(self, pools: list[GroupObs], kept: list[np.ndarray], ctx: SampleContext) -> np.ndarray:
        mask = self.passes(pools, kept)
        self._dropped = int((~mask).sum())
        return mask

    def metrics(self) -> dict[str, float]:
        return {"dropped": self._dropped}

    def state_dict(self) -> dict[str, Any]:
        return {}


class Downsampler(Component):
    kind = "downsampler"

    def select(self, pools: list[GroupObs], ctx: SampleContext) -> list[np.ndarray]:
        """Indices of the rollouts to train in each pool (may look across groups)."""
        return [np.arange(p.n) for p in pools]

    def token_fraction(self, ctx: SampleContext) -> float | None:
        """Share of tokens to keep by |A|*entropy (D3S token level); None keeps all tokens."""
        return None


class Baseline(Component):
    kind = "baseline"

    def compute(self, pools: list[GroupObs], ctx: SampleContext) -> list[float | None]:
        """External per-group baseline (e.g. the mean over all rollouts ever generated for the prompt)."""
        return [None] * len(pools)


@dataclass
class Replayed:
    """A group stored by a replay buffer: opaque trainer rollouts plus the step they were made."""

    prompt: int
    rollouts: list[Any]
    step: int
    extra: dict[str, Any] = field(default_factory=dict)


SELECTORS: Registry[type[Selector]] = Registry("selector")
ALLOCATORS: Registry[type[Allocator]] = Registry("allocator")
GATES: Registry[type[Gate]] = Registry("gate")
DOWNSAMPLERS: Registry[type[Downsampler]] = Registry("downsampler")
BASELINES: Registry[type[Baseline]] = Registry("baseline")
