"""D3S (Dynamic Dual-level Down-Sampling): train the rollouts of maximal advantage variance and, inside them,
the top-K tokens by |A|*entropy, with both budgets relaxing over training.

Spec: ``shared/methods/sampling.md`` section 11 (paper via summaries). Sample level here; the token mask is
``rollwise.algos.d3s.compute_d3s_token_mask``, driven by :meth:`D3sDownsampler.token_fraction`.

- Advantages are the configured estimator's, computed by the pipeline over each full pool (``ctx.advantages``;
  numpy GRPO when none is injected). They are *not* renormalised after selection: the kept rows train with
  the advantages of their whole pool, and a replayed group keeps those it had when generated.
- The max-variance subset of a fixed size is an extremes split: sort, try top-k + bottom-(N-k) for k = 0..N.
- Schedule: [N_s, K] = (1-p)[n_init, k_init] + p[n_final, k_final], p = ctx.progress. N_s and K are
  *fractions* (of each group's rollouts, or of the batch's when ``cross_group``; of the kept valid tokens).
  The endpoints are [unverified] in the spec (the summary says "< 20% of tokens"); our defaults keep 50% of
  rollouts and 20% of tokens at the start, relaxing linearly to everything at the end.
- Cross-group (the D3S default) selects over the whole batch, so a group may keep few or no rollouts (a
  group with none is not trained). Across data-parallel ranks this needs a global gather of advantages.
"""

from __future__ import annotations

import math

import numpy as np
from pydantic import Field

from rollwise.components import Knobs
from rollwise.sampling.base import Downsampler, GroupObs, SampleContext, estimate_grpo


def max_variance_subset(values: np.ndarray, size: int) -> np.ndarray:
    """Indices (ascending) of ``size`` values with the largest variance, via the best extremes split.

    Ties between splits go to the fewest top values; equal values follow a stable ascending sort (the bottom
    takes their lower indices first, the top their higher ones), so the choice is deterministic.
    """
    v = np.asarray(values, dtype=np.float64)
    n = v.size
    size = min(max(int(size), 0), n)
    if size == n:
        return np.arange(n, dtype=np.int64)
    if size == 0:
        return np.zeros(0, dtype=np.int64)
    order = np.argsort(v, kind="stable")
    s = v[order] - v.mean()  # centred: the prefix-sum variance below stays accurate
    c1 = np.concatenate([[0.0], np.cumsum(s)])
    c2 = np.concatenate([[0.0], np.cumsum(s * s)])
    k = np.arange(size + 1)  # how many come from the top
    total = c1[size - k] + c1[n] - c1[n - k]
    sq = c2[size - k] + c2[n] - c2[n - k]
    var = sq / size - (total / size) ** 2
    best = int(np.argmax(var >= var.max() - 1e-12 * max(1.0, abs(var.max()))))
    return np.sort(np.concatenate([order[: size - best], order[n - best :]])).astype(np.int64)


def _count(fraction: float, n: int) -> int:
    """ceil(fraction * n), at least min(2, n) so a kept group still has a contrast, at most n."""
    return min(n, max(min(2, n), math.ceil(fraction * n - 1e-9)))


class D3sDownsampler(Downsampler):
    """Keep the max-advantage-variance rollouts on a schedule; report the scheduled token fraction."""

    class Config(Knobs):
        n_init: float = Field(0.5, gt=0, le=1, description="share of rollouts kept at the start [unverified]")
        n_final: float = Field(1.0, gt=0, le=1, description="share of rollouts kept at the end")
        k_init: float = Field(0.2, gt=0, le=1, description="share of tokens kept at the start (< 20% per summary)")
        k_final: float = Field(1.0, gt=0, le=1, description="share of tokens kept at the end")
        cross_group: bool = Field(True, description="select over the whole batch (D3S default), not per group")

    def setup(self) -> None:
        self._kept_share = 1.0

    def schedule(self, ctx: SampleContext) -> tuple[float, float]:
        """(sample fraction N_s, token fraction K) at ``ctx.progress``."""
        p = ctx.progress
        return (1 - p) * self.n_init + p * self.n_final, (1 - p) * self.k_init + p * self.k_final

    def select(self, pools: list[GroupObs], ctx: SampleContext) -> list[np.ndarray]:
        frac, _ = self.schedule(ctx)
        advs = ctx.advantages
        if advs is None:
            advs = [a for a, _ in estimate_grpo(pools, [None] * len(pools))]
        if not self.cross_group:
            kept = [max_variance_subset(a, _count(frac, a.size)) for a in advs]
        else:
            sizes = np.array([a.size for a in advs], dtype=np.int64)
            flat = np.concatenate(advs) if advs else np.zeros(0)
            chosen = max_variance_subset(flat, _count(frac, flat.size))
            owner = np.repeat(np.arange(len(pools)), sizes)  # [N] pool of each flat row
            offset = np.concatenate([[0], np.cumsum(sizes)[:-1]]) if len(pools) else np.zeros(0, np.int64)
            kept = [chosen[owner[chosen] == g] - offset[g] for g in range(len(pools))]
        total = sum(p.n for p in pools)
        self._kept_share = sum(len(k) for k in kept) / total if total else 1.0
        return kept

    def token_fraction(self, ctx: SampleContext) -> float | None:
        return self.schedule(ctx)[1]

    def metrics(self) -> dict[str, float]:
        return {"kept_share": float(self._kept_share)}
