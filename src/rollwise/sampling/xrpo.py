"""XRPO (eXplore-eXploit GRPO): budget-neutral phased allocation by confidence-interval shrinkage + UCB bonus.

Spec: ``shared/methods/sampling.md`` section 4 (formulas from reviews and a third-party reimplementation; the
authors' code was not available). Phase 1 gives every prompt n0 = max(2, floor(G * initial_fraction)) rollouts
(uniform: the std needs data); the rest of the step's P*G budget is spent over phases 2..``phases``, each
rollout of a phase going to the prompt of highest priority

    Pi_q(n) = Delta_q(n) + phi(n),   Delta_q(n) = h_q(n) - h_q(n + 1),   phi(n) = lam * sqrt(log(1 + T) / n),
    h_q(n) = t_{1-alpha/2, n-1} * s_q / sqrt(n),

scored at n = n_q + (rollouts already given to q in this phase), one rollout at a time. Choices for the
[unverified] items: T = the rollouts of this step planned before the phase starts (the UCB reading, "total
rollouts so far", frozen per phase; the reimplementation uses training steps, which would let exploration
grow without bound against per-step counts); s_q = sample std (ddof=1) of the raw rewards so far; the extra
budget is split evenly over the remaining phases (ceil, so no phase is starved); alpha = 0.05, lam = 1.0.
Exploitation (novelty sharpening) is the ``xrpo`` advantage estimator in ``rollwise.algos.advantages``.
G = 1 or 2 leaves no extra budget (n0 = G): plain GRPO.

Why T is frozen per phase (it used to count every rollout planned, so it grew by one after each pick): a
phase is one generation call, and nothing planned in it has been observed when it is planned, so the
phase-start count is the evidence the decision rests on. It also makes Pi_q depend on q's own count only,
and since Pi_q is non-increasing in n for n >= 2 (s_q * [t_{n-1}/sqrt(n) - t_n/sqrt(n+1)] shrinks as n
grows, phi shrinks), the one-at-a-time greedy *equals* taking the phase's ``budget`` largest marginal
priorities Pi_q(n_q + j) over all (prompt, j) pairs, ties to the earlier prompt: a top-k of a [P, width]
matrix instead of ``budget`` re-scorings of every prompt (:func:`allocate_by_priority`; the greedy is kept
in the tests as the reference). The effect of freezing is small: within a phase log(1 + T) moves by
log((T + budget) / T), the same factor for every prompt.

In-context seeding (:class:`XrpoIclSeeding`, the ``xrpo_icl`` transform): a prompt all of whose rollouts so
far have failed is shown ``k`` solved neighbours first. Choices for the [unverified] items: "similar" = the
same difficulty level (``ctx.levels``; the authors use Qwen3-Embedding-8B neighbours, no embedding model here),
drawn at random from a per-level corpus of verified solutions of *training* prompts (never eval items); the
seeded rollouts are trained on the prompt they were sampled with (context included), which keeps the
update on-policy rather than importance-correcting a context-free prompt.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from functools import lru_cache
from typing import Any

import numpy as np
from pydantic import Field

from rollwise.components import Knobs
from rollwise.knobs import MAX_ROLLOUTS_PER_PROMPT
from rollwise.sampling.base import Allocator, GroupObs, SampleContext, TrainGroup, Transform


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
    """h(n) = t_{1-alpha/2, n-1} * std / sqrt(n), elementwise (``std`` broadcasts against ``n``, any shape);
    0 where n < 2 (no interval yet)."""
    n = np.asarray(n, dtype=np.int64)
    uniq, inv = np.unique(n, return_inverse=True)  # few distinct sizes: one cached quantile each
    t = np.array([t_quantile(1 - alpha / 2, int(k) - 1) if k >= 2 else 0.0 for k in uniq])[inv.reshape(n.shape)]
    return t * std / np.sqrt(np.maximum(n, 1))


def compute_xrpo_priority(std: np.ndarray, n: np.ndarray, total: int, lam: float, alpha: float) -> np.ndarray:
    """Pi_q = [h(n_q) - h(n_q + 1)] + lam * sqrt(log(1 + T) / n_q), elementwise (``std`` [P] with ``n`` [P], or
    ``std`` [P, 1] with ``n`` [P, W]); ``total`` is T."""
    n = np.asarray(n, dtype=np.int64)
    delta = ci_half_width(std, n, alpha) - ci_half_width(std, n + 1, alpha)
    delta = np.where(n >= 2, delta, 0.0)  # s_q is undefined below two rollouts: only the bonus speaks
    return delta + lam * np.sqrt(math.log1p(total) / np.maximum(n, 1))


def compute_marginal_priorities(std: np.ndarray, n: np.ndarray, width: int, total: int, lam: float,
                                alpha: float) -> np.ndarray:
    """[P, width] Pi_q(n_q + j): the priority of prompt q's (j+1)-th extra rollout with T = ``total`` fixed."""
    n = np.asarray(n, dtype=np.int64)
    grid = n[:, None] + np.arange(width, dtype=np.int64)  # [P, W]
    return compute_xrpo_priority(np.asarray(std, dtype=np.float64)[:, None], grid, total, lam, alpha)


def _top_k(flat: np.ndarray, k: int) -> np.ndarray:
    """Boolean mask of the ``k`` largest finite entries of ``flat``, ties to the lower index (what a greedy
    taking the first argmax would pick); every finite entry when there are at most ``k``."""
    finite = np.isfinite(flat)
    if int(finite.sum()) <= k:
        return finite
    v = np.partition(flat, flat.size - k)[flat.size - k]  # the k-th largest value
    take = flat > v
    take[np.flatnonzero(flat == v)[: k - int(take.sum())]] = True
    return take


def allocate_by_priority(std: np.ndarray, n: np.ndarray, budget: int, lam: float, alpha: float,
                         cap: np.ndarray | None = None) -> np.ndarray:
    """One phase: ``budget`` rollouts, each to the prompt of highest Pi_q at its count so far, with T = n.sum()
    fixed for the phase; ties go to the earlier prompt; ``cap`` [P] bounds each prompt's extra rollouts.
    Returns [P] int extra counts.

    Exactly the one-at-a-time greedy, computed as a top-k: every Pi_q(n_q + j) sequence is non-increasing in
    j (checked, see the module docstring), so the greedy picks the ``budget`` largest marginal priorities in
    (value desc, prompt asc, j asc) order. The matrix starts at twice the even share per prompt and doubles
    while some prompt takes its whole row (entries past a row that was not used up cannot be taken).
    """
    n = np.asarray(n, dtype=np.int64)
    std = np.asarray(std, dtype=np.float64)
    budget = max(int(budget), 0)
    limit = np.full(len(n), budget, dtype=np.int64) if cap is None else np.clip(cap, 0, budget).astype(np.int64)
    total = int(n.sum())
    if budget == 0 or not limit.any():
        return np.zeros(len(n), dtype=np.int64)
    if (n[limit > 0] < 2).any():  # Pi rises from n = 1 to 2 (Delta switches on): not a top-k, run the greedy
        return _allocate_greedy(std, n, budget, lam, alpha, limit, total)
    most = int(limit.max())
    width = min(most, 2 * -(-budget // len(n)))
    while True:
        pri = compute_marginal_priorities(std, n, width, total, lam, alpha)  # [P, W]
        if not (np.diff(pri, axis=1) <= 0).all():  # never seen for n >= 2; exactness before speed
            return _allocate_greedy(std, n, budget, lam, alpha, limit, total)
        pri[np.arange(width) >= limit[:, None]] = -np.inf  # past the cap
        extra = _top_k(pri.ravel(), budget).reshape(pri.shape).sum(axis=1)
        if width == most or not ((extra == width) & (limit > width)).any():
            return extra
        width = min(2 * width, most)


def _allocate_greedy(std: np.ndarray, n: np.ndarray, budget: int, lam: float, alpha: float, limit: np.ndarray,
                     total: int) -> np.ndarray:
    """The definition, for priorities that are not monotone (a prompt below two rollouts): one rollout at a
    time to the first argmax of Pi_q(n_q + extra_q), T = ``total`` fixed. O(budget * P)."""
    extra = np.zeros(len(n), dtype=np.int64)
    for _ in range(budget):
        pri = compute_xrpo_priority(std, n + extra, total, lam, alpha)
        pri[extra >= limit] = -np.inf
        if not np.isfinite(pri).any():
            break
        extra[int(np.argmax(pri))] += 1
    return extra


def pool_std(pools: list[GroupObs]) -> np.ndarray:
    """[P] sample std (ddof=1) of each pool's rewards, 0 below two rollouts (one pass over all rewards)."""
    n = np.array([p.n for p in pools], dtype=np.int64)
    if not n.sum():
        return np.zeros(len(pools), dtype=np.float64)
    r = np.concatenate([p.rewards for p in pools]).astype(np.float64)  # [sum n]
    ids = np.repeat(np.arange(len(pools)), n)
    mean = np.bincount(ids, r, minlength=len(pools)) / np.maximum(n, 1)
    ss = np.bincount(ids, (r - mean[ids]) ** 2, minlength=len(pools))
    return np.where(n >= 2, np.sqrt(ss / np.maximum(n - 1, 1)), 0.0)


class XrpoAllocator(Allocator):
    """Phase 1 uniform n0, phases 2..``phases`` by CI-shrinkage + exploration priority; P*G rollouts in all.

    ``revisit``: a prompt given nothing in phase 2 may still be chosen in phase 3. ``max_per_prompt``
    optionally caps one prompt's rollouts in a step (None = no cap).
    """

    revisit = True

    class Config(Knobs):
        phases: int = Field(3, ge=1, description="allocation phases per step; the first is uniform (XRPO: 3)")
        initial_fraction: float = Field(0.5, gt=0, le=1, description="phase-1 share of G per prompt (n0 >= 2)")
        lam: float = Field(1.0, ge=0, description="exploration bonus scale lambda [unverified]")
        alpha: float = Field(0.05, gt=0, lt=1, description="confidence level of the CI [unverified]")
        max_per_prompt: int | None = Field(None, ge=2, le=MAX_ROLLOUTS_PER_PROMPT,
                                           description="cap on one prompt's rollouts in a step")

    def setup(self) -> None:
        self.max_rounds = self.phases
        self._step = -1
        self._extra_left = 0
        self._phase_extra: list[int] = []

    def first_round(self, group_size: int) -> int:
        return max(min(2, group_size), int(group_size * self.initial_fraction))

    def budget(self, prompts: int, group_size: int) -> tuple[int, int]:
        return prompts * group_size, prompts * self.first_round(group_size) + 1

    def initial(self, prompts: np.ndarray, ctx: SampleContext) -> np.ndarray:
        g = ctx.group_size
        n0 = self.first_round(g)
        if ctx.step != self._step:
            self._step, self._extra_left, self._phase_extra = ctx.step, 0, []
        self._extra_left += len(prompts) * max(g - n0, 0)  # budget-neutral: P*G per step in all
        return np.full(len(prompts), n0, dtype=np.int64)

    def extend(self, round_index: int, pools: list[GroupObs], ctx: SampleContext) -> np.ndarray:
        remaining = max(self.max_rounds - round_index, 1)  # phases still to run, this one included
        share = min(-(-self._extra_left // remaining), ctx.budget.left())
        n = np.array([p.n for p in pools], dtype=np.int64)
        std = pool_std(pools)
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


class XrpoIclSeeding(Transform):
    """XRPO's in-context seeding: an all-wrong prompt is shown ``k`` solved neighbours of its level first.

    A prompt counts as all-wrong when every rollout of it so far failed and there are at least
    ``min_failures`` of them (this step's pool, else its history in the stats store). The corpus keeps the
    latest verified solution of up to ``capacity`` training prompts per level (FIFO), and is checkpointed.
    A context is a tuple of ``(pool index, solution text)`` pairs; the trainer renders it before the prompt.
    """

    needs_revisits = True  # acts on what earlier visits of a prompt taught it

    class Config(Knobs):
        k: int = Field(2, ge=1, description="solved neighbours shown (XRPO: 2)")
        min_failures: int = Field(4, ge=1, description="failed rollouts (none solved) before a prompt is seeded")
        capacity: int = Field(256, ge=1, description="solutions kept per level in the corpus")
        max_chars: int = Field(200, ge=1, description="a longer solution is truncated to this many characters")

    def setup(self) -> None:
        self._corpus: dict[int, OrderedDict[int, str]] = {}  # level -> {pool index: solution text}
        self._seeded = 0  # prompts seeded this step
        self._seeded_last = 0  # ... in the last finished step (reported)

    def _level(self, ctx: SampleContext, prompt: int) -> int:
        return int(ctx.levels[prompt]) if ctx.levels is not None else 0

    def contexts(self, prompts: np.ndarray, pools: dict[int, GroupObs], ctx: SampleContext) -> list[Any] | None:
        thr, st = ctx.stats.positive_threshold, ctx.stats
        out: list[Any] = []
        keys: dict[int, list[int]] = {}  # level -> solved prompts, built once per call
        for p in (int(x) for x in prompts):
            pool = pools.get(p)
            if pool is not None and pool.n:
                failed = pool.n >= self.min_failures and not bool((pool.rewards > thr).any())
            else:
                failed = st.attempts[p] >= self.min_failures and st.successes[p] == 0
            level = self._level(ctx, p)
            if not failed or level not in self._corpus:
                out.append(None)
                continue
            corpus = self._corpus[level]
            solved = keys.setdefault(level, list(corpus))
            others = len(solved) - (p in corpus)
            if others <= 0:
                out.append(None)
                continue
            # k distinct neighbours other than p: draw k+1 positions and drop p's if it is among them
            pick = [solved[i] for i in ctx.rng.choice(len(solved), size=min(self.k + 1, len(solved)),
                                                       replace=False)]
            pick = sorted(j for j in pick if j != p)[: self.k]
            out.append(tuple((j, corpus[j]) for j in pick))
        self._seeded += sum(c is not None for c in out)
        return out if any(c is not None for c in out) else None

    def observe(self, ctx: SampleContext, pools: list[GroupObs], trained: list[TrainGroup],
                losses: np.ndarray | None = None) -> None:
        self._seeded_last, self._seeded = self._seeded, 0
        thr = ctx.stats.positive_threshold
        for p in pools:
            if p.texts is None:
                continue
            wins = np.flatnonzero(p.rewards > thr)
            if wins.size:
                corpus = self._corpus.setdefault(self._level(ctx, p.prompt), OrderedDict())
                corpus.pop(p.prompt, None)
                corpus[p.prompt] = p.texts[int(wins[-1])][: self.max_chars]
                while len(corpus) > self.capacity:
                    corpus.popitem(last=False)

    def metrics(self) -> dict[str, float]:
        return {"seeded": float(self._seeded_last), "corpus": float(sum(len(c) for c in self._corpus.values()))}

    def state_dict(self) -> dict[str, Any]:
        return {"corpus": {lv: list(c.items()) for lv, c in self._corpus.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._corpus = {int(lv): OrderedDict(items) for lv, items in state["corpus"].items()}
