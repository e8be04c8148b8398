"""V0.5-style prior fusion: a prompt prior shrinkage-fused with a few rollouts; extra rollouts on conflict.

Spec: ``shared/methods/sampling.md`` section 9. The structure is confirmed by third-party summaries; every
formula is [unverified] (no code was found), so this is the spec's reconstruction plus the choices below.

- Prior v: the stats store's EMA pass rate for the prompt (no value model here). Unseen prompt: no prior, the
  baseline is the pure empirical mean and the allocator uses the empirical MSE.
- Empirical: k positives (reward > the store's threshold) of m, r = k/m, per-rollout variance
  sigma2 = r(1-r), using r~ = (k+1/2)/(m+1) in place of r when r is 0 or 1 (never SE = 0), SE2 = sigma2/m.
- Fusion (positive-part James-Stein): b = v + lam*(r - v), lam = max(0, 1 - c*SE2/(r - v)^2); lam = 0
  when r == v.
- Predicted MSE at m' rollouts (OSLA; our choice): plug-in bias^2 d2 = max((r - v)^2 - SE2, 0), held fixed
  with sigma2 from the data so far; SE2' = sigma2/m', lam' = max(0, 1 - c*SE2'/(d2 + SE2')) (lam with the
  expected discrepancy), MSE(m') = (1 - lam')^2 d2 + lam'^2 SE2'. For c = 1 this is lam' * SE2', the
  MSE-optimal weight; without a prior MSE(m') = SE2'.
- OSLA: request ``chunk`` more while [MSE(m) - MSE(m + chunk)] / chunk > ``cost`` and m < ``max_rollouts``.
- Advantage: ``pool_baseline`` (A = r - b, no std normalisation, itself [unverified]). As in Reinforce-Ada,
  b is fitted on binarised outcomes while A uses the raw reward; identical for 0/1 rewards.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from pydantic import Field

from rollwise.components import Knobs
from rollwise.knobs import MAX_ROLLOUTS_PER_PROMPT
from rollwise.sampling.base import Allocator, Baseline, GroupObs, SampleContext


def _sigma2(k: float, m: int) -> float:
    """Per-rollout Bernoulli variance r(1-r), with r = (k+1/2)/(m+1) when the sample is all-equal."""
    r = k / m
    if r in (0.0, 1.0):
        r = (k + 0.5) / (m + 1)
    return r * (1.0 - r)


def compute_v05_fusion(k: float, m: int, v: float | None, c: float = 1.0) -> tuple[float, float]:
    """Fused baseline and weight ``(b, lam)`` for k positives of m rollouts and prior v (None = no prior:
    ``(k/m, 1)``). lam near 1 means the prior was rejected."""
    if m <= 0:
        return (0.0 if v is None else float(v)), 0.0
    r = k / m
    if v is None or math.isnan(v):
        return r, 1.0
    gap2 = (r - v) ** 2
    lam = 0.0 if gap2 == 0.0 else max(0.0, 1.0 - c * _sigma2(k, m) / m / gap2)
    return v + lam * (r - v), lam


def v05_predicted_mse(k: float, m: int, v: float | None, m_next: int, c: float = 1.0) -> float:
    """Predicted MSE of the fused baseline at ``m_next`` rollouts from k of m seen (see module doc)."""
    sigma2 = _sigma2(k, m)
    se2 = sigma2 / m_next
    if v is None or math.isnan(v):
        return se2
    d2 = max((k / m - v) ** 2 - sigma2 / m, 0.0)
    lam = max(0.0, 1.0 - c * se2 / (d2 + se2)) if d2 + se2 > 0 else 0.0
    return (1.0 - lam) ** 2 * d2 + lam**2 * se2


def _prior(ctx: SampleContext, prompt: int) -> float | None:
    v = float(ctx.stats.ema_pass[prompt])
    return None if math.isnan(v) else v


class V05Allocator(Allocator):
    """``first`` rollouts per prompt (None = the config's group size), then ``chunk`` more per round while
    the one-step look-ahead MSE gain per rollout exceeds ``cost`` (default 2e-3 [unverified]: with p = 0.5
    and no prior, sampling stops at 12 rollouts), up to ``max_rollouts``. When the budget cannot cover every
    request, the largest gains per rollout are served first."""

    class Config(Knobs):
        first: int | None = Field(4, ge=1, le=MAX_ROLLOUTS_PER_PROMPT,
                                  description="first-round rollouts per prompt (V0.5: G = 4; "
                                              "None = sampler.group_size)")
        max_rollouts: int = Field(16, ge=1, le=MAX_ROLLOUTS_PER_PROMPT, description="most rollouts per prompt per step")
        cost: float = Field(2e-3, ge=0, description="price of one rollout in MSE units (OSLA) [unverified]")
        chunk: int = Field(2, ge=1, le=MAX_ROLLOUTS_PER_PROMPT, description="rollouts added per extra round")
        c: float = Field(1.0, ge=0, description="shrinkage constant of the fusion (1 = plug-in MSE-optimal)")

    def setup(self) -> None:
        self.initial_n = self.first
        start = self.first if self.first is not None else 1
        self.max_rounds = 1 + max(math.ceil((self.max_rollouts - start) / self.chunk), 0)
        self._extra = 0

    def first_round(self, group_size: int) -> int:
        return min(self.initial_n or group_size, self.max_rollouts)

    def budget(self, prompts: int, group_size: int) -> tuple[int, int]:
        return prompts * max(self.max_rollouts, self.first_round(group_size)), \
            prompts * self.first_round(group_size) + self.chunk

    def initial(self, prompts: np.ndarray, ctx: SampleContext) -> np.ndarray:
        self._extra = 0
        return np.full(len(prompts), self.first_round(ctx.group_size), dtype=np.int64)

    def extend(self, round_index: int, pools: list[GroupObs], ctx: SampleContext) -> np.ndarray:
        thr = ctx.stats.positive_threshold
        want = np.zeros(len(pools), dtype=np.int64)
        gain = np.zeros(len(pools), dtype=np.float64)  # predicted MSE drop per extra rollout
        for i, p in enumerate(pools):
            step = min(self.chunk, self.max_rollouts - p.n)
            if step <= 0 or p.n == 0:
                continue
            k, v = float((p.rewards > thr).sum()), _prior(ctx, p.prompt)
            now = v05_predicted_mse(k, p.n, v, p.n, self.c)
            drop = now - v05_predicted_mse(k, p.n, v, p.n + step, self.c)
            if drop / step > self.cost:
                want[i], gain[i] = step, drop / step
        left = ctx.budget.left()
        out = np.zeros_like(want)
        for i in np.argsort(-gain, kind="stable"):
            if want[i] and want[i] <= left:
                out[i], left = want[i], left - want[i]
        self._extra += int(out.sum())
        return out

    def metrics(self) -> dict[str, float]:
        return {"extra_rollouts": float(self._extra)}

    def state_dict(self) -> dict[str, Any]:
        return {}  # the prior lives in the (checkpointed) stats store


class V05Baseline(Baseline):
    """b = v + lam*(r - v) per pool (:func:`compute_v05_fusion`); logs the mean lam and the prior-rejection
    rate (share of prompts with a prior whose lam > 0.5)."""

    needs_revisits = True  # acts on what earlier visits of a prompt taught it

    class Config(Knobs):
        c: float = Field(1.0, ge=0, description="shrinkage constant of the fusion (1 = plug-in MSE-optimal)")

    def setup(self) -> None:
        self._lams: list[float] = []
        self._no_prior = 0

    def compute(self, pools: list[GroupObs], ctx: SampleContext) -> list[float | None]:
        thr = ctx.stats.positive_threshold
        out: list[float | None] = []
        self._lams, self._no_prior = [], 0
        for p in pools:
            v = _prior(ctx, p.prompt)
            b, lam = compute_v05_fusion(float((p.rewards > thr).sum()), p.n, v, self.c)
            out.append(b)
            if v is None:
                self._no_prior += 1
            else:
                self._lams.append(lam)
        return out

    def metrics(self) -> dict[str, float]:
        lams = np.asarray(self._lams, dtype=np.float64)
        return {
            "lambda_mean": float(lams.mean()) if lams.size else 0.0,
            "prior_rejection_rate": float((lams > 0.5).mean()) if lams.size else 0.0,
            "no_prior": float(self._no_prior),
        }
