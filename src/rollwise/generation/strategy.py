"""Rollout strategies: how one request's completions are produced from the engine.

The collector asks its strategy, never the engine directly, for the completions of a request. ``plain`` samples
``counts[i]`` independent completions of each prompt; a method that changes *what is generated* (partial
rollouts carried across steps, early pruning, tree-structured branching) is one more strategy class plus one
registration line in ``generation/__init__.py``, chosen by ``generation.strategy``. A strategy may keep state
across steps (checkpointed with the trainer), learn from the verified outcome of its completions (``observe``)
and attach per-completion tree metadata (``Completion.meta``) that advantage shapers read.

Charging: the ledger is the engine's own count. Every strategy generates through a :class:`CountingEngine`,
which adds up the tokens each engine call decoded (``len(token_ids) - prefix_len`` of every completion it
returned: a forced prefix is not decoded), so tree phases, pruned rows, aborted partials and resumes are charged
when and where they are decoded, whatever the strategy returns or drops; the budget and ``ledger/tokens`` read
that count and nothing a strategy reports.

A strategy may return completions for prompts it was not asked for this call (APRIL resumes last step's partial
rollouts first) through ``extra``, and may return fewer completions than asked for a prompt (aborted or pruned
ones it keeps for later); the collector verifies and charges whatever comes back.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from rollwise.components import Knobs
from rollwise.generation.base import WORK_KEYS, Completion, Engine, GenerateStats, SamplingParams
from rollwise.registry import Registry


@dataclass
class StrategyResult:
    """Completions of one call: ``completions[i]`` for the requested prompt i, and ``extra`` completions of other
    pool prompts (pool index -> (prompt ids, completions)), e.g. resumed partial rollouts. Completions a strategy
    generated and dropped (ARRoL's pruned rollouts) are counted in ``discarded_*``: the rollouts are charged to the
    budget and ``ledger/rollouts``; their tokens are already in the engine's count (:class:`CountingEngine`) and
    ``discarded_tokens`` only says how many of the decoded tokens were dropped."""

    completions: list[list[Completion]]
    extra: dict[int, tuple[list[int], list[Completion]]] = field(default_factory=dict)
    discarded_rollouts: int = 0  # generated and dropped (pruned): charged to the budget and ledger, never trained
    discarded_tokens: int = 0  # of the decoded tokens, those of dropped rollouts (information, not charged twice)


#: ``scorer(rows, completions) -> rewards``: request row index (into the round's prompts) of each completion
Scorer = Callable[[list[int], list[Completion]], list[float]]


class CountingEngine:
    """The engine as every strategy sees it (``run_job`` wraps it): each ``generate`` call adds the tokens the
    engine decoded for it to ``decoded`` (per completion ``len(token_ids) - prefix_len``; a forced prefix is
    prefilled, not decoded), the work counters of its ``last_stats`` to ``work`` (prefill tokens, decode steps,
    decode row-steps: ``WORK_KEYS``), and ``calls``. Everything else is the wrapped engine's."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.decoded = 0  # tokens decoded by the calls through this wrapper
        self.work = dict.fromkeys(WORK_KEYS, 0)  # the engine's own counts of the forwards those calls ran
        self.calls = 0

    def __getattr__(self, name: str) -> Any:  # batch_size, model, tokenizer, version, last_stats, ...
        return getattr(self.engine, name)

    def generate(self, prompts: list[list[int]], counts: list[int], params: SamplingParams,
                 **options: Any) -> list[list[Completion]]:
        out = self.engine.generate(prompts, counts, params, **options)
        self.calls += 1
        self.decoded += sum(len(c.token_ids) - c.prefix_len for cs in out for c in cs)
        stats = getattr(self.engine, "last_stats", None)  # a bare test double may have none: no work to add
        if stats is not None:
            self.add_work(stats)
        return out

    def charge(self, tokens: int, stats: GenerateStats | None = None) -> None:
        """Count ``tokens`` decoded outside this engine by the strategy (Sol-RL's low-precision explore copy),
        and the work of that call (its engine's ``last_stats``) when given."""
        self.decoded += int(tokens)
        if stats is not None:
            self.add_work(stats)

    def add_work(self, stats: GenerateStats) -> None:
        for k in WORK_KEYS:
            self.work[k] += int(getattr(stats, k, 0))


class RolloutStrategy:
    """Base: plain sampling. Subclasses override ``generate`` and, where they learn or keep state, ``observe``,
    ``metrics``, ``state_dict`` and ``load_state_dict``. Knobs go in a nested ``Config(Knobs)``."""

    class Config(Knobs):
        pass

    def __init__(self, **knobs: Any) -> None:
        for k, v in type(self).Config(**knobs).model_dump().items():
            setattr(self, k, v)
        self.setup()

    def setup(self) -> None:
        """Initialise state (after the knobs are set)."""

    @classmethod
    def check_config(cls, knobs: Any, cfg: Any) -> None:
        """Called at load with the validated ``generation.strategy`` table and the whole config: raise ValueError,
        one line naming both knobs, when a set length threshold can never trigger under ``generation.max_new_tokens``
        (thresholds left unset scale with the cap at generate time, ``SamplingParams.max_new_tokens``) or when
        another section rules the strategy out."""

    def generate(self, engine: Engine, keys: list[int], prompts: list[list[int]], counts: list[int],
                 params: SamplingParams, *, step: int) -> StrategyResult:
        """Completions for ``counts[i]`` samples of pool prompt ``keys[i]`` (token ids ``prompts[i]``)."""
        return StrategyResult(engine.generate(prompts, counts, params))

    @classmethod
    def samples_off_policy(cls, knobs: Any) -> bool:
        """Whether, with these knobs, returned tokens come from another policy than the trainer's pi_old (so an
        off-policy correction has work to do; load-time checks read it)."""
        return False

    def bind_scorer(self, scorer: Scorer) -> None:
        """Called before each ``generate`` with the round's reward function (``scorer(rows, completions)``: the
        verified reward of each completion of request row ``rows[k]``), for a strategy that ranks candidates
        before it returns (Sol-RL); the base ignores it."""

    def observe(self, keys: list[int], completions: list[Completion], rewards: list[float]) -> None:
        """The verified reward of each completion this call returned (flattened, in return order; ``extra``
        after the requested ones)."""

    def pending_keys(self) -> set[int]:
        """Pool indices of the prompts whose completions this strategy holds for a later call (APRIL's buffer):
        a rollout worker, which has no task, keeps their problems (text, reference) to verify them then."""
        return set()

    def metrics(self) -> dict[str, float]:
        return {}

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


class PlainStrategy(RolloutStrategy):
    """Independent samples of each prompt (every GRPO trainer's default)."""


KEY = "generation.strategy"  # the config slot of a strategy's knobs (error messages)


def round_half_up(x: float) -> int:
    """Round half up (Python's ``round`` rounds half to even): the rule every auto threshold uses."""
    return int(math.floor(x + 0.5))


STRATEGIES: Registry[type[RolloutStrategy]] = Registry("rollout strategy")
