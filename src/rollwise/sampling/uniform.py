"""The baseline components: uniform prompt selection over shuffled epochs and a fixed group size."""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import Field

from rollwise.components import Knobs
from rollwise.knobs import MAX_ROLLOUTS_PER_PROMPT
from rollwise.sampling.base import Allocator, Baseline, Downsampler, GroupObs, SampleContext, Selector, Transform


class UniformSelector(Selector):
    """Uniform without replacement: walk a seeded random permutation of the pool, reshuffling each epoch."""

    skips_excluded = True  # an excluded prompt (in flight) is passed in the walk, never drawn and dropped

    def setup(self) -> None:
        self._order: np.ndarray | None = None
        self._cursor = 0
        self.epoch = 0

    def select(self, k: int, ctx: SampleContext) -> np.ndarray:
        n = ctx.stats.size
        if self._order is None:
            self._order = ctx.rng.permutation(n)
        excluded = set() if ctx.exclude is None else set(ctx.exclude.tolist())
        out: list[int] = []
        chosen: set[int] = set()  # membership in O(1): a refill may ask for thousands of prompts
        scanned = 0
        while len(out) < k and scanned < 2 * n:
            if self._cursor >= n:
                self._order, self._cursor = ctx.rng.permutation(n), 0
                self.epoch += 1
            take = self._order[self._cursor : self._cursor + (k - len(out))]
            self._cursor += len(take)
            scanned += len(take)
            for x in take.tolist():
                if x not in excluded and x not in chosen:
                    chosen.add(x)
                    out.append(x)
        return np.array(out, dtype=np.int64)

    def metrics(self) -> dict[str, float]:
        return {"epoch": self.epoch}

    def state_dict(self) -> dict[str, Any]:
        return {"order": self._order, "cursor": self._cursor, "epoch": self.epoch}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._order, self._cursor, self.epoch = state["order"], state["cursor"], state["epoch"]


class FixedAllocator(Allocator):
    """The same number of rollouts for every prompt: G (default), a fixed ``n`` (BroRL's large N), plus
    ``extra`` (MC-GRPO samples G+1 and drops the median pivot)."""

    class Config(Knobs):
        n: int | None = Field(None, ge=1, le=MAX_ROLLOUTS_PER_PROMPT,
                              description="rollouts per prompt (None = sampler.group_size)")
        extra: int = Field(0, ge=0, le=MAX_ROLLOUTS_PER_PROMPT, description="rollouts added to n (MC-GRPO's +1)")

    def per_prompt(self, group_size: int) -> int:
        return (self.n or group_size) + self.extra

    def budget(self, prompts: int, group_size: int) -> tuple[int, int]:
        return prompts * self.per_prompt(group_size), self.per_prompt(group_size)

    def first_round(self, group_size: int) -> int:
        return self.per_prompt(group_size)

    def initial(self, prompts: np.ndarray, ctx: SampleContext) -> np.ndarray:
        return np.full(len(prompts), self.per_prompt(ctx.group_size), dtype=np.int64)


class KeepAll(Downsampler):
    """Train every generated rollout."""


class NoBaseline(Baseline):
    """No external baseline: the advantage estimator uses the group's own statistics."""


class PoolMeanBaseline(Baseline):
    """Mean reward over every rollout generated for the prompt this step (all rounds), so a downsampled
    group keeps the unbiased pool's centre (Reinforce-Ada's global baseline; binarised at the sampler's
    positive threshold as in the authors' code)."""

    class Config(Knobs):
        binarize: bool = Field(True, description="average 0/1 outcomes (reward > sampler.positive_threshold)")

    def compute(self, pools: list[GroupObs], ctx: SampleContext) -> list[float | None]:
        thr = ctx.stats.positive_threshold
        out: list[float | None] = []
        for p in pools:
            r = (p.rewards > thr).astype(np.float64) if self.binarize else p.rewards
            out.append(float(r.mean()) if p.n > 1 else 0.0)
        return out


class DropMinAbs(Downsampler):
    """MC-GRPO's control arm (the authors' ``mc = False``): of G+1 rollouts, drop the one with the smallest
    |reward| (the first in generation order on ties) and train the other G with the configured estimator,
    computed over those G alone (``estimate_on_kept``)."""

    estimate_on_kept = True

    def select(self, pools: list[GroupObs], ctx: SampleContext) -> list[np.ndarray]:
        out = []
        for p in pools:
            drop = int(np.argmin(np.abs(p.rewards))) if p.n else -1
            out.append(np.array([i for i in range(p.n) if i != drop], dtype=np.int64))
        return out


class NoTransform(Transform):
    """Every prompt is shown as it is."""
