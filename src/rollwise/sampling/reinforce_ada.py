"""Reinforce-Ada (RLHFlow): successive-elimination sampling in rounds, balanced downsampling, pool baseline.

Spec: ``shared/methods/sampling.md`` section 3 (rules from the authors' code, commit ``05be605``).

- :class:`ReinforceAdaAllocator` samples ``round_size`` (M) rollouts per prompt per round for at most
  ``rounds`` (N) rounds; after each *whole* round a prompt whose pool meets the exit rule stops (never
  mid-round).
- :class:`BalancedDownsampler` keeps ``n = ctx.group_size`` rollouts per pool, in generation order, aiming at
  n/2 positives : n/2 negatives and filling from whichever pool has leftovers.
- The global baseline is ``pool_mean`` (``uniform.PoolMeanBaseline``): the binarised mean over *all*
  rollouts generated for the prompt, with the ``pool_baseline`` estimator (A = r - mean, no std, as the
  released script).

A rollout is positive iff reward > ``sampler.positive_threshold`` (the authors use 0.7), one threshold shared
by the allocator, the down-sampler and the baseline so they stay consistent.

Budget: the most a step spends is P x round_size x rounds (the default budget); a budget below one full
first round plus one more round for one prompt is refused when the config loads.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np
from pydantic import Field, model_validator

from rollwise.components import Knobs
from rollwise.knobs import MAX_ROLLOUTS_PER_PROMPT
from rollwise.sampling.base import Allocator, Downsampler, GroupObs, SampleContext

Mode = Literal["balanced", "positive_focused"]


def ada_exited(n_pos: int, n_neg: int, n: int, mode: str) -> bool:
    """The exit rule on a pool: ``balanced`` needs >= floor(n/2) positives and >= n - floor(n/2) negatives;
    ``positive_focused`` needs one positive."""
    if mode == "balanced":
        return n_pos >= n // 2 and n_neg >= n - n // 2
    return n_pos >= 1


def compute_balanced_keep(positive: np.ndarray, n: int, mode: str,
                          drop_unfinished: bool = False) -> np.ndarray:
    """Indices (ascending = generation order) of the <= n rollouts to train from one pool.

    Exited pools (and unfinished ``balanced`` ones): k_pos = min(floor(n/2), |pos|), k_neg = min(n - k_pos,
    |neg|), then fill from leftover positives. Unfinished ``positive_focused`` pools: k_pos =
    clamp(ceil(|pos|/|pool| * n), 1, n-1) (under the |pos| >= 1 exit rule such a pool has no positive, so this
    keeps n negatives). ``drop_unfinished`` keeps nothing from a pool that never produced both outcomes (the
    explicit drop option the spec recommends; the authors' code keeps such all-equal groups).
    """
    positive = np.asarray(positive, dtype=bool)
    pos, neg = np.flatnonzero(positive), np.flatnonzero(~positive)
    if drop_unfinished and (len(pos) == 0 or len(neg) == 0):
        return np.zeros(0, dtype=np.int64)
    if mode == "positive_focused" and not ada_exited(len(pos), len(neg), n, mode):
        want = math.ceil(len(pos) / max(len(positive), 1) * n)
        k_pos = min(min(max(want, 1), max(n - 1, 1)), len(pos))
    else:
        k_pos = min(n // 2, len(pos))
    k_neg = min(n - k_pos, len(neg))
    k_pos = min(len(pos), n - k_neg)  # fill from leftover positives when negatives run short
    return np.sort(np.concatenate([pos[:k_pos], neg[:k_neg]])).astype(np.int64)


class ReinforceAdaAllocator(Allocator):
    """Rounds of ``round_size`` rollouts for every still-active prompt, at most ``rounds`` rounds (N*M per
    prompt); a prompt leaves after the first whole round that meets the exit rule (``exit``).

    Budget: a round is planned only in whole rounds of M, for active prompts in selection order, while
    ``ctx.budget.left()`` allows (a partial round would break the per-round rule; the rest is left unspent).
    """

    class Config(Knobs):
        round_size: int = Field(8, ge=1, description="rollouts per active prompt per round (M; authors: 8)")
        rounds: int = Field(4, ge=1, description="most rounds per step (N; authors: 4)")
        exit: Mode = Field("balanced", description="exit rule: balanced (n/2 of each outcome) | positive_focused")

        @model_validator(mode="after")
        def _per_prompt(self) -> ReinforceAdaAllocator.Config:
            if self.round_size * self.rounds > MAX_ROLLOUTS_PER_PROMPT:
                raise ValueError(f"round_size x rounds = {self.round_size * self.rounds} rollouts for one prompt in "
                                 f"a step; at most {MAX_ROLLOUTS_PER_PROMPT}")
            return self

    def setup(self) -> None:
        self.max_rounds = self.rounds
        self._step = -1
        self._active: list[int] = []  # prompts sampled in each round of the current step

    def budget(self, prompts: int, group_size: int) -> tuple[int, int]:
        return prompts * self.round_size * self.rounds, (prompts + 1) * self.round_size

    def first_round(self, group_size: int) -> int:
        return self.round_size

    def initial(self, prompts: np.ndarray, ctx: SampleContext) -> np.ndarray:
        if ctx.step != self._step:
            self._step, self._active = ctx.step, []
        self._active.append(len(prompts))
        return np.full(len(prompts), self.round_size, dtype=np.int64)

    def extend(self, round_index: int, pools: list[GroupObs], ctx: SampleContext) -> np.ndarray:
        thr, n = ctx.stats.positive_threshold, ctx.group_size
        out = np.zeros(len(pools), dtype=np.int64)
        affordable = ctx.budget.left() // self.round_size
        for i, p in enumerate(pools):
            n_pos = int((p.rewards > thr).sum())
            if affordable > 0 and not ada_exited(n_pos, p.n - n_pos, n, self.exit):
                out[i] = self.round_size
                affordable -= 1
        if out.any():
            self._active.append(int((out > 0).sum()))
        return out

    def metrics(self) -> dict[str, float]:
        out: dict[str, float] = {"rounds": float(len(self._active))}
        for r, k in enumerate(self._active, start=1):
            out[f"active_round{r}"] = float(k)
        return out

    def state_dict(self) -> dict[str, Any]:
        return {}  # nothing persists across steps (the pools are per step)


class BalancedDownsampler(Downsampler):
    """Keep ``ctx.group_size`` rollouts per pool with enforced reward diversity (first-come, not random);
    see :func:`compute_balanced_keep`. ``mode`` should match the allocator's ``exit``."""

    class Config(Knobs):
        mode: Mode = Field("balanced", description="keep rule; should match the allocator's exit")
        drop_unfinished: bool = Field(False, description="train nothing from a pool that never produced both "
                                      "outcomes (the authors keep it, with all-zero advantages)")

    def setup(self) -> None:
        self._dropped = 0
        self._unfinished = 0

    def select(self, pools: list[GroupObs], ctx: SampleContext) -> list[np.ndarray]:
        thr, n = ctx.stats.positive_threshold, ctx.group_size
        kept: list[np.ndarray] = []
        unfinished = 0
        for p in pools:
            positive = p.rewards > thr
            n_pos = int(positive.sum())
            unfinished += not ada_exited(n_pos, p.n - n_pos, n, self.mode)
            kept.append(compute_balanced_keep(positive, n, self.mode, self.drop_unfinished))
        self._dropped = sum(len(k) == 0 for k in kept)
        self._unfinished = unfinished
        return kept

    def metrics(self) -> dict[str, float]:
        return {"unfinished": float(self._unfinished), "dropped": float(self._dropped)}
