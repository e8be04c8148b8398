"""VADE: the figure's worked update, the shared positive threshold, the information-gain peak, top-k
selection, exclusion, state."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from rollwise.sampler_tables import build_pipeline
from rollwise.sampling import Budget
from rollwise.sampling.vade import VadeSelector, compute_vade_score, draw_beta, top_k


def _with_counts(sel: VadeSelector, alpha: list[float], beta: list[float]) -> VadeSelector:
    idx = np.arange(len(alpha))
    sel.load_state_dict({"size": len(alpha), "index": idx, "alpha": np.array(alpha), "beta": np.array(beta)})
    return sel


def test_update_reproduces_the_figure_example(harness):
    # selected (alpha=0.1, beta=8.4), r=1 of G=8 -> (0.2*0.1+1, 0.2*8.4+7) = (1.02, 8.68); unselected 9: 8.991
    sel = _with_counts(VadeSelector(lambda1=0.2, lambda2=0.999), [0.1, 9.0, 0.0], [8.4, 9.0, 0.0])
    ctx = harness.make_ctx(3)
    sel.observe(ctx, [harness.obs(0, [1, 0, 0, 0, 0, 0, 0, 0])], [])
    a, b = sel.posterior(np.arange(3))
    np.testing.assert_allclose(a, [1.02, 8.991, 0.0])
    np.testing.assert_allclose(b, [8.68, 8.991, 0.0])
    sel.observe(ctx, [], [])  # a step without prompt 0: it decays like the others
    np.testing.assert_allclose(sel.posterior(np.array([0]))[0], [1.02 * 0.999])


def test_rewards_are_binarised_at_the_threshold(harness):
    # the threshold is the sampler's (ctx.stats.positive_threshold); VADE has no threshold knob of its own
    with pytest.raises(ValueError):
        VadeSelector(positive_threshold=0.7)
    sel = VadeSelector(lambda1=0.0)
    ctx = harness.make_ctx(2)
    ctx.stats.positive_threshold = 0.7
    sel.observe(ctx, [harness.obs(1, [0.9, 0.6, 0.71, 0.0])], [])
    a, b = sel.posterior(np.array([1]))
    assert (a[0], b[0]) == (2.0, 2.0)  # 0.9 and 0.71 succeed; 0.6 fails at 0.7 (it would pass at 0.5)
    sel = VadeSelector(lambda1=0.0)
    sel.observe(harness.make_ctx(2), [harness.obs(1, [0.9, 0.6, 0.71, 0.0])], [])
    assert sel.posterior(np.array([1]))[0][0] == 3.0  # default threshold 0.5


def test_threshold_from_the_pipeline(harness):
    pipe = build_pipeline(preset="vade", pool_size=4, group_size=4, batch_prompts=1, total_steps=10, seed=0,
                          positive_threshold=0.7)
    req = pipe.begin_step(0, Budget(4))
    p = int(req.prompts[0])
    pools = {p: harness.obs(p, [0.9, 0.6, 0.71, 0.0])}
    pipe.observe(pools, pipe.finalize(pools).groups)
    a, b = pipe.selector.posterior(np.array([p]))
    assert (a[0], b[0]) == (2.0, 2.0)
    assert pipe.stats.successes[p] == 2.0  # the stats store agrees with the selector


def test_knobs_are_validated():
    for bad in ({"lambda1": 1.5}, {"score": "entropy"}, {"threads": 0}, {"lamda1": 0.2}):
        with pytest.raises(ValueError):
            VadeSelector(**bad)


def test_information_gain_peaks_at_one_third():
    p = np.linspace(0, 1, 30001)
    i = compute_vade_score(p)
    assert p[np.argmax(i)] == pytest.approx(1 / 3, abs=1e-4)
    assert i.max() == pytest.approx(4 / 27, abs=1e-9)
    assert p[np.argmax(compute_vade_score(p, "variance"))] == pytest.approx(0.5, abs=1e-4)


# posterior means (alpha+1)/(alpha+beta+2) with alpha+beta+2 = 100: 0.10, 1/3, 0.50, 0.90, 0.30
_MEANS = np.array([0.10, 1 / 3, 0.50, 0.90, 0.30])


@pytest.mark.parametrize("score,expect", [("info_gain", [1, 4]), ("variance", [2, 1])])
def test_greedy_top_k_by_score(harness, score, expect):
    sel = _with_counts(VadeSelector(thompson=False, score=score), list(100 * _MEANS - 1),
                       list(100 * (1 - _MEANS) - 1))
    assert sel.select(2, harness.make_ctx(5)).tolist() == expect


def test_thompson_with_tight_posteriors_picks_the_same_prompts(harness):
    # 10^6 pseudo-counts: every draw sits within ~1e-3 of its mean, so Thompson top-2 = greedy top-2
    sel = _with_counts(VadeSelector(), list(1e6 * _MEANS), list(1e6 * (1 - _MEANS)))
    for seed in range(5):
        assert sorted(sel.select(2, harness.make_ctx(5, seed=seed)).tolist()) == [1, 4]


def test_thompson_explores_unseen_prompts_uniformly(harness):
    sel = VadeSelector()
    hits = np.zeros(10)
    for seed in range(400):
        hits[sel.select(2, harness.make_ctx(10, seed=seed))] += 1
    assert hits.sum() == 800 and hits.min() > 50  # Beta(1,1) draws: no index bias


def test_exclusion_and_short_pool(harness):
    sel = VadeSelector()
    out = sel.select(10, harness.make_ctx(6, exclude=np.array([0, 3])))
    assert sorted(out.tolist()) == [1, 2, 4, 5]


def test_metrics_report_selected_posterior_and_gain(harness):
    sel = _with_counts(VadeSelector(thompson=False), list(100 * _MEANS - 1), list(100 * (1 - _MEANS) - 1))
    sel.select(2, harness.make_ctx(5))
    m = sel.metrics()
    assert m["posterior_mean"] == pytest.approx((1 / 3 + 0.30) / 2)
    assert m["info_gain"] == pytest.approx((4 / 27 + 0.3 * 0.49) / 2, abs=1e-5)


def test_state_round_trip_gives_the_same_draws(harness):
    a = VadeSelector()
    ctx = harness.make_ctx(50)
    for _ in range(3):
        chosen = a.select(5, ctx)
        a.observe(ctx, [harness.obs(int(p), [1, 0, 0, 1]) for p in chosen], [])
    b = VadeSelector()
    b.load_state_dict(copy.deepcopy(a.state_dict()))
    s1, s2 = harness.make_ctx(50, seed=7), harness.make_ctx(50, seed=7)
    assert a.select(5, s1).tolist() == b.select(5, s2).tolist()
    np.testing.assert_array_equal(a.posterior(np.arange(50))[0], b.posterior(np.arange(50))[0])


def _top_k_reference(scores: np.ndarray, k: int) -> list[int]:
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
    return [i for i in order[:k] if np.isfinite(scores[i])]


@pytest.mark.parametrize("n,k", [(10, 3), (1000, 50), (120_000, 256)])
def test_top_k_matches_a_sorted_reference(n, k):
    rng = np.random.default_rng(n)
    s = np.round(rng.random(n), 3).astype(np.float32)  # many ties
    s[rng.choice(n, n // 10, replace=False)] = -np.inf
    assert top_k(s, k).tolist() == _top_k_reference(s, k)
    assert top_k(np.full(5, -np.inf), 3).size == 0


def test_top_k_falls_back_when_the_sampled_threshold_misses():
    n, k = 120_000, 256  # the threshold sample reads every 6th score
    few = np.full(n, -np.inf)
    few[::6][:100], few[1::6][:300] = 1.0, 0.5  # the sample's quantile is -inf
    high = np.zeros(n)
    high[::6][:200] = 1.0  # the sample's quantile (1.0) leaves only 200 < k candidates
    for s in (few, high):
        assert top_k(s, k).tolist() == _top_k_reference(s, k)


def test_thompson_draws_have_the_posterior_moments(harness):
    # three kinds of posterior, 10^4 prompts each: never solved Beta(1, 4) (closed form 1 - u^(1/b)),
    # never failed Beta(5, 1) (u^(1/a)), mixed Beta(3, 6) (two gammas); untouched Beta(1, 1) (uniform)
    m = 10_000
    alpha = np.repeat([0.0, 4.0, 2.0, 0.0], m)
    beta = np.repeat([3.0, 0.0, 5.0, 0.0], m)
    sel = VadeSelector()
    idx = np.arange(3 * m)
    sel.load_state_dict({"size": 4 * m, "index": idx, "alpha": alpha[idx], "beta": beta[idx]})
    p = sel.draw(harness.make_ctx(4 * m, seed=3)).reshape(4, m)
    a, b = alpha.reshape(4, m)[:, 0] + 1, beta.reshape(4, m)[:, 0] + 1
    np.testing.assert_allclose(p.mean(axis=1), a / (a + b), atol=0.005)
    np.testing.assert_allclose(p.var(axis=1), a * b / ((a + b) ** 2 * (a + b + 1)), atol=0.002)


def test_threads_change_speed_not_values():
    rng = np.random.default_rng(0)
    a, b = rng.uniform(1, 5, 300_000), rng.uniform(1, 5, 300_000)  # above one chunk: child generators
    one = draw_beta(a, b, np.random.default_rng(1), threads=1)
    np.testing.assert_array_equal(one, draw_beta(a, b, np.random.default_rng(1), threads=3))
    assert abs(one.mean() - np.mean(a / (a + b))) < 0.002
