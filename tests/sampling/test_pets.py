"""PETS (spec §12): majority vote and buckets, the OKG gain on hand-computed Dirichlets, the greedy bucket plan
on a hand-derived case, the average-budget constraint, and PETS beating uniform maj@k at equal accuracy with
fewer samples on a constructed 40-question set."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest

from rollwise.sampling.pets import (
    AnswerPools,
    OKGAllocator,
    OnlineAllocator,
    bucket_of,
    compute_argmax_prob,
    compute_okg_gain,
    compute_probit_gain,
    fit_probit_sqrt_k,
    majority_vote,
    plan_budgets,
    prefix_majorities,
    self_consistency,
    uniform_vote,
)
from rollwise.train.pets_eval import (
    TEST_TIME_ALLOCATORS,
    RecordingVerifier,
    answer_key,
    check_args,
    pets_report,
    pools_from_calls,
)


def phi(x: float) -> float:
    return 0.5 * (1 + math.erf(x / math.sqrt(2)))


def test_majority_vote_ties_go_to_first_seen():
    assert majority_vote(["b", "a", "a", "b"]) == "b"
    assert majority_vote(["a", "b", "c"]) == "a"
    assert majority_vote(["x", "y", "y"]) == "y"
    assert majority_vote([]) is None


def test_prefix_majorities_match_the_loop_reference():
    rng = np.random.default_rng(0)
    for _ in range(50):
        seq = list(rng.choice(list("abc"), size=int(rng.integers(1, 12))))
        assert prefix_majorities(seq) == [majority_vote(seq[:k]) for k in range(1, len(seq) + 1)]


@pytest.mark.parametrize("answers, bucket", [("AAAA", 0), ("AABA", 1), ("ABAB", 2), ("ABCA", 3), ("ABCD", 4),
                                             ("BAAAxx", 1)])
def test_bucket_patterns(answers, bucket):
    assert bucket_of(list(answers)) == bucket  # only the first 4 answers count


def test_answer_pools_consume_in_order_and_run_dry():
    pools = AnswerPools([["a", "b", "c"], ["d"]])
    assert pools(0, 2) == ["a", "b"] and pools(0, 2) == ["c"] and pools(0, 1) == []
    assert pools(1, 0) == [] and pools(1, 5) == ["d"]
    assert pools.used.tolist() == [3, 1]


def test_uniform_vote_spreads_the_remainder_over_the_first_questions():
    res = uniform_vote(AnswerPools([["a"] * 9] * 4), 4, 10)
    assert [r.samples for r in res] == [3, 3, 2, 2]


def test_argmax_prob_and_okg_gain_on_two_options():
    # Beta(a, b) > 1/2 with integer a, b: P(Bin(a + b - 1, 1/2) >= a). Dirichlet [5,1]: h = 31/32; [6,1]: 63/64;
    # [5,2]: 57/64 (option 0 still leads, lower). [2,2]: h = 1/2; [3,2]: 11/16. So R+ = 1/64 and 3/16.
    rng = np.random.default_rng(0)
    alpha = np.array([[5.0, 1.0], [2.0, 2.0]])
    np.testing.assert_allclose(compute_argmax_prob(alpha, 40_000, rng), [[31 / 32, 1 / 32], [0.5, 0.5]], atol=0.01)
    np.testing.assert_allclose(compute_okg_gain(alpha, 40_000, rng), [1 / 64, 3 / 16], atol=0.01)


def test_okg_samples_the_more_uncertain_question_first():
    # after a 4-sample warm-up alpha = [5, 1] (AAAA) and [3, 3] (AABB): the next sample goes to question 1
    okg = OKGAllocator(max_options=2, warmup=4, seed=0)
    okg.run(AnswerPools([["A"] * 8, ["A", "A", "B", "B"] + ["A"] * 4]), 2, 9)
    assert okg.order[:8] == [0] * 4 + [1] * 4 and okg.order[8] == 1


def test_okg_spends_the_budget_and_stops_when_pools_run_dry():
    okg = OKGAllocator(max_options=3, seed=0)
    res = okg.run(AnswerPools([list("ABA"), list("BB"), list("C")]), 3, 100)
    assert [r.samples for r in res] == [3, 2, 1] and len(okg.order) == 6
    assert [r.majority for r in res] == ["A", "B", "C"]
    res = OKGAllocator(max_options=3, seed=0).run(AnswerPools([list("ABABAB")] * 3), 3, 7)
    assert sum(r.samples for r in res) == 7


def test_probit_fit_recovers_exact_curve():
    ks = np.arange(4, 33)
    trials = np.full(ks.size, 999.0)
    hits = np.array([phi(0.3 * math.sqrt(k) - 0.2) for k in ks]) * (trials + 1) - 0.5  # undo the 0.5/1 correction
    a, b = fit_probit_sqrt_k(ks, hits, trials)
    assert a == pytest.approx(0.3, abs=1e-9) and b == pytest.approx(-0.2, abs=1e-9)
    assert compute_probit_gain(0.3, -0.2, 4) == pytest.approx(phi(0.3 * math.sqrt(5) - 0.2) - phi(0.4), rel=1e-9)
    assert compute_probit_gain(1.0, 30.0, 4) > 0  # exact in the far tail, where Phi(x) rounds to 1


def test_greedy_plan_on_two_buckets_by_hand():
    # A(k) = Phi(0.5 sqrt(k) - 1) sits at its steepest at k = 4 (x = 0), Phi(0.5 sqrt(k) + 1) at x = 2: bucket 0
    # gains more (0.047 vs 0.006). pi = (0.75, 0.25), B_bar = 5: start cost 4; bucket 0 -> 5 (cost 4.75); bucket 0
    # again would cost 5.5 > 5, so it is skipped and bucket 1 -> 5 (cost 5.0); nothing else fits.
    fits = [(0.5, -1.0), (0.5, 1.0)]
    assert compute_probit_gain(*fits[0], 4) > compute_probit_gain(*fits[1], 4) > 0
    assert plan_budgets(fits, [0.75, 0.25], 5.0).tolist() == [5, 5]
    # a flat curve (a = 0) gains nothing and a bucket without data keeps the warm-up budget
    assert plan_budgets([(0.0, 1.0), None], [0.5, 0.5], 10.0).tolist() == [4, 4]
    # slack beyond every cap: both stop at B_max
    assert plan_budgets(fits, [0.5, 0.5], 100.0, max_budget=64).tolist() == [64, 64]
    with pytest.raises(ValueError, match="below the warm-up cost"):
        plan_budgets(fits, [0.5, 0.5], 3.5)


def two_kind_pools(seed: int, size: int = 200) -> list[list[str]]:
    """40 questions: even ones answer A with p = 0.95, odd ones are near-tied (A 0.65, B 0.35)."""
    rng = np.random.default_rng(seed)
    probs = [[0.95, 0.03, 0.02], [0.65, 0.35, 0.0]]
    return [list(rng.choice(["A", "B", "C"], size=size, p=probs[q % 2])) for q in range(40)]


def test_online_plan_respects_the_average_budget():
    pools = two_kind_pools(7)
    online = OnlineAllocator(mean_budget=6.0, seed=0).fit(pools)
    for mean_budget in (4.0, 5.0, 6.5, 10.0, 20.0):
        online.plan(mean_budget)
        assert float(online.freq @ online.budgets) <= mean_budget + 1e-9
        assert online.budgets.min() >= 4 and online.budgets.max() <= 64
        # on the calibration questions themselves the realised mean is the planned one
        res = online.run(AnswerPools(pools), len(pools))
        assert np.mean([r.samples for r in res]) == pytest.approx(float(online.freq @ online.budgets))
    assert online.plan(10.0).budgets[0] == 4  # unanimous warm-ups (4) never need more
    assert online.metrics()["pets/planned_mean"] <= 10.0


def test_pets_matches_uniform_self_consistency_with_fewer_samples():
    # self-consistency reference: the infinite-budget majority, A for every question. Summed over 3 pool draws.
    uniform, offline, online, offline_used, online_used = 0, 0, 0, 0, 0
    for seed in range(3):
        pools = two_kind_pools(seed)
        uniform += round(40 * self_consistency(uniform_vote(AnswerPools(pools), 40, 8 * 40), ["A"] * 40))
        res = OKGAllocator(max_options=4, seed=seed).run(AnswerPools(pools), 40, 6 * 40)
        offline += sum(r.majority == "A" for r in res)
        offline_used += sum(r.samples for r in res)
        assert sum(r.samples for r in res[1::2]) >= 2 * sum(r.samples for r in res[::2])  # spent on the tied half
        streaming = OnlineAllocator(mean_budget=6.0, seed=seed).fit(two_kind_pools(1000 + seed))  # fresh draw
        res = streaming.run(AnswerPools(pools), 40)
        online += sum(r.majority == "A" for r in res)
        online_used += sum(r.samples for r in res)
    assert uniform == 103  # maj@8: 960 samples
    assert (offline, offline_used) == (112, 720)  # OKG: more agreement with 25% fewer samples
    assert (online, online_used) == (111, 759)  # streaming: more agreement with 21% fewer samples


def test_pets_report_on_fixed_pools():
    answers = [["1"] * 8, ["1", "2"] * 4, ["3", "4", "4", "3", "4", "4", "4", "3"]]
    scores = [[1.0] * 8, [1.0, 0.0] * 4, [0.0, 1.0] * 4]  # "4" first appears scored 1.0
    for name in ("pets", "pets_offline"):
        rep = pets_report(answers, scores, name, 4.0, seed=0)
        assert rep["pets/samples_mean"] == rep["pets/uniform_samples_mean"]
        assert rep["pets/full_accuracy"] == 1.0  # majorities "1", "1" (tie, first seen), "4"
        for key in ("sc_accuracy", "accuracy", "uniform_sc_accuracy", "uniform_accuracy"):
            assert 0.0 <= rep[f"pets/{key}"] <= 1.0
    rep = pets_report(answers, scores, "pets_offline", 4.0, seed=0)
    assert rep["pets/samples_mean"] == 4.0 and rep["pets/uniform_sc_accuracy"] == pytest.approx(2 / 3)


def test_eval_plumbing_recorder_answer_keys_and_args():
    result = SimpleNamespace(score=1.0, info={"extracted": " 42"})
    assert answer_key("... so 42", result) == "42" and answer_key(" 7 \n", SimpleNamespace(info={})) == "7"
    inner = SimpleNamespace(score_batch=lambda c, r: [SimpleNamespace(score=float(x == y), info={})
                                                      for x, y in zip(c, r)])
    rec = RecordingVerifier(inner)
    rec.score_batch(["1", "2", "1", "1"], ["1"] * 4)  # set "all": 2 questions x n = 2
    rec.score_batch(["1", "2"], ["1"] * 2)  # a subset of "all"
    answers, scores = pools_from_calls(rec.calls, ["all", "level1"], 2)
    assert answers == [["1", "2"], ["1", "1"]] and scores == [[1.0, 0.0], [1.0, 1.0]]
    assert check_args("pets_offline", None, 16) == 8.0
    with pytest.raises(ValueError, match="warm-up"):
        check_args("pets", 3, 16)
    with pytest.raises(KeyError, match="uniform, pets, pets_offline"):
        check_args("petz", 8, 16)
    assert set(TEST_TIME_ALLOCATORS.names()) == {"pets", "pets_offline"}
