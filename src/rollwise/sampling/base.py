"""The sampler protocol: plug-in components that decide which prompts to roll out, how many rollouts each
gets (possibly over several rounds), what context each prompt is shown, which groups survive, which rollouts
are trained, what baseline they use and with what weight. No torch and no backend imports here: everything a
component sees is numpy; the advantage estimator is injected as a callable (``SampleContext.estimate``).

Hook order in one step (driven by :class:`rollwise.sampling.pipeline.SamplingPipeline`)::

    prompts  = selector.select(k)                   # which prompts  (uniform, vade, gdro, dots)
    counts   = allocator.initial(prompts)           # first-round rollouts each  (fixed, gdro_arms, v05, ...)
    contexts = transform.contexts(prompts, pools)   # what each prompt is shown (XRPO in-context seeding)
    loop:    extra = allocator.extend(round, pools) # successive rounds  (reinforce_ada, dars, xrpo, v05)
             gates may ask for refills              # dapo dynamic sampling
    every component .on_generated(pools)            # GDRO reclassifies with this step's outcomes
    adv      = estimate(pools, baseline.compute())  # over each whole pool (unbiased statistics)
    keep     = downsampler.select(pools)            # which rollouts are trained  (balanced, d3s, drop_min_abs)
    groups   = [g for g in pools if all(gate.keep(g)) and len(keep) >= 2]
    adv     *= selector.weights(pools, keep)        # Prompt-GDRO
    + replayed groups, with the advantages they had when generated
    every component .observe(step, pools, groups, losses) after the update

Every component's knobs are a pydantic model (its ``Config``), so a misspelt knob fails when the config loads.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from rollwise.components import Knobs
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


@dataclass(frozen=True)
class PromptContext:
    """What a transform shows with a prompt (rescue methods): text before it (solved examples), text after it
    (a hint), and an answer prefix the policy continues from. The prefix is context, not action: its tokens are
    forced into the prompt (no loss, no importance weight), and the verifier reads ``answer_prefix + completion``.
    ``tag`` names the variant (e.g. ``"prefix:3"``, ``"hint:2"``) for the transform's own bookkeeping."""

    before: str = ""
    after: str = ""
    answer_prefix: str = ""
    tag: str = ""


@dataclass
class RescueSources:
    """What the trainer side lends the rescue transforms (PrefixRL, HiLL), indexed by pool prompt. Built in
    ``train/`` from the task and the policy, since ``sampling/`` imports neither ``data/`` nor torch; every field
    may be missing (a dataset without worked solutions, a run without a scorer)."""

    references: Sequence[str] | None = None  # [N] reference answer text (HiLL's leakage gate)
    traces: Sequence[str | None] | None = None  # [N] a correct worked solution, off-policy (PrefixRL)
    hint_names: tuple[str, ...] = ()  # the hint generators, in a fixed order (HiLL's hinter actions)
    hints: Callable[[int], dict[str, str]] | None = None  # pool index -> {generator name: hint text}
    #: (pool index, correct rollouts of a hinted pool) -> [n] hint reliance Delta = mean_t log pi(y|x) -
    #: mean_t log pi(y|x+h), teacher-forced under the current policy
    reliance: Callable[[int, list[Any]], np.ndarray] | None = None
    #: (**hinter knobs) -> HiLL's LM hinter (``sampling.hill.HinterModel``, built in ``train/hinter.py``); called
    #: once, on first use, by a ``hill`` transform with ``hinter = "lm"``
    hinter: Callable[..., Any] | None = None
    #: (PRM name) -> (judge, splice) of SCOPE (``train/scope.py``): judge(pool index, completion text) -> (step
    #: starts [S] char offsets, PRM scores [S]); splice(pool index, failed rollout, first wrong step k, its char
    #: offset) -> (rectified rollout, verified reward, text, tokens, mean behaviour logprob) or None
    rectifier: Callable[[str], tuple[Callable[..., Any], Callable[..., Any]]] | None = None


@dataclass
class Request:
    """Rollouts to generate next: ``counts[i]`` completions of pool prompt ``prompts[i]``."""

    prompts: np.ndarray  # [P] int64 pool indices
    counts: np.ndarray  # [P] int64, >= 1
    contexts: list[Any] | None = None  # [P] PromptContext (or XRPO's example tuple) per prompt; None = alone

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
    payload: list[Any] | None = None  # [n] the trainer's rollouts, opaque here (kept for replay)
    texts: list[str] | None = None  # [n] completion texts (the in-context seeding corpus)
    traj: np.ndarray | None = None  # [n] int trajectory id of each row (episode turns share one); None: one each
    #: [m] the policy's own rewards when a component replaced rows after generation (SCOPE's splice, DART's
    #: injection): the stats store learns from these, the estimator and gates see ``rewards``; None: unchanged
    own_rewards: np.ndarray | None = None

    @property
    def n(self) -> int:
        return len(self.rewards)

    def is_mixed(self, keep: np.ndarray | None = None) -> bool:
        """True when the (kept) rewards are not all equal, so GRPO gets a non-zero advantage."""
        r = self.rewards if keep is None else self.rewards[keep]
        return len(r) > 0 and bool(np.ptp(r) > 0)


@dataclass
class TrainGroup:
    """A group handed to the loss: its rollouts and the advantage of each (already weighted).

    A fresh group's ``rollouts`` are its pool's payload at ``keep``; a replayed group carries the rollouts and
    advantages it had when it was generated (its baseline came from its own pool), so replay never recomputes
    them from a different group."""

    prompt: int
    keep: np.ndarray  # [k] int indices into the pool's rollouts (fresh groups)
    advantages: np.ndarray  # [k] float, one per trained rollout
    rollouts: list[Any] = field(default_factory=list)  # [k] opaque trainer rollouts
    weight: float = 1.0  # advantage multiplier applied (Prompt-GDRO)
    replayed: bool = False  # drawn from the replay buffer (off-policy)
    step: int = 0  # the step that generated it


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
    in_flight: np.ndarray | None = None  # [m] prompts other steps are rolling out now (async mode)
    estimate: Estimator | None = None  # the configured advantage estimator over whole pools
    advantages: list[np.ndarray] | None = None  # [P][n] this step's pool advantages, once computed

    @property
    def progress(self) -> float:
        return min(self.step / max(self.total_steps, 1), 1.0)


#: ``estimate(pools, baselines) -> [(advantages [n], keep [n] bool)]`` per pool (keep: the estimator's own
#: exclusions, e.g. MC-GRPO's pivot)
Estimator = Callable[[list["GroupObs"], list[float | None]], list[tuple[np.ndarray, np.ndarray]]]


def estimate_grpo(pools: list[GroupObs], baselines: list[float | None]) -> list[tuple[np.ndarray, np.ndarray]]:
    """Numpy GRPO over each pool, (r - mean) / (unbiased std + 1e-6), zeros for a pool of one; an external
    baseline replaces the mean (A = r - b). The default estimator when none is injected (tests, benches).
    Vectorised over all pools (a refill re-scores every pool of the step)."""
    if not pools:
        return []
    sizes = np.array([p.n for p in pools], dtype=np.int64)  # [P]
    r = np.concatenate([p.rewards for p in pools]).astype(np.float64)  # [R]
    g = np.repeat(np.arange(len(pools)), sizes)  # [R] pool of each row
    mean = np.bincount(g, r, len(pools)) / np.maximum(sizes, 1)  # [P]
    std = np.sqrt(np.bincount(g, (r - mean[g]) ** 2, len(pools)) / np.maximum(sizes - 1, 1))  # [P]
    adv = np.where(sizes[g] < 2, 0.0, (r - mean[g]) / (std[g] + 1e-6))
    base = np.array([np.nan if b is None else float(b) for b in baselines])  # [P]
    adv = np.where(np.isnan(base)[g], adv, r - np.nan_to_num(base)[g])
    cuts = np.cumsum(sizes)[:-1]
    return [(a, np.ones(a.size, dtype=bool)) for a in np.split(adv, cuts)]


class Component:
    """Base of every sampler plug-in: typed knobs, default no-op hooks and (empty) checkpointable state.

    Knobs are declared once, in the nested pydantic ``Config`` (with a doc per field); the constructor
    validates keyword arguments against it, sets them as attributes and calls :meth:`setup`. Persistent state
    must round-trip through ``state_dict`` so a restored component makes the same next decisions.
    """

    kind: ClassVar[str] = "component"
    #: the advantage estimators this component needs (empty = any); checked when the config loads
    requires_advantage: ClassVar[tuple[str, ...]] = ()
    #: True: it acts on what earlier visits of the same prompt taught it (per-prompt posteriors, bins, rescue),
    #: so a run whose prompts rarely come back is warned at load (``config_checks.precondition_warnings``)
    needs_revisits: ClassVar[bool] = False

    class Config(Knobs):
        pass

    def __init__(self, **knobs: Any) -> None:
        self.cfg = self.Config.model_validate(knobs)
        for name in type(self.cfg).model_fields:
            if callable(getattr(type(self), name, None)):
                raise TypeError(f"{type(self).__name__}: knob {name!r} would shadow a method; rename it")
            setattr(self, name, getattr(self.cfg, name))
        self.setup()

    def setup(self) -> None:
        """Derived state after the knobs are set (override instead of ``__init__``)."""

    def on_generated(self, ctx: SampleContext, pools: list[GroupObs]) -> None:
        """See this step's verified pools before groups are chosen (GDRO reclassifies here)."""

    def observe(self, ctx: SampleContext, pools: list[GroupObs], trained: list[TrainGroup],
                losses: np.ndarray | None = None) -> None:
        """Learn from this step's verified pools after the update; ``losses`` [len(trained)] is each trained
        group's mean per-rollout surrogate loss (None when nothing was trained)."""

    def on_policy_reset(self) -> None:
        """The trainer reset its policy's anchor (ReMix's reincarnation): drop what earlier policies produced."""

    def metrics(self) -> dict[str, float]:
        return {}

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state:
            raise ValueError(f"{type(self).__name__} has no state, got keys {sorted(state)}")


class Selector(Component):
    kind = "selector"
    repeat_in_flight = False  # may pick a prompt another step is still rolling out (async mode)
    skips_excluded = False  # honours ctx.exclude in select (asked for k, not k + in-flight, in async mode)

    def select(self, k: int, ctx: SampleContext) -> np.ndarray:
        """Return ``k`` distinct pool indices (fewer if the pool is exhausted), avoiding ``ctx.exclude``."""
        raise NotImplementedError

    def weights(self, pools: list[GroupObs], kept: list[np.ndarray], ctx: SampleContext) -> np.ndarray:
        """Advantage multiplier per trained pool [P] (Prompt-GDRO reweights bins); default all ones."""
        return np.ones(len(pools), dtype=np.float64)


class Allocator(Component):
    kind = "allocator"
    max_rounds: int = 1  # how many generation rounds this allocator may ask for
    #: False: a prompt given 0 extra rollouts in a round is done and leaves the active set (successive
    #: elimination). True: every prompt of the step stays eligible in later rounds (XRPO phases).
    revisit: bool = False

    def budget(self, prompts: int, group_size: int) -> tuple[int, int]:
        """(need, minimum) rollouts per step for ``prompts`` prompts: the most the method may spend, and the
        least that lets it act (past its first round when it has several; one group when it has one)."""
        return prompts * group_size, group_size

    def first_round(self, group_size: int) -> int:
        """Rollouts per prompt in the first round (on average)."""
        return group_size

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
    refill_scale: float = 3.0  # a refill asks for at most this many batches of prompts (DAPO's gen_bsz = 3B)

    def refill_prompts(self, prompts: int) -> int:
        """Most extra prompts this gate's refills may add in one step (0 without refill)."""
        return int(self.max_refills * self.refill_scale * prompts) if self.refill else 0

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


class Downsampler(Component):
    kind = "downsampler"
    #: False: advantages come from the whole pool (D3S, Reinforce-Ada); True: from the kept rows alone
    estimate_on_kept: ClassVar[bool] = False

    def select(self, pools: list[GroupObs], ctx: SampleContext) -> list[np.ndarray]:
        """Indices of the rollouts to train in each pool (may look across groups)."""
        return [np.arange(p.n) for p in pools]

    def token_fraction(self, ctx: SampleContext) -> float | None:
        """Share of tokens to keep by |A|*entropy (D3S token level); None keeps all tokens."""
        return None


class Baseline(Component):
    kind = "baseline"
    #: True: a lone rollout is contrasted with this baseline, so a pool of one is trained (MSSR's G = 1)
    single_rollout: ClassVar[bool] = False

    def compute(self, pools: list[GroupObs], ctx: SampleContext) -> list[float | None]:
        """External per-group baseline (e.g. the mean over all rollouts ever generated for the prompt)."""
        return [None] * len(pools)


class Transform(Component):
    """What each prompt is shown before it is rolled out: None (the prompt alone) or a context the trainer
    renders in front of it (XRPO's solved neighbours; later hints and prefixes for hard prompts)."""

    kind = "transform"
    #: the ``RescueSources`` fields this transform cannot act without (checked when the trainer binds them)
    needs: ClassVar[tuple[str, ...]] = ()

    def bind(self, sources: RescueSources) -> None:
        """Receive what the trainer side lends (traces, hints, a scorer); ignored unless a transform needs it."""

    def contexts(self, prompts: np.ndarray, pools: dict[int, GroupObs], ctx: SampleContext) -> list[Any] | None:
        """[P] context per requested prompt, or None for no change at all."""
        return None


SELECTORS: Registry[type[Selector]] = Registry("selector")
ALLOCATORS: Registry[type[Allocator]] = Registry("allocator")
GATES: Registry[type[Gate]] = Registry("gate")
DOWNSAMPLERS: Registry[type[Downsampler]] = Registry("downsampler")
BASELINES: Registry[type[Baseline]] = Registry("baseline")
TRANSFORMS: Registry[type[Transform]] = Registry("transform")
