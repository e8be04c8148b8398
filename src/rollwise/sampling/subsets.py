"""Trained subsets of a larger generated pool: the vote/train split of test-time RL and the contrastive
best/worst selection of Sol-RL.

- :class:`VoteSplit` (TTRL, arXiv:2504.16084): N rollouts per prompt vote for the pseudo-label (all N are
  rewarded), only M <= N are trained. TTRL's ``_select_top_k_per_prompt`` takes indices 0..M-1 (``pick =
  "first"``); ETTRL's tree leaves (arXiv:2508.11356) are trained as a random M (``pick = "random"``, the spec's
  assumption: the paper does not say). Advantages are computed over the M trained rows alone
  (``estimate_on_kept``), as TTRL computes GRPO after the selection.
- :func:`compute_contrastive_keep` (Sol-RL, arXiv:2604.06916, ``select_indices_by_mode("best_worst")``): the top
  floor(K/2) and bottom K - floor(K/2) rewards of a pool, ties broken at random within a reward level, so with
  binary rewards the subset is floor(K/2) correct + the rest incorrect where available (a balanced group).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field

from rollwise.components import Knobs
from rollwise.knobs import MAX_ROLLOUTS_PER_PROMPT
from rollwise.sampling.base import Downsampler, GroupObs, SampleContext


def compute_contrastive_keep(rewards: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """Indices (ascending) of the best floor(k/2) and worst k - floor(k/2) of ``rewards`` [n], ties at random.

    A random permutation is ranked with a stable sort, so equal rewards are ordered at random; the best are
    taken first from the top, then the worst from the bottom of what is left (a pool of n <= k keeps all)."""
    n = len(rewards)
    if n <= k:
        return np.arange(n)
    perm = rng.permutation(n)
    ranked = perm[np.argsort(-np.asarray(rewards, dtype=np.float64)[perm], kind="stable")]  # best first
    top = k // 2
    return np.sort(np.concatenate([ranked[:top], ranked[n - (k - top):]]))


class VoteSplit(Downsampler):
    """Train M of each pool's N rollouts (TTRL's vote/train split; module docstring)."""

    estimate_on_kept = True

    class Config(Knobs):
        m: int | None = Field(None, ge=2, le=MAX_ROLLOUTS_PER_PROMPT,
                              description="rollouts trained per prompt (None = sampler.group_size)")
        pick: Literal["first", "random"] = Field("first", description="which M: the first in generation order "
                                                 "(TTRL's code) or a seeded random M (ETTRL's tree leaves)")

    def setup(self) -> None:
        self._voted = self._kept = 0

    def select(self, pools: list[GroupObs], ctx: SampleContext) -> list[np.ndarray]:
        m = self.m or ctx.group_size
        out = []
        for p in pools:
            if p.n <= m:
                keep = np.arange(p.n)
            elif self.pick == "first":
                keep = np.arange(m)
            else:
                keep = np.sort(ctx.rng.choice(p.n, size=m, replace=False))
            out.append(keep.astype(np.int64))
        self._voted = sum(p.n for p in pools)
        self._kept = sum(len(k) for k in out)
        return out

    def metrics(self) -> dict[str, float]:
        """Rollouts that voted (generated) and that were trained, this step."""
        return {"voted": float(self._voted), "trained": float(self._kept)}
