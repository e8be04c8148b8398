"""XRPO (eXplore-eXploit GRPO): budget-neutral phased allocation by confidence-interval shrinkage + UCB bonus.

Spec: ``shared/methods/sampling.md`` section 4 (formulas from reviews and a third-party reimplementation; the
authors' code was not available). Phase 1 gives every prompt n0 = max(2, floor(G * initial_fraction)) rollouts
(uniform: the std needs data); the rest of the step's P*G budget is spent over phases 2..``phases``, one
rollout at a time to the prompt of highest priority

    Pi_q = Delta_q + phi_q,  Delta_q = h_q(n_q) - h_q(n_q + 1),  h_q(n) = t_{1-alpha/2, n-1} * s_q / sqrt(n),
    phi_q = lam * sqrt(log(1 + T) / n_q),

re-scored after every rollout (n_q and T count the rollouts already planned). Choices for the [unverified]
items: T = total rollouts of this step so far (the UCB reading; the reimplementation uses training steps,
which would let exploration grow without bound against per-step counts); s_q = sample std (ddof=1) of raw
rewards; the extra budget is split evenly over the remaining phases (ceil, so no phase is starved);
alpha = 0.05, lam = 1.0. ICL seeding (retrieved solved neighbours prepended for all-failed prompts) is out
of scope here. Exploitation (novelty sharpening) is the ``xrpo`` advantage estimator in
``rollwise.algos.advantages``. G = 1 or 2 leaves no extra budget (n0 = G): plain GRPO.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Any

import numpy as np

from rollwise.sampling.base import Allocator, GroupObs, SampleContext


def _t_central_mass(t: float, df: int) -> float:
    """P(|T| <= t) for Student's t with integer ``df`` >= 1: the exact finite series of Abramowitz & Stegun
    26.7.3 (odd df) / 26.7.4 (even df) in theta = atan(t / sqrt(df))."""
    theta = math.atan(t / math.sqrt(df))
    s, c2 = math.sin(theta), math.cos(theta) ** 2
    if df % 2 == 1:
        if df == 1:
            return 2.0 * theta / math.pi
        term = series = math.cos(theta)
        for j in range(1, (df - 3) // 2 + 1):
            term *= (2 * j) / (2 * j + 1) * c2
            series += term
        return 2.0 / math.pi * (theta + s * series)
    term = series = 1.0
    for j in range(1, (df - 2) // 2 + 1):
        term *= (2 * j - 1) / (2 * j) * c2
        series += term
    return s * series


@lru_cache(maxsize=4096)
def t_quantile(q: float, df: int) -> float:
    """Upper quantile t_{q, df} (q in (0.5, 1), integer df >= 1) without scipy: bisection of the exact CDF
    over theta in (0, pi/2), to double precision."""
    if not 0.5 < q < 1.0 or df < 1:
        raise ValueError(f"t_quantile needs 0.5 < q < 1 and df >= 1, got q={q}, df={df}")
    target = 2.0 * q - 1.0  # central mass P(|T| <= t)
    lo, hi = 0.0, math.pi / 2
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if mid in (lo, hi):
            break
        if _t_central_mass(math.sqrt(df) * math.tan(mid), df) < target:
            lo = mid
        else:
            hi = mid
    return math.sqrt(df) * math.tan(0.5 * (lo + hi))


def ci_half_width(std: np.ndarray, n: np.ndarray, alpha: float) -> np.ndarray:
    """h(n) = t_{1-alpha/2, n-1} * std / sqrt(n) per prompt; 0 where n < 2 (no interval yet)."""
    n = np.asarray(n, dtype=np.int64)
    uniq, inv = np.unique(n, return_inverse=True)  # few distinct sizes: one cached quantile each
    t = np.array([t_quantile(1 - alpha / 2, int(k) - 1) if k >= 2 else 0.0 for k in uniq])[inv.reshape(-1)]
    return t * std / np.sqrt(np.maximum(n, 1))


def compute_xrpo_priority(std: np.ndarray, n: np.ndarray, total: int, lam: float, alpha: float) -> np.ndarray:
    """Pi_q = [h(n_q) - h(n_q + 1)] + lam * sqrt(log(1 + T) / n_q) for every prompt ([P] float)."""
    n = np.asarray(n, dtype=np.int64)
    delta = ci_half_width(std, n, alpha) - ci_half_width(std, n + 1, alpha)
    delta = np.where(n >= 2, delta, 0.0)  # s_q is undefined below two rollouts: only the bonus speaks
    return delta + lam * np.sqrt(math.log1p(total) / np.maximum(n, 1))


def allocate_by_priority(std: np.ndarray, n: np.ndarray, budget: int, lam: float, alpha: float,
                         cap: np.ndarray | None = None) -> np.ndarray:
    """Greedy one-at-a-time allocation of ``budget`` rollouts by Pi_q, re-scored after each (ties: the
    earlier prompt); ``cap`` bounds each prompt's extra rollouts. Returns [P] int extra counts."""
    n = np.asarray(n, dtype=np.int64)
    extra = np.zeros(len(n), dtype=np.int64)
    cap = np.full(len(n), np.iinfo(np.int64).max) if cap is None else np.asarray(cap, dtype=np.int64)
    total = int(n.sum())
    for _ in range(int(budget)):
        pri = compute_xrpo_priority(std, n + extra, total, lam, alpha)
        pri[extra >= cap] = -np.inf
        if not np.isfinite(pri).any():
            break
        extra[int(np.argmax(pri))] += 1
        total += 1
    return extra


class XrpoAllocator(Allocator):
    """Phase 1 uniform n0, phases 2..``phases`` by CI-shrinkage + exploration priority; P*G rollouts in all.

    ``revisit``: a prompt given nothing in phase 2 may still be chosen in phase 3. ``max_per_prompt``
    optionally caps one prompt's rollouts in a step (None = no cap).
    """

    revisit = True

    def __init__(self, phases: int = 3, initial_fraction: float = 0.5, lam: float = 1.0, alpha: float = 0.05,
                 max_per_prompt: int | None = None) -> None:
        if phases < 1 or not 0 < initial_fraction <= 1 or not 0 < alpha < 1 or lam < 0:
            raise ValueError("xrpo needs phases >= 1, 0 < initial_fraction <= 1, 0 < alpha < 1, lam >= 0")
        self.max_rounds = int(phases)
        self.initial_fraction, self.lam, self.alpha = initial_fraction, lam, alpha
        self.max_per_prompt = max_per_prompt
        self._step = -1
        self._extra_left = 0
        self._phase_extra: list[int] = []

    def initial(self, prompts: np.ndarray, ctx: SampleContext) -> np.ndarray:
        g = ctx.group_size
        n0 = max(min(2, g), int(g * self.initial_fraction))
        if ctx.step != self._step:
            self._step, self._extra_left, self._phase_extra = ctx.step, 0, []
        self._extra_left += len(prompts) * max(g - n0, 0)  # budget-neutral: P*G per step in all
        return np.full(len(prompts), n0, dtype=np.int64)

    def extend(self, round_index: int, pools: list[GroupObs], ctx: SampleContext) -> np.ndarray:
        remaining = max(self.max_rounds - round_index, 1)  # phases still to run, this one included
        share = min(-(-self._extra_left // remaining), ctx.budget.left())
        n = np.array([p.n for p in pools], dtype=np.int64)
        std = np.array([p.rewards.std(ddof=1) if p.n >= 2 else 0.0 for p in pools], dtype=np.float64)
        cap = None if self.max_per_prompt is None else np.maximum(self.max_per_prompt - n, 0)
        extra = allocate_by_priority(std, n, share, self.lam, self.alpha, cap)
        self._extra_left -= int(extra.sum())
        self._phase_extra.append(int(extra.sum()))
        return extra

    def metrics(self) -> dict[str, float]:
        out = {f"extra_phase{i}": float(k) for i, k in enumerate(self._phase_extra, start=2)}
        out["extra_unspent"] = float(self._extra_left)
        return out

    def state_dict(self) -> dict[str, Any]:
        return {}  # all allocation state is per step
