"""MSSR's sampler side (Liu et al., "Stable and Efficient Single-Rollout RL for Multimodal Reasoning",
arXiv:2512.18215): one rollout per prompt, contrasted with a per-prompt Beta-conjugate success baseline.

Spec: ``shared/methods/generation.md`` section 14 (read from the paper's summaries; details [unverified]).
Each prompt carries a Beta(alpha, beta) posterior over its success probability, starting at the prior
(``prior_alpha``, ``prior_beta``). Before a step's update the baseline is its mean

    v_hat = alpha / (alpha + beta)          (the state *before* this step's outcomes: never its own reward)

and after the update every pool's outcomes are folded in, k successes (reward > the sampler's threshold)
of n rollouts: alpha <- decay * alpha + k, beta <- decay * beta + (n - k). ``decay`` = 1 is the plain
conjugate update the spec names; below 1 the counts forget geometrically, so the baseline tracks a moving
policy (SPO's discounted tracker; our option, off by default). The advantage A = R - v_hat, batch-normalised,
and the entropy shaping are the ``pool_baseline`` estimator (``batch_norm``) and the ``mssr_entropy`` shaper
in ``rollwise.algos``; the ``mssr`` preset composes them.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import Field

from rollwise.components import Knobs
from rollwise.sampling.base import Baseline, GroupObs, SampleContext, TrainGroup


def compute_beta_update(alpha: np.ndarray, beta: np.ndarray, successes: np.ndarray, failures: np.ndarray,
                        decay: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Posterior counts after one observation per row: (decay * alpha + k, decay * beta + (n - k)), all [P]."""
    return decay * alpha + successes, decay * beta + failures


class BetaBaseline(Baseline):
    """v_hat = alpha / (alpha + beta) per prompt from a Beta posterior updated after each observation (MSSR).

    State: the posterior counts of every pool prompt (two float arrays the size of the pool, allocated on
    first use), checkpointed, so a restored baseline returns the same v_hat."""

    needs_revisits = True  # acts on what earlier visits of a prompt taught it

    single_rollout = True

    class Config(Knobs):
        prior_alpha: float = Field(1.0, gt=0, description="prior pseudo-successes (Beta(1, 1): v_hat starts at 0.5)")
        prior_beta: float = Field(1.0, gt=0, description="prior pseudo-failures")
        decay: float = Field(1.0, gt=0, le=1, description="forgetting factor on the counts before each update "
                             "(1 = the plain conjugate update)")

    def setup(self) -> None:
        self._alpha: np.ndarray | None = None  # [N] posterior counts
        self._beta: np.ndarray | None = None
        self._last: tuple[float, float] = (0.0, 0.0)  # (mean v_hat, mean |r - v_hat|) of the last compute

    def _counts(self, size: int) -> tuple[np.ndarray, np.ndarray]:
        if self._alpha is None:
            self._alpha = np.full(size, self.prior_alpha, dtype=np.float64)
            self._beta = np.full(size, self.prior_beta, dtype=np.float64)
        assert self._beta is not None
        return self._alpha, self._beta

    def value(self, prompts: np.ndarray, size: int) -> np.ndarray:
        """[P] v_hat of ``prompts`` (pool indices) from the current posterior."""
        a, b = self._counts(size)
        return a[prompts] / (a[prompts] + b[prompts])

    def compute(self, pools: list[GroupObs], ctx: SampleContext) -> list[float | None]:
        prompts = np.array([p.prompt for p in pools], dtype=np.int64)
        v = self.value(prompts, ctx.stats.size)  # [P]
        if len(pools):
            resid = np.concatenate([np.abs(p.rewards - vi) for p, vi in zip(pools, v)])
            self._last = (float(v.mean()), float(resid.mean()) if resid.size else 0.0)
        return [float(x) for x in v]

    def observe(self, ctx: SampleContext, pools: list[GroupObs], trained: list[TrainGroup],
                losses: np.ndarray | None = None) -> None:
        if not pools:
            return
        a, b = self._counts(ctx.stats.size)
        thr = ctx.stats.positive_threshold
        prompts = np.array([p.prompt for p in pools], dtype=np.int64)  # distinct: one pool per prompt
        k = np.array([(p.rewards > thr).sum() for p in pools], dtype=np.float64)
        n = np.array([p.n for p in pools], dtype=np.float64)
        a[prompts], b[prompts] = compute_beta_update(a[prompts], b[prompts], k, n - k, self.decay)

    def metrics(self) -> dict[str, float]:
        seen = 0 if self._alpha is None else int(((self._alpha != self.prior_alpha)
                                                 | (self._beta != self.prior_beta)).sum())
        return {"v_hat_mean": self._last[0], "residual_abs_mean": self._last[1], "prompts_tracked": float(seen)}

    def state_dict(self) -> dict[str, Any]:
        return {"alpha": self._alpha, "beta": self._beta}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        a, b = state["alpha"], state["beta"]
        self._alpha = None if a is None else np.array(a, dtype=np.float64)
        self._beta = None if b is None else np.array(b, dtype=np.float64)
