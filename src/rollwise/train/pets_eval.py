"""PETS in ``rollwise eval --allocator pets|pets_offline --budget B``: spend a mean of B samples per question out
of the ``n`` that ``evaluate`` already drew (recorded, not drawn again), and compare with uniform maj@k at the
same number of samples on the same pools.

* Answer of a sample: the verifier's parsed answer (``info["extracted"]``) when it reports one, else the
  completion text stripped (what ``eval/*/maj@n`` votes on).
* ``pets/sc_accuracy``: agreement with the n-sample majority (the largest budget the pool allows stands in for
  the infinite-budget vote). ``pets/accuracy``: the majority answer is correct, i.e. the first sample that
  carries it scored > 0.5. ``uniform_*``: uniform maj@k with PETS's total samples.
* ``pets`` (online) is calibrated by 2-fold cross-fitting: each half of the questions runs on the bucket
  budgets fitted on the other half, so no question calibrates its own budget.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from rollwise.registry import Registry
from rollwise.sampling.pets import (
    WARMUP,
    AnswerPools,
    OKGAllocator,
    OnlineAllocator,
    VoteResult,
    majority_vote,
    uniform_vote,
)

Allocate = Callable[[list[list[str]], float, int], list[VoteResult]]
TEST_TIME_ALLOCATORS: Registry[Allocate] = Registry("test-time allocator")


@TEST_TIME_ALLOCATORS.register("pets_offline")
def allocate_offline(pools: list[list[str]], budget: float, seed: int) -> list[VoteResult]:
    """PETS offline: OKG over all questions at once, round(budget * Q) samples in total."""
    return OKGAllocator(seed=seed).run(AnswerPools(pools), len(pools), round(budget * len(pools)))


@TEST_TIME_ALLOCATORS.register("pets")
def allocate_online(pools: list[list[str]], budget: float, seed: int) -> list[VoteResult]:
    """PETS online: 4 warm-up samples -> pattern bucket -> bucket budget, fitted on the other half (2 folds)."""
    folds = [list(range(0, len(pools), 2)), list(range(1, len(pools), 2))]
    out: list[VoteResult | None] = [None] * len(pools)
    for f, idx in enumerate(folds):
        calibration = [pools[i] for i in (folds[1 - f] or idx)]  # a single question calibrates on itself
        online = OnlineAllocator(budget, max_budget=min(64, max(map(len, pools))), seed=seed).fit(calibration)
        sample = AnswerPools([pools[i] for i in idx])
        for j, i in enumerate(idx):
            out[i] = online.allocate(sample, j)
    return [r for r in out if r is not None]


def check_args(allocator: str, budget: float | None, n: int) -> float:
    """Validate ``--allocator/--budget/--n`` before any model is loaded; returns the budget (default n / 2)."""
    if allocator not in TEST_TIME_ALLOCATORS and ":" not in allocator:  # "pkg.mod:fn" imports user code
        raise KeyError(f"unknown --allocator {allocator!r}; choose one of: uniform, "
                       + ", ".join(TEST_TIME_ALLOCATORS.names()))
    TEST_TIME_ALLOCATORS.get(allocator)
    budget = n / 2 if budget is None else budget
    if n < 2 or not 1 <= budget <= n:
        raise ValueError(f"--allocator {allocator} needs --n >= 2 and 1 <= --budget <= n (got n={n}, "
                         f"budget={budget})")
    if allocator == "pets" and budget < WARMUP:
        raise ValueError(f"--allocator pets takes {WARMUP} warm-up samples per question: --budget must be >= "
                         f"{WARMUP} (got {budget})")
    return budget


class RecordingVerifier:
    """Passes ``score_batch`` through to a verifier and keeps each call's completions and results."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.calls: list[tuple[list[str], list[Any]]] = []

    def score_batch(self, completions: Sequence[str], references: Sequence[str]) -> list[Any]:
        results = self.inner.score_batch(completions, references)
        self.calls.append((list(completions), list(results)))
        return results


def answer_key(text: str, result: Any) -> str:
    """The verifier's parsed answer when it reports one, else the stripped completion."""
    extracted = getattr(result, "info", {}).get("extracted")
    return text.strip() if extracted is None else str(extracted).strip()


def pools_from_calls(calls: list[tuple[list[str], list[Any]]], set_names: list[str],
                     n: int) -> tuple[list[list[str]], list[list[float]]]:
    """Per-question answers and scores [Q][n] from ``evaluate``'s calls, one per non-empty set in order
    (prompt-major, n samples each). The ``all`` set when there is one (the others are its subsets), else all."""
    if len(calls) != len(set_names):
        raise RuntimeError(f"expected one verifier call per eval set ({len(set_names)}), saw {len(calls)}")
    chosen = [calls[set_names.index("all")]] if "all" in set_names else calls
    answers: list[list[str]] = []
    scores: list[list[float]] = []
    for texts, results in chosen:
        keys = [answer_key(t, r) for t, r in zip(texts, results)]
        for q in range(0, len(keys), n):
            answers.append(keys[q : q + n])
            scores.append([float(r.score) for r in results[q : q + n]])
    return answers, scores


def pets_report(answers: list[list[str]], scores: list[list[float]], allocator: str, budget: float,
                seed: int = 0) -> dict[str, Any]:
    """PETS vs uniform maj@k at equal samples on fixed pools; ``pets/*`` metrics (see the module doc)."""
    refs = [majority_vote(a) for a in answers]
    first_score = [{a: s for a, s in reversed(list(zip(ans, sc)))} for ans, sc in zip(answers, scores)]

    def summary(results: list[VoteResult]) -> tuple[float, float, float]:
        sc = np.mean([r.majority == ref for r, ref in zip(results, refs)])
        acc = np.mean([fs.get(r.majority, 0.0) > 0.5 for r, fs in zip(results, first_score)])
        return float(sc), float(acc), float(np.mean([r.samples for r in results]))

    pets = TEST_TIME_ALLOCATORS.get(allocator)(answers, budget, seed)
    sc, acc, mean = summary(pets)
    u_sc, u_acc, u_mean = summary(uniform_vote(AnswerPools(answers), len(answers), sum(r.samples for r in pets)))
    full = float(np.mean([fs[r] > 0.5 for fs, r in zip(first_score, refs)]))
    return {"pets/allocator": allocator, "pets/budget": float(budget), "pets/sc_accuracy": sc,
            "pets/accuracy": acc, "pets/samples_mean": mean, "pets/uniform_sc_accuracy": u_sc,
            "pets/uniform_accuracy": u_acc, "pets/uniform_samples_mean": u_mean, "pets/full_accuracy": full}
