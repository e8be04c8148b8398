"""The baseline components: uniform prompt selection over shuffled epochs and a fixed group size."""

from __future__ import annotations

from typing import Any

import numpy as np

from rollwise.sampling.base import Allocator, Baseline, Downsampler, GroupObs, SampleContext, Selector


class UniformSelector(Selector):
    """Uniform without replacement: walk a seeded random permutation of the pool, reshuffling each epoch."""

    def __init__(self) -> None:
        self._order: np.ndarray | None = None
        self._cursor = 0
        self.epoch = 0

    def select(self, k: int, ctx: SampleContext) -> np.ndarray:
        n = ctx.stats.size
        if self._order is None:
            self._order = ctx.rng.permutation(n)
        excluded = set() if ctx.exclude is None else set(int(x) for x in ctx.exclude)
        out: list[int] = []
        scanned = 0
        while len(out) < k and scanned < 2 * n:
            if self._cursor >= n:
                self._order, self._cursor = ctx.rng.permutation(n), 0
                self.epoch += 1
            take = self._order[self._cursor : self._cursor + (k - len(out))]
            self._cursor += len(take)
            scanned += len(take)
            out.extend(int(x) for x in take if int(x) not in excluded and int(x) not in out)
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

    def __init__(self, n: int | None = None, extra: int = 0) -> None:
        if n is not None and n < 1:
            raise ValueError("fixed allocator n must be >= 1")
        self.n, self.extra = n, extra

    def initial(self, prompts: np.ndarray, ctx: SampleContext) -> np.ndarray:
        return np.full(len(prompts), (self.n or ctx.group_size) + self.extra, dtype=np.int64)


class KeepAll(Downsampler):
    """Train every generated rollout."""


class NoBaseline(Baseline):
    """No external baseline: the advantage estimator uses the group's own statistics."""


class PoolMeanBaseline(Baseline):
    """Mean reward over every rollout generated for the prompt this step (all rounds), so a downsampled
    group keeps the unbiased pool's centre (Reinforce-Ada's global baseline; binarised at the store's
    positive threshold as in the authors' code)."""

    def __init__(self, binarize: bool = True) -> None:
        self.binarize = binarize

    def compute(self, pools: list[GroupObs], ctx: SampleContext) -> list[float | None]:
        thr = ctx.stats.positive_threshold
        out: list[float | None] = []
        for p in pools:
            r = (p.rewards > thr).astype(np.float64) if self.binarize else p.rewards
            out.append(float(r.mean()) if p.n > 1 else 0.0)
        return out
