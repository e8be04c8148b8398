"""PETS: test-time trajectory allocation for self-consistency (spec §12; Liu et al., "PETS: A Principled
Framework Towards Optimal Trajectory Allocation for Efficient Test-Time Self-Consistency", arXiv:2602.16745).
The target is the self-consistency rate: agreement of the finite-budget majority vote with the infinite-budget
one. :class:`OKGAllocator` (offline: all questions known) and :class:`OnlineAllocator` (streaming) are measured
against :func:`uniform_vote` (maj@k) at equal samples. Both draw through ``sample(question, k) -> answers``;
:class:`AnswerPools` consumes pre-drawn answers in order, which makes comparisons on one set of pools exact.
A sampler that returns fewer than ``k`` answers marks the question exhausted. numpy only.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

Sampler = Callable[[int, int], list[str]]
PATTERNS: tuple[tuple[int, ...], ...] = ((4,), (3, 1), (2, 2), (2, 1, 1), (1, 1, 1, 1))
WARMUP = 4  # online warm-up samples; the patterns above are the partitions of 4


@dataclass(frozen=True)
class VoteResult:
    """One question's outcome: the answers used (in sampling order) and their majority vote."""

    answers: tuple[str, ...]
    majority: str | None

    @property
    def samples(self) -> int:
        return len(self.answers)

    @classmethod
    def of(cls, answers: Sequence[str]) -> VoteResult:
        return cls(tuple(answers), majority_vote(answers))


class AnswerPools:
    """A ``Sampler`` over pre-drawn answers: ``pools[q]`` is consumed in order; ``used[q]`` counts the draws."""

    def __init__(self, pools: Sequence[Sequence[str]]) -> None:
        self.pools = [list(p) for p in pools]
        self.used = np.zeros(len(self.pools), dtype=np.int64)

    def __call__(self, q: int, k: int) -> list[str]:
        out = self.pools[q][self.used[q] : self.used[q] + max(k, 0)]
        self.used[q] += len(out)
        return out


def majority_vote(answers: Sequence[str]) -> str | None:
    """Most frequent answer; ties go to the answer seen first. ``None`` for no answers."""
    if not answers:
        return None
    counts = Counter(answers)  # insertion-ordered, and max() keeps the first maximum: first seen wins a tie
    return max(counts, key=counts.__getitem__)


def self_consistency(results: Sequence[VoteResult], references: Sequence[str | None]) -> float:
    """Share of questions whose majority equals the reference (the infinite-budget majority answer)."""
    return float(np.mean([r.majority == ref for r, ref in zip(results, references)])) if results else 0.0


def uniform_vote(sample: Sampler, num_questions: int, total_budget: int) -> list[VoteResult]:
    """maj@k at ``total_budget`` samples: every question gets ``total // Q``, the first ``total % Q`` one more."""
    base, extra = divmod(int(total_budget), num_questions)
    return [VoteResult.of(sample(q, base + (q < extra))) for q in range(num_questions)]


def _freq(winner: np.ndarray, M: int) -> np.ndarray:
    """Frequencies of ``winner`` [K, D, *rest] (values < M) over D per (k, *rest) -> [K, *rest, M]."""
    K, D, *rest = winner.shape
    cell = np.arange(K * int(np.prod(rest, dtype=np.int64))).reshape(K, 1, *rest)  # one bin block per cell
    counts = np.bincount((cell * M + winner).ravel(), minlength=cell.size * M)
    return counts.reshape(K, *rest, M) / D


def compute_argmax_prob(alpha: np.ndarray, draws: int, rng: np.random.Generator) -> np.ndarray:
    """I[k, m] = P(option m is the argmax of Dirichlet(alpha[k])) from ``draws`` Gamma draws. alpha [K, M]."""
    K, M = alpha.shape
    return _freq(rng.standard_gamma(np.broadcast_to(alpha[:, None, :], (K, draws, M))).argmax(-1), M)


def compute_okg_gain(alpha: np.ndarray, draws: int, rng: np.random.Generator) -> np.ndarray:
    """Optimistic gain R+[k] = max_m h(alpha_k + e_m) - h(alpha_k), h = max_m I. alpha [K, M], M >= 2 -> [K].

    Gamma(a) + Exp(1) ~ Gamma(a + 1), so adding one Exp(1) draw to column m of the base draws samples
    Dirichlet(alpha + e_m) exactly; all M+1 estimates share their draws (common random numbers), which makes
    the differences far less noisy than M+1 independent estimates at the same cost."""
    K, M = alpha.shape
    g = rng.standard_gamma(np.broadcast_to(alpha[:, None, :], (K, draws, M)))  # [K, D, M]
    e = rng.standard_exponential((K, draws))[..., None]  # [K, D, 1]
    top = np.argsort(-g, axis=-1)[..., :2]  # [K, D, 2] best and runner-up option
    val = np.take_along_axis(g, top, -1)
    m = np.arange(M)
    is_top = m == top[..., :1]  # [K, D, M]: with +1 on m, m's rival is the runner-up if m leads, else the leader
    rival, rival_arg = np.where(is_top, val[..., 1:], val[..., :1]), np.where(is_top, top[..., 1:], top[..., :1])
    winner = np.where(g + e > rival, m, rival_arg)  # [K, D, M] argmax of Dirichlet(alpha + e_m), per m
    h = _freq(top[..., 0], M).max(-1)  # [K]
    return (_freq(winner, M).max(-1) - h[:, None]).max(-1)


class OKGAllocator:
    """Offline PETS: Optimistic Knowledge Gradient over per-question Dirichlet posteriors (spec §12, [code]).

    Choices the spec leaves open (the first two follow the authors' fill-in-the-blank code):
    * Options: a fixed space of ``max_options`` slots per question, all starting at alpha = 1; answers take
      slots in order of first appearance. An answer beyond the last slot still votes and costs budget but
      does not update alpha (the authors' code drops it from the vote too).
    * Warm-up: ``warmup`` samples per question before OKG rounds (authors: 1); counted in the budget.
    * Each round takes the top-``per_round`` questions by R+ (ties: lower index) and samples one each.
    * R+ is re-estimated only for questions whose alpha changed (a cached estimate otherwise), with common
      random numbers inside each estimate (see :func:`compute_okg_gain`). No confidence weighting (the
      "mean confidence/16" increment needs per-trace confidences, which rollwise does not produce).
    * Exhausted questions (sampler returned nothing) leave the race; the run stops early if all are.
    """

    def __init__(self, max_options: int = 16, draws: int = 500, per_round: int = 1, warmup: int = 1,
                 seed: int = 0) -> None:
        if max_options < 2:
            raise ValueError("max_options must be >= 2")
        self.max_options, self.draws, self.per_round, self.warmup = max_options, draws, per_round, warmup
        self.rng = np.random.default_rng(seed)
        self.order: list[int] = []  # question of each sample, in sampling order (warm-up included)

    def run(self, sample: Sampler, num_questions: int, total_budget: int) -> list[VoteResult]:
        K, M = num_questions, self.max_options
        alpha = np.ones((K, M))  # [K, M]
        slots: list[dict[str, int]] = [{} for _ in range(K)]
        answers: list[list[str]] = [[] for _ in range(K)]
        gain = np.full(K, -np.inf)
        alive = np.ones(K, dtype=bool)
        self.order = []

        def take(q: int) -> bool:
            got = sample(q, 1)
            if not got:
                alive[q] = False
                return False
            if got[0] not in slots[q] and len(slots[q]) < M:
                slots[q][got[0]] = len(slots[q])
            if got[0] in slots[q]:
                alpha[q, slots[q][got[0]]] += 1
            answers[q] += got
            self.order.append(q)
            return True

        for q in range(K):
            for _ in range(self.warmup):
                if len(self.order) >= total_budget or not take(q):
                    break
        changed = np.flatnonzero(alive)  # R+ is re-estimated only where alpha moved
        while len(self.order) < total_budget and alive.any():
            if changed.size:
                gain[changed] = compute_okg_gain(alpha[changed], self.draws, self.rng)
            gain[~alive] = -np.inf
            pick = np.lexsort((np.arange(K), -gain))[: min(self.per_round, total_budget - len(self.order))]
            changed = np.array([q for q in pick if alive[q] and take(int(q))], dtype=np.int64)
        return [VoteResult.of(a) for a in answers]


def bucket_of(answers: Sequence[str]) -> int:
    """Index in ``PATTERNS`` of the sorted answer counts of the first 4 answers: A,A,B,A -> (3,1) -> 1."""
    return PATTERNS.index(tuple(sorted(Counter(answers[:WARMUP]).values(), reverse=True)))


def _sf(x: np.ndarray) -> np.ndarray:
    """Normal upper tail 1 - Phi(x) via erfc: exact in the tail where Phi(x) rounds to 1."""
    return 0.5 * np.vectorize(math.erfc)(np.asarray(x, dtype=np.float64) / math.sqrt(2.0))


def _probit(p: np.ndarray) -> np.ndarray:
    """Phi^-1(p) for p in (0, 1) by bisection on the monotone tail (no scipy); |error| < 1e-12."""
    lo, hi = np.full(np.shape(p), -40.0), np.full(np.shape(p), 40.0)
    for _ in range(80):
        mid = 0.5 * (lo + hi)
        below = 1.0 - _sf(mid) < p
        lo, hi = np.where(below, mid, lo), np.where(below, hi, mid)
    return 0.5 * (lo + hi)


def compute_probit_gain(a: float, b: float, k: int) -> float:
    """Marginal vote accuracy A(k+1) - A(k) for A(k) = Phi(a sqrt(k) + b), as sf(x_k) - sf(x_k+1)."""
    s = _sf(np.array([a * math.sqrt(k) + b, a * math.sqrt(k + 1) + b]))
    return float(s[0] - s[1])


def fit_probit_sqrt_k(ks: np.ndarray, hits: np.ndarray, trials: np.ndarray) -> tuple[float, float]:
    """Least-squares fit of Phi^-1(acc_k) = a sqrt(k) + b, acc_k = (hits + 0.5) / (trials + 1) (the 0.5/1
    continuity correction keeps probit finite at acc = 0 or 1). A single k gives a = 0."""
    z = _probit((hits + 0.5) / (trials + 1.0))
    if len(ks) < 2:
        return 0.0, float(z[0])
    X = np.stack([np.sqrt(ks), np.ones(len(ks))], axis=1)  # [n, 2]
    (a, b), *_ = np.linalg.lstsq(X, z, rcond=None)
    return float(a), float(b)


def plan_budgets(fits: Sequence[tuple[float, float] | None], freq: Sequence[float], mean_budget: float,
                 start: int = WARMUP, max_budget: int = 64) -> np.ndarray:
    """Greedy budgets B [T]: from ``start``, add 1 to the bucket of largest dA_t(B_t) (gain per unit cost: the
    objective sum pi_t A_t and the cost pi_t share pi_t) unless it breaks sum pi_t B_t <= B_bar or B_t <= max;
    stop when no feasible step gains. A bucket without a fit (``None``: no calibration data) stays at start."""
    pi = np.asarray(freq, dtype=np.float64)
    B = np.full(len(pi), start, dtype=np.int64)
    if float(pi @ B) > mean_budget + 1e-9:
        raise ValueError(f"mean budget {mean_budget} is below the warm-up cost {float(pi @ B):.3f}")
    while True:
        best, best_gain = -1, 0.0
        for t, fit in enumerate(fits):
            if fit is None or B[t] >= max_budget or float(pi @ B) + pi[t] > mean_budget + 1e-9:
                continue
            g = compute_probit_gain(fit[0], fit[1], int(B[t]))
            if g > best_gain:
                best, best_gain = t, g
        if best < 0:
            return B
        B[best] += 1


class OnlineAllocator:
    """Streaming PETS: 4 warm-up samples -> pattern bucket -> sample up to the bucket budget -> majority vote.

    Choices the spec leaves open:
    * Calibration: per calibration question the reference is the majority of its whole pool; the first 4
      answers fix the bucket; vote accuracy at k = 4..min(max_budget, pool size) is averaged over
      ``resamples`` random orders of the remaining answers (the authors average Monte-Carlo subsamples too).
    * Fit: least squares on the probit of the continuity-corrected accuracy against sqrt(k), per bucket.
    * Bucket frequencies pi_t are the calibration shares; an unseen bucket keeps the warm-up budget 4.
    * Greedy by dA_t alone (gain per unit cost), exact tail gains via erfc, stop at no positive gain.
    * A question whose sampler runs dry votes on what it got (fewer than 4 answers: no bucket).
    """

    def __init__(self, mean_budget: float, max_budget: int = 64, resamples: int = 8, seed: int = 0) -> None:
        self.mean_budget, self.max_budget, self.resamples = mean_budget, max_budget, resamples
        self.rng = np.random.default_rng(seed)
        self.freq = np.zeros(len(PATTERNS))
        self.fits: list[tuple[float, float] | None] = [None] * len(PATTERNS)
        self.budgets = np.full(len(PATTERNS), WARMUP, dtype=np.int64)

    def fit(self, calibration: Sequence[Sequence[str]]) -> OnlineAllocator:
        T, kmax = len(PATTERNS), self.max_budget
        hits, trials = np.zeros((T, kmax + 1)), np.zeros((T, kmax + 1))
        pools = [list(p) for p in calibration if len(p) >= WARMUP]
        if not pools:
            raise ValueError(f"calibration needs questions with at least {WARMUP} answers")
        for pool in pools:
            ref, t = majority_vote(pool), bucket_of(pool)
            self.freq[t] += 1
            top = min(kmax, len(pool))
            for _ in range(self.resamples):
                seq = pool[:WARMUP] + [pool[i] for i in WARMUP + self.rng.permutation(len(pool) - WARMUP)]
                for k, maj in enumerate(prefix_majorities(seq[:top]), start=1):
                    if k >= WARMUP:
                        hits[t, k] += maj == ref
                        trials[t, k] += 1
        self.freq /= len(pools)
        for t in range(T):
            ks = np.flatnonzero(trials[t])
            self.fits[t] = fit_probit_sqrt_k(ks, hits[t, ks], trials[t, ks]) if ks.size else None
        return self.plan(self.mean_budget)

    def plan(self, mean_budget: float) -> OnlineAllocator:
        """(Re)plan the bucket budgets for another average budget; the fits stay."""
        self.mean_budget = mean_budget
        self.budgets = plan_budgets(self.fits, self.freq, mean_budget, WARMUP, self.max_budget)
        return self

    def allocate(self, sample: Sampler, q: int) -> VoteResult:
        warm = sample(q, WARMUP)
        if len(warm) < WARMUP:
            return VoteResult.of(warm)
        return VoteResult.of(warm + sample(q, int(self.budgets[bucket_of(warm)]) - WARMUP))

    def run(self, sample: Sampler, num_questions: int) -> list[VoteResult]:
        return [self.allocate(sample, q) for q in range(num_questions)]

    def metrics(self) -> dict[str, float]:
        """Plan summary: per-bucket budget and frequency, and the planned mean budget."""
        out = {f"pets/bucket{t}/budget": float(b) for t, b in enumerate(self.budgets)}
        out |= {f"pets/bucket{t}/freq": float(f) for t, f in enumerate(self.freq)}
        return out | {"pets/planned_mean": float(self.freq @ self.budgets)}


def prefix_majorities(seq: Sequence[str]) -> list[str]:
    """majority_vote(seq[:k]) for k = 1..len(seq) in one pass (same first-seen tie-break)."""
    counts: Counter[str] = Counter()
    first: dict[str, int] = {}
    out: list[str] = []
    for i, a in enumerate(seq):
        counts[a] += 1
        first.setdefault(a, i)
        lead = a if not out or (counts[a], -first[a]) > (counts[out[-1]], -first[out[-1]]) else out[-1]
        out.append(lead)
    return out
